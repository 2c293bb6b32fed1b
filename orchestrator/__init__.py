"""Durable sagas as networkx DAGs over an event-sourced, hash-chained log.

- workflow definitions: ``WorkflowBuilder``, ``Workflow.from_graph``, ``load_workflows``;
- the runtime: ``Engine``, step workers, ``SagaPattern``, clients through the store;
- the functional core (``orchestrator.core``): ``evolve``, ``react``/``decide``,
  ``resume``, ``is_terminal``, and the events and commands a saga's log holds;
- ``replay``: re-deciding a recorded log (the audit is ``orchestrator.audit``).

See docs/ARCHITECTURE.md and docs/orchestrator-core.md.
"""

from orchestrator.core.builder import WorkflowBuilder
from orchestrator.core.commands import (
    AbortSaga,
    CompensateStep,
    ExecuteStep,
    FinishSaga,
    GiveUpCompensation,
    ScheduleRetry,
    StartSaga,
    StepCommand,
)
from orchestrator.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    CompensationTimedOut,
    ResumeRequested,
    SagaStarted,
    StepFailed,
    StepSucceeded,
    StepTimedOut,
    TimerFired,
)
from orchestrator.core.evolve import evolve, fold
from orchestrator.core.messages import Command, Event, Request, SagaMessage
from orchestrator.core.policy import RetryPolicy, StepKind, StepOptions
from orchestrator.core.react import Reaction, decide, is_terminal, react, resume, start
from orchestrator.core.replay import Mismatch, Replay, replay
from orchestrator.core.state import Failure, Phase, SagaState, SagaStatus, StepState
from orchestrator.core.workflow import CompensationSpec, StepFunction, StepSpec, Workflow
from orchestrator.errors import (
    CodecError,
    ConfigError,
    InputError,
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
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.loader import load_workflow_file, load_workflows
from orchestrator.runtime.options import EngineOptions
from orchestrator.runtime.saga_pattern import SagaPattern, SagaResult
from orchestrator.runtime.steps import call_step
from orchestrator.runtime.wire import Topics
from orchestrator.runtime.worker import StepContext, StepWorker, WorkerOptions, current_step

__all__ = [
    "AbortSaga",
    "Clock",
    "CodecError",
    "Command",
    "CompensateStep",
    "CompensationFailed",
    "CompensationSpec",
    "CompensationSucceeded",
    "CompensationTimedOut",
    "ConfigError",
    "Engine",
    "EngineOptions",
    "Event",
    "ExecuteStep",
    "Failure",
    "FakeClock",
    "FinishSaga",
    "GiveUpCompensation",
    "InputError",
    "Mismatch",
    "OrchestratorError",
    "Phase",
    "Reaction",
    "Replay",
    "Request",
    "ResumeRequested",
    "RetryPolicy",
    "SagaExistsError",
    "SagaMessage",
    "SagaPattern",
    "SagaResult",
    "SagaStarted",
    "SagaState",
    "SagaStateError",
    "SagaStatus",
    "SagaSummary",
    "ScheduleRetry",
    "StartSaga",
    "StepCommand",
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
