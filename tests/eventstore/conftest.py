"""The event-store contract runs against every backend: a SQLite file, SQLite
``:memory:`` and a real PostgreSQL started by the suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import EventStore

BACKENDS = ["sqlite-file", "sqlite-memory", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'events.db'}"
    if request.param == "sqlite-memory":
        return "sqlite:///:memory:"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=[b for b in BACKENDS if b != "sqlite-memory"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database that several store instances (as if several processes) can open."""
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path / 'events.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[EventStore]:
    opened = await EventStore.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()
