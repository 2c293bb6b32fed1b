"""Short chaos runs, one per stack: sagas run while engines, workers and the servers
under them (redis-server with AOF, Kafka, PostgreSQL) are SIGKILLed and restarted at
random. Every saga ends as its input says, nothing is recorded twice, every chain
verifies, the broker is empty, and nothing is lost. ``bench/chaos.py`` runs the long
version and prints the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.chaos_run import run_chaos
from tests.runtime.stacks import STACKS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("stack", STACKS)
async def test_sagas_survive_killed_processes_and_servers(stack: str, tmp_path: Path) -> None:
    report = await run_chaos(stack, tmp_path, sagas=300, seconds=25, seed=11)
    print("\n" + "\n".join(report.lines()))
    assert report.lost == 0
    assert sum(report.statuses.values()) == 300
    kinds = {kind for _, kind, _ in report.kills}
    assert kinds & {"engine", "worker", "both"}, report.kills
    if stack != "embedded":
        assert kinds & {"redis", "kafka", "postgres"}, f"no server was killed: {report.kills}"
