"""Durable sagas as networkx DAGs over an event-sourced, hash-chained log.

- workflow definitions: ``WorkflowBuilder``, ``Workflow.from_graph``, ``load_workflows``;
- the runtime: ``Engine``, step workers, ``SagaPattern``, clients through the store;
- the functional core (``orchestrator.core``): ``evolve``, ``react``/``decide``,
  ``resume``, ``is_terminal``, and the events and commands a saga's log holds;
- ``replay``: re-deciding a recorded log (the audit is ``orchestrator.audit``).

See docs/ARCHITECTURE.md and docs/orchestrator-core.md.

Importing the package is cheap: each name here is imported on first use (PEP 562), so
the command line starts without loading networkx, SQLAlchemy or redis until a command
needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

_EXPORTS: dict[str, str] = {
    "AbortSaga": "orchestrator.core.commands",
    "Clock": "orchestrator.runtime.clock",
    "CodecError": "orchestrator.errors",
    "Command": "orchestrator.core.messages",
    "CompensateStep": "orchestrator.core.commands",
    "CompensationFailed": "orchestrator.core.events",
    "CompensationSpec": "orchestrator.core.workflow",
    "CompensationSucceeded": "orchestrator.core.events",
    "CompensationTimedOut": "orchestrator.core.events",
    "ConfigError": "orchestrator.errors",
    "Engine": "orchestrator.runtime.engine",
    "EngineOptions": "orchestrator.runtime.options",
    "Event": "orchestrator.core.messages",
    "ExecuteStep": "orchestrator.core.commands",
    "Failure": "orchestrator.core.state",
    "FakeClock": "orchestrator.runtime.clock",
    "FinishSaga": "orchestrator.core.commands",
    "GiveUpCompensation": "orchestrator.core.commands",
    "InputError": "orchestrator.errors",
    "Mismatch": "orchestrator.core.replay",
    "OrchestratorError": "orchestrator.errors",
    "Phase": "orchestrator.core.state",
    "Reaction": "orchestrator.core.react",
    "Replay": "orchestrator.core.replay",
    "Request": "orchestrator.core.messages",
    "ResumeRequested": "orchestrator.core.events",
    "RetryPolicy": "orchestrator.core.policy",
    "SagaExistsError": "orchestrator.errors",
    "SagaMessage": "orchestrator.core.messages",
    "SagaPattern": "orchestrator.runtime.saga_pattern",
    "SagaResult": "orchestrator.runtime.saga_pattern",
    "SagaStarted": "orchestrator.core.events",
    "SagaState": "orchestrator.core.state",
    "SagaStateError": "orchestrator.errors",
    "SagaStatus": "orchestrator.core.state",
    "SagaSummary": "orchestrator.runtime.client",
    "ScheduleRetry": "orchestrator.core.commands",
    "StartSaga": "orchestrator.core.commands",
    "StepCommand": "orchestrator.core.commands",
    "StepContext": "orchestrator.runtime.worker",
    "StepError": "orchestrator.errors",
    "StepFailed": "orchestrator.core.events",
    "StepFunction": "orchestrator.core.workflow",
    "StepKind": "orchestrator.core.policy",
    "StepOptions": "orchestrator.core.policy",
    "StepResultError": "orchestrator.errors",
    "StepSpec": "orchestrator.core.workflow",
    "StepState": "orchestrator.core.state",
    "StepSucceeded": "orchestrator.core.events",
    "StepTimedOut": "orchestrator.core.events",
    "StepWorker": "orchestrator.runtime.worker",
    "SystemClock": "orchestrator.runtime.clock",
    "TimerFired": "orchestrator.core.events",
    "Topics": "orchestrator.runtime.wire",
    "UnknownSagaError": "orchestrator.errors",
    "UnknownWorkflowError": "orchestrator.errors",
    "WorkerOptions": "orchestrator.runtime.worker",
    "Workflow": "orchestrator.core.workflow",
    "WorkflowBuilder": "orchestrator.core.builder",
    "WorkflowDefinitionError": "orchestrator.errors",
    "call_step": "orchestrator.runtime.steps",
    "current_step": "orchestrator.runtime.worker",
    "decide": "orchestrator.core.react",
    "evolve": "orchestrator.core.evolve",
    "fold": "orchestrator.core.evolve",
    "is_terminal": "orchestrator.core.react",
    "list_sagas": "orchestrator.runtime.client",
    "load_workflow_file": "orchestrator.runtime.loader",
    "load_workflows": "orchestrator.runtime.loader",
    "react": "orchestrator.core.react",
    "read_saga": "orchestrator.runtime.client",
    "replay": "orchestrator.core.replay",
    "request_saga": "orchestrator.runtime.client",
    "resume": "orchestrator.core.react",
    "start": "orchestrator.core.react",
    "wait_in_store": "orchestrator.runtime.client",
}
"""Each public name → the module that defines it."""


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
