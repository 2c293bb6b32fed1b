"""What the dashboard does beside an engine, over HTTP: start a saga from the form built
from the workflow's input model, resume a failed saga, reprocess and discard a dead
letter; each refused without the token, with nothing changed. And the same input check
in ``Engine.start_saga`` and ``orchestrator start``."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator import InputError, WorkflowBuilder
from orchestrator.cli.ui_command import RunningUi, serve_ui
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.settings import UiSettings
from tests.runtime.conftest import FAST
from tests.runtime.flows import BROKEN_UNDO, WORKFLOWS
from tests.runtime.test_metrics import ROOT

TOKEN = "t" * 24


class Parcel(BaseModel):
    recipient: str = Field(min_length=1, description="Who gets it")
    weight_kg: float = Field(gt=0)
    pieces: int = Field(1, ge=1)
    fragile: bool = False


parcels = WorkflowBuilder("parcels", input=Parcel)


@parcels.step(kind="retriable")
def label(data: dict[str, Any]) -> dict[str, Any]:
    return {"label": f"{data['recipient']}/{data['pieces']}"}


PARCELS = parcels.build()
FLOWS = {wf.name: wf for wf in [*WORKFLOWS, PARCELS]}


@dataclass
class Running:
    store: EventStore
    broker: InMemoryBroker
    engine: Engine
    ui: RunningUi


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    engine = Engine(store, broker, FLOWS)
    config = UiSettings(port=0, token=TOKEN)
    async with engine:
        ui = await serve_ui(config, store, FLOWS, engine=engine, broker=broker)
        yield Running(store, broker, engine, ui)
        await ui.close()
    await broker.disconnect()
    await store.close()


async def call(
    url: str, form: dict[str, str] | None = None, *, token: str | None = None
) -> tuple[int, str, str | None]:
    """(status, body, Location) of a GET, or of a POST of ``form`` (redirects not
    followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    def run() -> tuple[int, str, str | None]:
        data = None
        if form is not None:
            fields = {**form, **({"token": token} if token else {})}
            data = urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(url, data=data)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=10) as response:
                return response.status, response.read().decode(), None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), exc.headers.get("Location")

    return await asyncio.to_thread(run)


async def test_a_saga_is_started_from_the_form_built_from_its_input_model(
    running: Running,
) -> None:
    status, page, _ = await call(running.ui.url + "start?workflow=parcels")
    assert status == 200
    for name in ("recipient", "weight_kg", "pieces", "fragile"):
        assert f'name="{name}"' in page
    assert 'type="checkbox" name="fragile"' in page and "Who gets it" in page
    good = {"workflow": "parcels", "recipient": "Ada", "weight_kg": "2.5", "pieces": "3"}
    before = await running.store.last_position()
    status, page, _ = await call(running.ui.url + "start", good)  # no token
    assert status == 403 and "needs the dashboard&#39;s token" in page
    status, page, _ = await call(running.ui.url + "start", good, token="wrong" * 5)
    assert status == 403
    bad = {**good, "weight_kg": "-1", "recipient": ""}
    status, page, _ = await call(running.ui.url + "start", bad, token=TOKEN)
    assert status == 422
    assert "recipient: Field required" in page  # left empty
    assert "weight_kg: Input should be greater than 0" in page
    assert 'value="-1"' in page  # what was typed stays in the form
    status, page, _ = await call(running.ui.url + "start", {**good, "pieces": "x"}, token=TOKEN)
    assert status == 422 and "pieces: invalid literal for int()" in page
    assert await running.store.last_position() == before  # nothing written
    status, _, location = await call(running.ui.url + "start", good, token=TOKEN)
    assert status == 303 and location is not None and location.startswith("/sagas/")
    saga_id = location.rsplit("/", 1)[1]
    state = await running.engine.wait(saga_id, timeout=30)
    assert state.status == "completed"
    assert dict(state.input) == {
        "recipient": "Ada",
        "weight_kg": 2.5,
        "pieces": 3,
        "fragile": False,
    }


async def test_a_failed_saga_is_resumed_from_its_page(running: Running) -> None:
    saga_id = await running.engine.start_saga("diamond", {"fail": "d", "broken_undo": "b"})
    BROKEN_UNDO.add(saga_id)
    try:
        assert (await running.engine.wait(saga_id, timeout=30)).status == "failed"
    finally:
        BROKEN_UNDO.discard(saga_id)
    status, page, _ = await call(running.ui.url + f"sagas/{saga_id}")
    assert 'id="resume"' in page
    status, _, _ = await call(running.ui.url + f"sagas/{saga_id}/resume", {})
    assert status == 403
    assert (await running.engine.saga(saga_id)).status == "failed"  # type: ignore[union-attr]
    status, _, location = await call(running.ui.url + f"sagas/{saga_id}/resume", {}, token=TOKEN)
    assert (status, location) == (303, f"/sagas/{saga_id}")
    assert (await running.engine.wait(saga_id, timeout=30)).status == "compensated"
    status, page, _ = await call(running.ui.url + f"sagas/{saga_id}/resume", {}, token=TOKEN)
    assert status == 409  # nothing to resume any more


async def test_dead_letters_are_shown_reprocessed_and_discarded(running: Running) -> None:
    broker = running.broker
    ids = [await broker.publish("orders", {"n": n}, headers={"saga_id": f"s{n}"}) for n in (1, 2)]
    got = 0
    async for message in broker.consume("orders", "billing"):
        await broker.nack(message, f"poison {message.payload['n']}", requeue=False)
        got += 1
        if got == 2:
            break
    first, second = await broker.get_dead_letter_messages("orders")
    status, page, _ = await call(running.ui.url + "dead-letters")
    assert status == 200
    assert f'data-letter="{first.dlq_id}"' in page and "poison 2" in page
    url = running.ui.url + f"dead-letters/orders/{urllib.parse.quote(first.dlq_id)}"
    status, page, _ = await call(url)
    assert status == 200 and "matches payload and headers" in page
    assert '"n": 1' in page
    status, _, _ = await call(url + "/reprocess", {})
    assert status == 403 and await broker.get_dead_letter_count("orders") == 2
    status, _, location = await call(url + "/reprocess", {}, token=TOKEN)
    assert (status, location) == (303, "/dead-letters")
    async for message in broker.consume("orders", "billing"):  # delivered again
        assert message.id == ids[0] and message.retry_count == 0
        await broker.acknowledge(message)
        break
    other = running.ui.url + f"dead-letters/orders/{urllib.parse.quote(second.dlq_id)}"
    status, page, _ = await call(other + "/discard", {"reason": ""}, token=TOKEN)
    assert status == 400 and "needs a reason" in page
    status, _, _ = await call(other + "/discard", {"reason": "test order"}, token=TOKEN)
    assert status == 303
    assert await broker.get_dead_letter_count("orders") == 0
    (archived,) = await broker.get_discarded_dead_letters("orders")
    assert archived.reason == "test order" and archived.discarded_by == "dashboard"
    status, page, _ = await call(url)
    assert status == 404 and "no dead letter" in page


async def test_the_engine_page_and_a_read_only_dashboard(running: Running) -> None:
    status, page, _ = await call(running.ui.url + "engine")
    assert status == 200
    assert "none (in-memory broker)" in page and "saga.steps.diamond" in page
    members = page.split('id="members"', 1)[1].split("</table>", 1)[0]
    everything = ", ".join(str(p) for p in range(16))
    assert f"<code>{running.engine.consumer}#" in members and "(this engine)" in members
    assert f"<td>{everything}</td>" in members  # alone, it holds every partition
    read_only = await serve_ui(UiSettings(port=0), running.store, FLOWS)
    try:
        assert read_only.token is None
        status, page, _ = await call(read_only.url)
        assert status == 200 and "read-only" in page and "/start" not in page
        status, _, _ = await call(read_only.url + "start", {"workflow": "parcels"}, token=TOKEN)
        assert status == 404  # no such action at all
    finally:
        await read_only.close()


async def test_the_same_input_check_in_the_api_and_the_command_line(tmp_path: Path) -> None:
    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker()
    await broker.connect()
    try:
        async with Engine(store, broker, [PARCELS]) as engine:
            with pytest.raises(InputError, match="weight_kg: Field required"):
                await engine.start_saga("parcels", {"recipient": "Ada"})
        assert await store.last_position() == 0
    finally:
        await broker.disconnect()
        await store.close()
    db = tmp_path / "s.db"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orchestrator.cli", "start", "order_fulfilment",
         "--store", f"sqlite:///{db}", "--workflows", str(ROOT / "workflows"),
         "--input", '{"sku": "A1", "qty": 2}'],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "invalid input for order_fulfilment: order_id: Field required" in done.stderr
    assert "quantity: Field required" in done.stderr
    assert done.stdout == ""  # no saga id: nothing was started


@pytest.mark.redis
async def test_the_engine_page_shows_every_engine_and_what_it_holds(
    redis_url: str, tmp_path: Path
) -> None:
    """Two engines on one Redis: either one's page names both, and which partitions of
    the replies each holds (the broker's membership, as ownership uses it)."""
    from brokers import ConsumerOptions, RedisStreamsBroker

    options = ConsumerOptions(visibility_timeout=2.0, block_time=0.05, membership_ttl=2.0)
    store = await EventStore.open(f"sqlite:///{tmp_path / 'sagas.db'}")
    brokers = [RedisStreamsBroker(redis_url=redis_url, consumer_options=options) for _ in "ab"]
    for broker in brokers:
        await broker.connect()
    engines = [Engine(store, broker, FLOWS) for broker in brokers]
    try:
        async with engines[0], engines[1]:
            ui = await serve_ui(
                UiSettings(port=0, token=TOKEN), store, FLOWS, engine=engines[0], broker=brokers[0]
            )
            try:
                async with asyncio.timeout(30):
                    while True:
                        _, page, _ = await call(ui.url + "engine")
                        members = page.split('id="members"', 1)[1].split("</table>", 1)[0]
                        rows = [r for r in members.split("<tr")[2:] if "saga.replies" in r]
                        if len(rows) == 2:
                            break
                        await asyncio.sleep(0.2)
                names = {engine.consumer for engine in engines}
                for row in rows:
                    assert any(f"<code>{name}#" in row for name in names), row
                assert sum("(this engine)" in row for row in rows) == 1
            finally:
                await ui.close()
    finally:
        for broker in brokers:
            await broker.disconnect()
        await store.close()


def test_the_form_types_optional_and_nested_fields_sensibly() -> None:
    from orchestrator.ui.actions import form_fields

    class Address(BaseModel):
        street: str

    class Odd(BaseModel):
        note: str | None = None
        count: int | None = None
        address: Address
        tags: list[str] = []

    odd = WorkflowBuilder("odd", input=Odd)
    odd.step(name="only", kind="retriable")(lambda data: {})
    types = {f["name"]: f["type"] for f in form_fields(odd.build())}
    assert types == {"note": "string", "count": "integer", "address": "json", "tags": "json"}
