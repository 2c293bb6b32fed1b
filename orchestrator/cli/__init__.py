"""The ``orchestrator`` command line: click commands over the runtime and the audit.

``main`` is the console script's entry point (``orchestrator = "orchestrator.cli:main"``).
"""

from orchestrator.cli.commands import cli, main

__all__ = ["cli", "main"]
