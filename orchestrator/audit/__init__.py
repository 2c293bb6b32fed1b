"""Audit of sagas and of the store. Nothing here writes to the store.

- ``timeline``: a saga's stream as an auditor reads it;
- ``checks``: one saga's chain, its decisions replayed by the pure core, its definition
  (``check_saga``, ``audit_saga``; the exit codes of ``replay --verify``);
- ``store``: the chain of one stream or of the whole store, and its head
  (``verify_store``);
- ``export``: JSONL, every field of every record;
- ``views``: the plain-JSON documents the command line prints.
"""

from orchestrator.audit.checks import (
    EXIT_CHAIN_BROKEN,
    EXIT_DIVERGED,
    EXIT_OK,
    Divergence,
    SagaAudit,
    audit_saga,
    check_saga,
)
from orchestrator.audit.export import export_lines, export_saga, record_json
from orchestrator.audit.store import StoreVerification, verify_store
from orchestrator.audit.timeline import TimelineEntry, timeline

__all__ = [
    "EXIT_CHAIN_BROKEN",
    "EXIT_DIVERGED",
    "EXIT_OK",
    "Divergence",
    "SagaAudit",
    "StoreVerification",
    "TimelineEntry",
    "audit_saga",
    "check_saga",
    "export_lines",
    "export_saga",
    "record_json",
    "timeline",
    "verify_store",
]
