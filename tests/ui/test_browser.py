"""The dashboard in a real browser: Debian's Chromium, driven by Playwright, headless.

An engine runs sagas in this process while the page watches: step nodes change state
live, a failed saga's compensations light up in order, the timeline shows the chain
verified, and nothing is fetched from anywhere but the dashboard itself. Screenshots
go to each test's folder (and, with ``SAGAFLOW_SCREENSHOTS=DIR``, to DIR too: that is
how the README's is made).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from pydantic import BaseModel, Field

from brokers import InMemoryBroker
from eventstore import EventStore
from orchestrator import StepError, WorkflowBuilder
from orchestrator.cli.ui_command import RunningUi, serve_ui
from orchestrator.runtime.engine import Engine
from orchestrator.runtime.settings import UiSettings
from orchestrator.runtime.worker import current_step
from tests.runtime.conftest import FAST

CHROMIUM = "/usr/bin/chromium"
GATES: dict[str, asyncio.Event] = {}
"""Gate name (``<saga id>:<step>``) → opened by the test to let that step finish."""


async def _gate(name: str) -> None:
    gate = GATES.setdefault(f"{current_step().saga_id}:{name}", asyncio.Event())
    await gate.wait()


class Shipment(BaseModel):
    destination: str = Field("Lisbon", min_length=1, description="Where it goes")
    priority: int = Field(1, ge=1, le=3)
    fail: bool = False


shipping = WorkflowBuilder("shipping", input=Shipment)
TOKEN = "browser-token-0123456789"


async def _unbook(data: dict[str, Any]) -> None:
    await _gate("undo_book")


async def _unpack(data: dict[str, Any]) -> None:
    await _gate("undo_pack")


@shipping.step(compensation=_unbook)
async def book(data: dict[str, Any]) -> dict[str, Any]:
    await _gate("book")
    return {"booking": "b-1"}


@shipping.step(after=[book], compensation=_unpack)
async def pack(data: dict[str, Any]) -> dict[str, Any]:
    return {"parcel": "p-1"}


@shipping.step(after=[pack], kind="pivot")
async def dispatch(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("fail"):
        raise StepError("no courier today", retryable=False)
    return {"tracking": "t-1"}


SHIPPING = shipping.build()


def open_gate(saga_id: str, name: str) -> None:
    GATES.setdefault(f"{saga_id}:{name}", asyncio.Event()).set()


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test installs it (apt-get chromium)")


def _keep(path: Path) -> None:
    keep = os.environ.get("SAGAFLOW_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    _require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        await launched.close()


@pytest.fixture
async def running() -> AsyncIterator[tuple[Engine, RunningUi]]:
    store = await EventStore.open("sqlite:///:memory:")
    broker = InMemoryBroker(consumer_options=FAST)
    await broker.connect()
    engine = Engine(store, broker, [SHIPPING])
    config = UiSettings(port=0, live_interval=0.2, token=TOKEN)
    ui = await serve_ui(config, store, {"shipping": SHIPPING}, engine=engine, broker=broker)
    async with engine:
        yield engine, ui
    await ui.close()
    await broker.disconnect()
    await store.close()


@pytest.fixture
async def page(browser: Browser, tmp_path: Path) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    opened = await context.new_page()
    yield opened
    await context.close()


def node(page: Page, name: str) -> Any:
    return page.locator(f'[data-node="{name}"]')


async def shoot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert len(await asyncio.to_thread(path.read_bytes)) > 10_000
    await asyncio.to_thread(_keep, path)


async def test_a_saga_s_nodes_change_state_live(
    running: tuple[Engine, RunningUi], page: Page, tmp_path: Path
) -> None:
    engine, ui = running
    saga_id = await engine.start_saga("shipping", {})
    await page.goto(f"{ui.url}sagas/{saga_id}")
    await expect(node(page, "step:book")).to_have_attribute("data-state", "running")
    await expect(node(page, "step:pack")).to_have_attribute("data-state", "pending")
    await shoot(page, tmp_path, "running")
    open_gate(saga_id, "book")  # the page is not reloaded: it follows by itself
    for step in ("book", "pack", "dispatch"):
        await expect(node(page, f"step:{step}")).to_have_attribute("data-state", "succeeded")
    await expect(page.locator(".badge").first).to_have_text("completed")
    await expect(page.locator("#chain")).to_have_text("verified")
    rows = page.locator("#timeline tbody tr")
    await expect(rows).to_have_count(9)
    await expect(page.locator("#timeline td.ok")).to_have_count(9)
    # and the list, live too
    await page.goto(ui.url)
    await expect(page.locator(f'tr[data-saga="{saga_id}"] .badge')).to_have_text("completed")
    other = await engine.start_saga("shipping", {})
    await expect(page.locator(f'tr[data-saga="{other}"] .badge')).to_have_text("running")
    open_gate(other, "book")


async def test_a_failed_saga_s_compensations_light_up_in_order(
    running: tuple[Engine, RunningUi], page: Page, tmp_path: Path
) -> None:
    engine, ui = running
    saga_id = await engine.start_saga("shipping", {"fail": True})
    open_gate(saga_id, "book")
    await page.goto(f"{ui.url}sagas/{saga_id}")
    await expect(node(page, "step:dispatch")).to_have_attribute("data-state", "failed")
    # pack was done after book, so its undo runs first; book's waits for it
    await expect(node(page, "undo:pack")).to_have_attribute("data-state", "compensating")
    await expect(node(page, "undo:book")).to_have_attribute("data-state", "pending")
    edge = page.locator('[data-edge="undo:pack>undo:book"]')
    await expect(edge).to_have_class("edge compensation compensating")
    open_gate(saga_id, "undo_pack")
    await expect(node(page, "undo:pack")).to_have_attribute("data-state", "compensated")
    await expect(node(page, "undo:book")).to_have_attribute("data-state", "compensating")
    await expect(edge).to_have_class("edge compensation compensated")
    open_gate(saga_id, "undo_book")
    await expect(node(page, "undo:book")).to_have_attribute("data-state", "compensated")
    await expect(page.locator(".badge").first).to_have_text("compensated")
    await expect(page.locator("#chain")).to_have_text("verified")
    await expect(page.locator("#timeline tr.compensation")).to_have_count(4)
    await shoot(page, tmp_path, "saga-compensated")


async def test_the_pages_need_no_network(
    running: tuple[Engine, RunningUi], page: Page, tmp_path: Path
) -> None:
    """Every request the pages make goes to the dashboard; anything else is cut off
    (and would fail the test), and the pages still render styled."""
    engine, ui = running
    saga_id = await engine.start_saga("shipping", {})
    open_gate(saga_id, "book")
    await engine.wait(saga_id, timeout=30)
    requested: list[str] = []

    async def only_local(route: Any) -> None:
        url = route.request.url
        requested.append(url)
        if url.startswith(ui.url):
            await route.continue_()
        else:
            await route.abort()

    await page.route("**/*", only_local)
    for path in ("", f"sagas/{saga_id}", "workflows"):
        await page.goto(ui.url + path)
        await page.wait_for_timeout(700)  # the page's own refreshes, a few of them
    assert requested and all(url.startswith(ui.url) for url in requested), requested
    fill = (
        await node(page, "step:book")
        .locator("rect")
        .evaluate("rect => getComputedStyle(rect).fill")
    )
    assert fill not in ("", "rgb(0, 0, 0)")  # the stylesheet came from the dashboard
    await shoot(page, tmp_path, "workflows")


async def test_a_saga_is_started_from_the_page(
    running: tuple[Engine, RunningUi], page: Page, tmp_path: Path
) -> None:
    _, ui = running
    await page.goto(f"{ui.url}start?workflow=shipping")
    await page.fill("#token", TOKEN)
    await page.fill('input[name="destination"]', "Porto")
    await shoot(page, tmp_path, "start-form")
    await page.click("#start button[type=submit]")
    await page.wait_for_url(f"{ui.url}sagas/*")
    saga_id = page.url.rsplit("/", 1)[1]
    await expect(node(page, "step:book")).to_have_attribute("data-state", "running")
    open_gate(saga_id, "book")
    await expect(node(page, "step:dispatch")).to_have_attribute("data-state", "succeeded")
    await expect(page.locator('[data-step="book"] pre').first).to_contain_text("Porto")


async def test_an_action_without_the_token_is_refused(
    running: tuple[Engine, RunningUi], page: Page, tmp_path: Path
) -> None:
    engine, ui = running
    await page.goto(f"{ui.url}start?workflow=shipping")
    await page.fill('input[name="destination"]', "Faro")  # and no token typed
    await page.click("#start button[type=submit]")
    await expect(page.locator("#error")).to_contain_text("refused: this action needs")
    await shoot(page, tmp_path, "refused")
    assert await engine.store.last_position() == 0  # nothing was started
    # a wrong input, with the token, is refused by the model, naming the field
    await page.goto(f"{ui.url}start?workflow=shipping")
    await page.fill("#token", TOKEN)
    await page.fill('input[name="priority"]', "9")
    await page.click("#start button[type=submit]")
    await expect(page.locator("#error")).to_contain_text(
        "priority: Input should be less than or equal to 3"
    )
    assert await engine.store.last_position() == 0


async def test_a_dead_letter_is_reprocessed_from_the_page(
    running: tuple[Engine, RunningUi], page: Page, tmp_path: Path
) -> None:
    engine, ui = running
    broker = engine.broker
    message_id = await broker.publish("invoices", {"invoice": 7})
    async for message in broker.consume("invoices", "billing"):
        await broker.nack(message, "ledger closed", requeue=False)
        break
    await page.goto(f"{ui.url}dead-letters")
    await page.fill("#token", TOKEN)
    row = page.locator("#letters tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("ledger closed")
    await row.locator("a").first.click()
    await expect(page.locator("#provenance")).to_contain_text("matches payload and headers")
    await shoot(page, tmp_path, "dead-letter")
    await page.click("#reprocess")
    await page.wait_for_url(f"{ui.url}dead-letters")
    await expect(page.locator("#letters")).to_contain_text("No dead letters.")
    async for message in broker.consume("invoices", "billing"):
        assert (message.id, message.payload) == (message_id, {"invoice": 7})
        await broker.acknowledge(message)
        break
