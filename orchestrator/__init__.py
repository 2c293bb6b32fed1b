"""Durable sagas as networkx DAGs over an event-sourced, hash-chained log.

The runtime (``Engine``, step workers, ``SagaPattern``, clients through the store), the
functional core (``evolve``, ``react``/``decide``, ``resume``, ``is_terminal``), the
workflow definitions (``WorkflowBuilder``, ``Workflow.from_graph``, ``load_workflows``)
and the record codec (``encode``/``decode``). See docs/ARCHITECTURE.md and
docs/orchestrator-core.md.
"""

from ._builder import WorkflowBuilder
from ._client import SagaSummary, list_sagas, read_saga, request_saga, wait_in_store
from ._clock import Clock, FakeClock, SystemClock
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
from ._engine import Engine, EngineOptions
from ._errors import (
    CodecError,
    OrchestratorError,
    SagaExistsError,
    SagaStateError,
    StepError,
    StepResultError,
    UnknownSagaError,
    UnknownWorkflowError,
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
from ._saga_pattern import SagaPattern, SagaResult
from ._state import Failure, Phase, SagaState, SagaStatus, StepState
from ._steps import call_step
from ._wire import Topics
from ._worker import StepContext, StepWorker, WorkerOptions, current_step
from ._workflow import CompensationSpec, StepFunction, StepSpec, Workflow

__all__ = [
    "TYPE_NAMES",
    "AbortSaga",
    "Clock",
    "CodecError",
    "Command",
    "CompensateStep",
    "CompensationFailed",
    "CompensationSpec",
    "CompensationSucceeded",
    "CompensationTimedOut",
    "Engine",
    "EngineOptions",
    "Event",
    "ExecuteStep",
    "Failure",
    "FakeClock",
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
    "SagaExistsError",
    "SagaPattern",
    "SagaResult",
    "SagaStarted",
    "SagaState",
    "SagaStateError",
    "SagaStatus",
    "SagaSummary",
    "ScheduleRetry",
    "StartSaga",
    "StepContext",
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
    "StepWorker",
    "Storable",
    "SystemClock",
    "TimerFired",
    "Topics",
    "UnknownSagaError",
    "UnknownWorkflowError",
    "WorkerOptions",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowDefinitionError",
    "call_step",
    "current_step",
    "decide",
    "decode",
    "encode",
    "evolve",
    "fold",
    "is_terminal",
    "list_sagas",
    "load_workflow_file",
    "load_workflows",
    "react",
    "read_saga",
    "replay",
    "request_saga",
    "resume",
    "start",
    "wait_in_store",
]
