"""The pure saga core: the one place that decides what a saga does next.

No I/O, no clock, no randomness, no asyncio: time arrives as ``now`` on the events,
retry jitter is derived from the idempotency key. Everything the runtime, the audit
and the tests do stands on these functions.

- ``messages``: the base classes and the one registry of stable type names;
  ``events`` and ``commands``: what a saga learns and decides; ``state``: what
  folding its log gives;
- ``evolve``: one message → the next state; ``decide``: the rules (what is needed
  next); ``react``: evolve, then decide to a fixed point; ``resume`` after a crash;
- ``workflow``, ``builder``, ``policy``: workflow definitions (networkx DAGs);
- ``codec``: messages ↔ plain JSON; ``replay``: re-deciding a recorded log.
"""

from orchestrator.core import commands, events
from orchestrator.core.evolve import evolve, fold
from orchestrator.core.messages import Command, Event, Request, SagaMessage
from orchestrator.core.react import Reaction, decide, is_terminal, react, resume, start

__all__ = [
    "Command",
    "Event",
    "Reaction",
    "Request",
    "SagaMessage",
    "commands",
    "decide",
    "events",
    "evolve",
    "fold",
    "is_terminal",
    "react",
    "resume",
    "start",
]
