"""What an engine counts, and the hook its step workers report to.

``Counts`` is the engine's ``counts`` dict (``started``, ``completed``, … engine-wide,
printed as JSON when ``orchestrator run`` stops) that also keeps the same counts by
workflow, and attempts, retries and timeouts by workflow, step and kind: plain
integer increments on the hot path, read by the Prometheus collector
(``orchestrator.telemetry.metrics``) when it is scraped, and by nothing otherwise.

``Observer`` is what the runtime calls where it times something (a step attempt in
the worker, a publish): only when one is given, so an engine without metrics never
reads the clock for it.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["NAMES", "Counts", "Observer"]

NAMES = (
    "started",
    "completed",
    "compensated",
    "failed",
    "conflicts",
    "reissued",
    "adopted",
    "duplicates",
)
"""The engine-wide counts, in the order ``orchestrator run`` prints them."""


class Counts(dict[str, int]):
    """Engine-wide counts (the dict itself) and the same by workflow and by step."""

    def __init__(self) -> None:
        super().__init__(dict.fromkeys(NAMES, 0))
        self.by_workflow: dict[tuple[str, str], int] = {}
        """(count, workflow) → n, for the counts that have a workflow."""
        self.by_step: dict[tuple[str, str, str, str], int] = {}
        """(count, workflow, step, kind) → n: ``attempts``, ``retries`` and ``timeouts``
        of kind ``step`` or ``compensation``."""

    def add(self, name: str, workflow: str) -> None:
        """Count one ``name`` (``started``, ``completed`` …) of ``workflow``."""
        self[name] = self.get(name, 0) + 1
        key = (name, workflow)
        self.by_workflow[key] = self.by_workflow.get(key, 0) + 1

    def add_step(self, name: str, workflow: str, step: str, compensation: bool) -> None:
        """Count one ``attempts``, ``retries`` or ``timeouts`` of a step."""
        key = (name, workflow, step, "compensation" if compensation else "step")
        self.by_step[key] = self.by_step.get(key, 0) + 1


class Observer(Protocol):
    """Timings the runtime reports when metrics are on."""

    def step(
        self, workflow: str, step: str, compensation: bool, outcome: str, seconds: float
    ) -> None:
        """A worker ran one attempt: ``outcome`` is ``succeeded``, ``failed`` or
        ``timed_out``; ``seconds`` from the start of the function to its end."""

    def publish(self, topic: str, seconds: float) -> None:
        """A publish (one batch) to ``topic`` took ``seconds``, until the broker had it."""
