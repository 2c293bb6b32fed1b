"""The dashboard over HTTP, as a browser or a script reads it: a real uvicorn on a free
loopback port, over a store that sagas ran on."""

from __future__ import annotations

import asyncio
import html
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator.cli.ui_command import RunningUi, serve_ui
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.settings import UiSettings
from tests.runtime.conftest import FAST
from tests.runtime.flows import WORKFLOWS
from tests.runtime.processes import serving
from tests.runtime.test_metrics import ORDER, ROOT

FLOWS = {wf.name: wf for wf in WORKFLOWS}


async def get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    return await asyncio.to_thread(fetch)


@pytest.fixture
async def sagas() -> AsyncIterator[tuple[EventStore, list[str], list[str]]]:
    """A store with 60 completed and 3 compensated sagas of ``diamond``."""
    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    async with Engine(store, broker, WORKFLOWS) as engine:
        done = [await engine.start_saga("diamond", {}) for _ in range(60)]
        undone = [await engine.start_saga("diamond", {"fail": "d"}) for _ in range(3)]
        for saga_id in done + undone:
            await engine.wait(saga_id, timeout=30)
    await broker.disconnect()
    yield store, done, undone
    await store.close()


@pytest.fixture
async def dashboard(
    sagas: tuple[EventStore, list[str], list[str]],
) -> AsyncIterator[RunningUi]:
    running = await serve_ui(UiSettings(port=0), sagas[0], FLOWS)
    assert not running.index.caught_up.is_set()  # nothing read until a page asks
    running.index.wake()
    await asyncio.wait_for(running.index.caught_up.wait(), 10)
    yield running
    await running.close()


async def test_the_list_filters_searches_and_pages(
    dashboard: RunningUi, sagas: tuple[EventStore, list[str], list[str]]
) -> None:
    _, done, undone = sagas
    assert dashboard.url.startswith("http://127.0.0.1:")
    status, page = await get(dashboard.url)
    assert status == 200
    assert "63 sagas shown of 63" in page
    shown = re.findall(r'<tr data-saga="(\w+)">', page)
    assert len(shown) == 50  # one page
    assert shown[:3] == undone[::-1]  # the last changed first
    status, older = await get(dashboard.url + "?offset=50")
    assert re.findall(r'<tr data-saga="(\w+)">', older) == done[::-1][47:]
    _, compensated = await get(dashboard.url + "?status=compensated&workflow=diamond")
    assert set(re.findall(r'<tr data-saga="(\w+)">', compensated)) == set(undone)
    _, found = await get(dashboard.url + f"fragments/sagas?q={done[7][:10]}")
    assert re.findall(r'<tr data-saga="(\w+)">', found) == [done[7]]
    _, none = await get(dashboard.url + "?since=2999-01-01")
    assert "No saga matches." in none
    for bad, why in (
        ("?status=lost", "unknown status 'lost'"),
        ("?workflow=nope", "unknown workflow 'nope'"),
        ("?offset=x", "offset must be a whole number"),
    ):
        status, text = await get(dashboard.url + bad)
        assert (status, why in html.unescape(text)) == (400, True), text


async def test_a_saga_page_shows_its_graph_timeline_and_steps(
    dashboard: RunningUi, sagas: tuple[EventStore, list[str], list[str]]
) -> None:
    store, _, undone = sagas
    status, page = await get(dashboard.url + f"sagas/{undone[0]}")
    assert status == 200
    states = dict(re.findall(r'data-node="([\w:]+)"\s+data-state="(\w+)"', page))
    assert states == {
        "step:a": "succeeded",
        "undo:a": "compensated",
        "step:b": "succeeded",
        "undo:b": "compensated",
        "step:c": "succeeded",
        "undo:c": "compensated",
        "step:d": "failed",
        "step:e": "pending",
    }
    assert 'class="node pivot failed"' in page and "pivot-mark" in page
    # compensation edges: undo b and undo c before undo a, lit as compensated
    assert re.search(r'edge compensation compensated"\s+data-edge="undo:b>undo:a"', page)
    assert re.search(r'edge compensation compensated"\s+data-edge="undo:c>undo:a"', page)
    records = await store.read_stream(f"saga-{undone[0]}")
    rows = re.findall(r'<code title="position (\d+)">(\w+)</code></td>\s*<td class="(\w+)"', page)
    assert [(int(p), h) for p, h, _ in rows] == [(r.position, r.hash[:12]) for r in records]
    assert {ok for _, _, ok in rows} == {"ok"}
    assert 'id="chain">verified' in page
    assert "d refused" in page  # the error, in the timeline and the steps
    status, fragment = await get(dashboard.url + f"fragments/sagas/{undone[0]}")
    assert status == 200 and "<html" not in fragment and 'id="timeline"' in fragment
    status, missing = await get(dashboard.url + "sagas/nope")
    assert status == 404 and "no saga 'nope'" in html.unescape(missing)


async def test_the_workflows_page_draws_each_definition_with_its_counts(
    dashboard: RunningUi,
) -> None:
    status, page = await get(dashboard.url + "workflows")
    assert status == 200
    for name in FLOWS:
        assert f'id="{name}"' in page
    diamond = page.split('id="diamond"', 1)[1].split("</section>", 1)[0]
    assert re.search(r"completed</span> 60", diamond)
    assert re.search(r"compensated</span> 3", diamond)
    assert "3 attempts, 0.01 s" in diamond and "undo_a" in diamond


async def test_the_list_follows_new_sagas(
    dashboard: RunningUi, sagas: tuple[EventStore, list[str], list[str]]
) -> None:
    store = sagas[0]
    from orchestrator.runtime.client import request_saga

    saga_id = await request_saga(store, "diamond", {})
    async with asyncio.timeout(10):
        while dashboard.index.get(saga_id) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    _, fragment = await get(dashboard.url + "fragments/sagas?status=requested")
    assert re.findall(r'<tr data-saga="(\w+)">', fragment) == [saga_id]


# -- as a user runs it ----------------------------------------------------------------


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0, out
    return out


async def test_orchestrator_run_serves_the_dashboard_and_ui_serves_a_store_alone(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'sagas.db'}"
    config = tmp_path / "sagaflow.yaml"
    config.write_text(
        f"store: {store}\nworkflows: {ROOT / 'workflows'}\nmetrics_enabled: false\n"
        "ui:\n  port: 0\n  live_interval: 0.2\nengine:\n  intake_poll_interval: 0.05\n"
    )
    engine, line = serving(["run", "--config", str(config)], tmp_path, "engine running")
    try:
        url = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", line)
        assert url is not None, line
        order = json.dumps(ORDER)
        started = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "orchestrator.cli", "start", "order_fulfilment",
             "--config", str(config), "--input", order, "--wait"],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        saga_id = started.stdout.split()[0]
        async with asyncio.timeout(20):
            while True:
                status, page = await get(url.group(1))
                if f'data-saga="{saga_id}"' in page:
                    break
                await asyncio.sleep(0.1)
        assert status == 200 and "completed" in page
    finally:
        _stop(engine)
    # the same store, read-only, from `orchestrator ui`
    before = _names(tmp_path)
    ui, line = serving(["ui", "--config", str(config), "--port", "0"], tmp_path, "dashboard at")
    try:
        url = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", line)
        assert url is not None and "read-only" in line, line
        status, page = await get(f"{url.group(1)}sagas/{saga_id}")
        assert status == 200 and 'id="chain">verified' in page
    finally:
        _stop(ui)
    assert _names(tmp_path) == before  # nothing written
    missing = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orchestrator.cli", "ui", "--store",
         f"sqlite:///{tmp_path / 'none.db'}", "--workflows", str(ROOT / "workflows")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "none.db does not exist" in missing.stderr
