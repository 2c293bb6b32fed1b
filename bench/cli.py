"""Command-line start-up, run by hand: ``python bench/cli.py [--rounds 7]``.

Times, as wall clock of a fresh process, the median of ``--rounds`` runs each:

* ``python -c pass`` (the interpreter alone) and ``import click, rich`` (what
  ``--help`` cannot do without), the floor;
* ``orchestrator --help``;
* ``orchestrator status`` over a store holding the demo's sagas (made first, in a
  temporary folder), and the imports it cannot do without: SQLAlchemy's asyncio engine
  (the store), pydantic-settings (the settings) and networkx (the workflows).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORCHESTRATOR = [sys.executable, "-m", "orchestrator.cli"]


def timed(argv: list[str], cwd: Path, rounds: int) -> float:
    """The median wall time of ``argv``, in seconds (it must exit 0)."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        workflows = str(ROOT / "workflows")
        subprocess.run(
            [*ORCHESTRATOR, "demo", "--workflows", workflows],
            cwd=here,
            check=True,
            capture_output=True,
        )
        rows = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("import click, rich.console", [sys.executable, "-c", "import click, rich.console"]),
            ("orchestrator --help", [*ORCHESTRATOR, "--help"]),
            (
                "import sqlalchemy.ext.asyncio, pydantic_settings, networkx",
                [
                    sys.executable,
                    "-c",
                    "import sqlalchemy.ext.asyncio, pydantic_settings, networkx",
                ],
            ),
            ("orchestrator status", [*ORCHESTRATOR, "status", "--workflows", workflows]),
        ]
        print(f"median of {rounds} runs, seconds (target: --help and status <= 0.3)")
        for name, argv in rows:
            print(f"  {name:58} {timed(argv, here, rounds):6.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args().rounds)
