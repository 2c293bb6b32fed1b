"""The ``orchestrator`` command line: click commands over the runtime and the audit.

``app`` holds the command group and what every command shares; ``saga_commands``,
``audit_commands``, ``dlq_commands`` and ``ui_command`` register their commands on it
when the group first needs them (``app.COMMANDS``). ``main`` is the console script's
entry point (``orchestrator = "orchestrator.cli:main"``).
"""

from orchestrator.cli.app import cli, main

__all__ = ["cli", "main"]
