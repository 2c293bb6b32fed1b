"""The orchestrator's errors, one module for the whole package.

Tree::

    OrchestratorError                  every error this package raises on purpose
    ├── WorkflowDefinitionError        a workflow definition is invalid; names file and step
    ├── SagaStateError                 a message does not fit the saga it is applied to
    ├── CodecError                     a message cannot be encoded to, or decoded from, a record
    ├── UnknownWorkflowError           no workflow of that name is loaded
    ├── UnknownSagaError               no saga with that id is in the store
    ├── SagaExistsError                a saga with that id was already started
    ├── ConfigError                    the configuration (file, environment, flags) is invalid
    └── StepError                      raised by a step function: the step failed
        └── StepResultError            a step function returned something that is not a mapping

Retryability is data on the error (``StepError.retryable``), not a subclass: the step
worker turns the exception into a ``StepFailed(retryable=...)`` event.
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConfigError",
    "OrchestratorError",
    "SagaExistsError",
    "SagaStateError",
    "StepError",
    "StepResultError",
    "UnknownSagaError",
    "UnknownWorkflowError",
    "WorkflowDefinitionError",
]


class OrchestratorError(Exception):
    """Base class of every error the orchestrator raises on purpose."""


class WorkflowDefinitionError(OrchestratorError):
    """A workflow definition is invalid.

    ``file``, ``workflow`` and ``step`` say where (each may be ``None`` when unknown); the
    message starts with them so a log line alone is enough to find the mistake.
    """

    def __init__(
        self,
        reason: str,
        *,
        workflow: str | None = None,
        step: str | None = None,
        file: str | None = None,
    ) -> None:
        self.reason = reason
        self.workflow = workflow
        self.step = step
        self.file = file
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.workflow is not None:
            where.append(f"workflow {self.workflow!r}")
        if self.step is not None:
            where.append(f"step {self.step!r}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def in_file(self, file: str) -> WorkflowDefinitionError:
        """The same error, located in ``file`` (used by the loader)."""
        return WorkflowDefinitionError(
            self.reason, workflow=self.workflow, step=self.step, file=file
        )


class SagaStateError(OrchestratorError):
    """A message does not fit the saga: another saga's id, no ``SagaStarted`` yet, or a
    workflow other than the one the saga was started with."""


class CodecError(OrchestratorError):
    """A message cannot be encoded to a stored record, or a record cannot be decoded."""


class StepError(OrchestratorError):
    """Raise from a step (or compensation) function to fail it with a reason.

    ``retryable=False`` says retrying cannot help (a declined card): the step fails for
    good at once instead of being retried per its policy. Any other exception a step
    function raises counts as a retryable failure.
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


class StepResultError(StepError):
    """A step function returned something that is not a mapping (or ``None``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


class UnknownWorkflowError(OrchestratorError):
    """No workflow of that name is loaded in this engine."""


class UnknownSagaError(OrchestratorError):
    """No saga with that id is in the store."""


class SagaExistsError(OrchestratorError):
    """A saga with that id was already started."""


class InputError(OrchestratorError, ValueError):
    """A saga's input does not match its workflow's input model: refused before anything
    is written. The message names each field that is wrong and why."""


class ConfigError(OrchestratorError):
    """The configuration is invalid: the message names the file or key at fault."""
