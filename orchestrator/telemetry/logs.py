"""The project's loggers at the configured level: one call, made by the commands.

Nothing configures logging at import: a library user's application decides. The
``orchestrator`` command calls :func:`configure_logging` with the seed's
``log_level`` key once it has read the settings.
"""

from __future__ import annotations

import logging

__all__ = ["PROJECT_LOGGERS", "configure_logging"]

PROJECT_LOGGERS = ("orchestrator", "brokers", "eventstore")
"""One logger per package; every module logs through its package's."""

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """The project's loggers at ``level``; everything else at WARNING; one timestamped
    line each on stderr (a handler is added to the root logger only if it has none)."""
    logging.basicConfig(level=logging.WARNING, format=_FORMAT)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
