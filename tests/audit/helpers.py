"""Shared by the audit tests: golden files, the CHAIN.md snippet, raw tampering."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from eventstore import EventStore, Record, StoredRecord, log_link, record_hash

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "orchestrator" / "golden" / "engine"
CHAIN_DOC = ROOT / "docs" / "CHAIN.md"


def read_jsonl(path: Path) -> list[Record]:
    return [Record(**json.loads(line)) for line in path.read_text("utf-8").splitlines() if line]


def run_chain_snippet(tmp_path: Path, target: Path) -> subprocess.CompletedProcess[str]:
    """docs/CHAIN.md's one python block, run as a script on ``target``."""
    blocks = re.findall(r"```python\n(.*?)```", CHAIN_DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/CHAIN.md should hold exactly one python block"
    script = tmp_path / "verify_chain.py"
    script.write_text(blocks[0])
    return subprocess.run(
        [sys.executable, "-I", str(script), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def tamper(store: EventStore, *statements: str | tuple[str, dict[str, Any]]) -> None:
    """Drop the immutability and append-only triggers, then run raw SQL, as a forger with
    the database's credentials would."""
    async with store._engine.begin() as conn:
        if store._dialect.name == "sqlite":
            for trigger in ("records_no_update", "records_no_delete", "records_append_only"):
                await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        else:
            for trigger in ("records_no_update_delete", "records_append_only"):
                await conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger} ON records")
        for statement in statements:
            sql, params = (statement, {}) if isinstance(statement, str) else statement
            await conn.execute(text(sql), params)


def relinked(row: StoredRecord, prev_log: str) -> StoredRecord:
    """``row`` with the hash and log_hash its fields call for, as a forger who knows
    the spec recomputes them (eventstore's own functions)."""
    hash_ = record_hash(row)
    return row._replace(hash=hash_, log_hash=log_link(prev_log, hash_, row.position))
