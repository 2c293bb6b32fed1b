"""Durable sagas as networkx DAGs over an event-sourced, hash-chained log.

The runtime (``Engine``, step workers, ``SagaPattern``, clients through the store), the
functional core (``evolve``, ``react``/``decide``, ``resume``, ``is_terminal``), the
workflow definitions (``WorkflowBuilder``, ``Workflow.from_graph``, ``load_workflows``)
and the record codec (``encode``/``decode``). See docs/ARCHITECTURE.md and
docs/orchestrator-core.md.
"""

from orchestrator.core.builder import WorkflowBuilder
from orchestrator.core.codec import TYPE_NAMES, Record, Storable, decode, encode
from orchestrator.core.commands import (
    AbortSaga,
    Command,
    CompensateStep,
    ExecuteStep,
    FinishSaga,
    GiveUpCompensation,
    ScheduleRetry,
    StartSaga,
)
from orchestrator.core.events import (
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
from orchestrator.core.policy import RetryPolicy, StepKind, StepOptions
from orchestrator.core.react import (
    Message,
    Reaction,
    decide,
    evolve,
    fold,
    is_terminal,
    react,
    resume,
    start,
)
from orchestrator.core.replay import Mismatch, Replay, replay
from orchestrator.core.state import Failure, Phase, SagaState, SagaStatus, StepState
from orchestrator.core.workflow import CompensationSpec, StepFunction, StepSpec, Workflow
from orchestrator.errors import (
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
from orchestrator.runtime.client import (
    SagaSummary,
    list_sagas,
    read_saga,
    request_saga,
    wait_in_store,
)
from orchestrator.runtime.clock import Clock, FakeClock, SystemClock
from orchestrator.runtime.engine import Engine, EngineOptions
from orchestrator.runtime.loader import load_workflow_file, load_workflows
from orchestrator.runtime.saga_pattern import SagaPattern, SagaResult
from orchestrator.runtime.steps import call_step
from orchestrator.runtime.wire import Topics
from orchestrator.runtime.worker import StepContext, StepWorker, WorkerOptions, current_step

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
