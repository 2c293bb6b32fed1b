"""The command line starts light: ``orchestrator --help`` lists every command without
importing any command's module, and the list it prints is the commands' own help."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import click

from orchestrator.cli.app import COMMANDS, cli

HEAVY = ("sqlalchemy", "networkx", "redis", "pydantic", "orchestrator.runtime.engine")


def test_help_lists_every_command_without_importing_heavy_modules() -> None:
    probe = (
        "import sys\n"
        "from orchestrator.cli import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "LOADED []" in out, out
    for name in COMMANDS:
        assert f"\n  {name} " in out, f"{name} missing from --help:\n{out}"


def test_each_summary_is_its_commands_help_and_every_command_is_known() -> None:
    for module in {entry.module for entry in COMMANDS.values()}:
        importlib.import_module(module)
    assert set(cli.commands) == set(COMMANDS)
    for name, entry in COMMANDS.items():
        command = cli.commands[name]
        assert command.callback is not None
        assert command.callback.__module__ == entry.module, name
        first = inspect.cleandoc(command.help or "").split("\n\n")[0]
        assert " ".join(first.split()) == entry.summary, name


def test_a_command_runs_after_a_lazy_import() -> None:
    context = click.Context(cli)
    assert isinstance(cli.get_command(context, "status"), click.Command)
    assert cli.get_command(context, "no-such-command") is None
