"""Durable sagas as networkx DAGs over an event-sourced, hash-chained log.

The functional core (``evolve``, ``react``/``decide``, ``resume``, ``is_terminal``), the
workflow definitions (``WorkflowBuilder``, ``Workflow.from_graph``, ``load_workflows``)
and the record codec (``encode``/``decode``). See docs/orchestrator-core.md.
"""

from ._builder import WorkflowBuilder
from ._codec import TYPE_NAMES, Record, Storable, decode, encode
from ._commands import (
    AbortSaga,
    Command,
    CompensateStep,
    ExecuteStep,
    FinishSaga,
    GiveUpCompensation,
    ScheduleRetry,
    StartSaga,
)
from ._core import Message, Reaction, decide, evolve, fold, is_terminal, react, resume, start
from ._errors import (
    CodecError,
    OrchestratorError,
    SagaStateError,
    StepError,
    StepResultError,
    WorkflowDefinitionError,
)
from ._events import (
    CompensationFailed,
    CompensationSucceeded,
    CompensationTimedOut,
    Event,
    ResumeRequested,
    SagaStarted,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    TimerFired,
)
from ._loader import load_workflow_file, load_workflows
from ._policy import RetryPolicy, StepKind, StepOptions
from ._replay import Mismatch, Replay, replay
from ._state import Failure, Phase, SagaState, SagaStatus, StepState
from ._steps import call_step
from ._workflow import CompensationSpec, StepFunction, StepSpec, Workflow

__all__ = [
    "TYPE_NAMES",
    "AbortSaga",
    "CodecError",
    "Command",
    "CompensateStep",
    "CompensationFailed",
    "CompensationSpec",
    "CompensationSucceeded",
    "CompensationTimedOut",
    "Event",
    "ExecuteStep",
    "Failure",
    "FinishSaga",
    "GiveUpCompensation",
    "Message",
    "Mismatch",
    "OrchestratorError",
    "Phase",
    "Reaction",
    "Record",
    "Replay",
    "ResumeRequested",
    "RetryPolicy",
    "SagaStarted",
    "SagaState",
    "SagaStateError",
    "SagaStatus",
    "ScheduleRetry",
    "StartSaga",
    "StepError",
    "StepFailed",
    "StepFunction",
    "StepKind",
    "StepOptions",
    "StepResultError",
    "StepSpec",
    "StepState",
    "StepSucceeded",
    "StepTimedOut",
    "Storable",
    "TimerFired",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowDefinitionError",
    "call_step",
    "decide",
    "decode",
    "encode",
    "evolve",
    "fold",
    "is_terminal",
    "load_workflow_file",
    "load_workflows",
    "react",
    "replay",
    "resume",
    "start",
]
