"""A hypothesis state machine holds the store to a plain in-memory model.

Appends are submitted in concurrent groups, so the group-commit writer decides several
of them in one batch; the model applies them one by one in submission order, which is
the order the store promises.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventstore import ANY, NO_STREAM, ConcurrencyError, EventStore, NewRecord

STREAMS = ["a", "b", "c"]

appends = st.tuples(
    st.sampled_from(STREAMS),
    st.integers(1, 3),  # how many records
    st.sampled_from(["any", "no_stream", "exact", "wrong"]),
)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = self.loop.run_until_complete(EventStore.open("sqlite:///:memory:"))
        self.model: dict[str, list[dict[str, Any]]] = {s: [] for s in STREAMS}
        self.order: list[tuple[str, int]] = []
        self.counter = 0

    def teardown(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()

    def _expected(self, stream: str, how: str) -> Any:
        version = len(self.model[stream])
        return {"any": ANY, "no_stream": NO_STREAM, "exact": version, "wrong": version + 1}[how]

    @rule(group=st.lists(appends, min_size=1, max_size=6))
    def append_concurrently(self, group: list[tuple[str, int, str]]) -> None:
        calls: list[tuple[str, list[dict[str, int]], Any, bool]] = []
        for stream, count, how in group:
            # expected versions are chosen against the model as each append is submitted,
            # as if each caller had read the stream just before
            expected = self._expected(stream, how)
            version = len(self.model[stream])
            ok = how in ("any", "exact") or (how == "no_stream" and version == 0)
            data = [{"n": self.counter + i + 1} for i in range(count)]
            self.counter += count
            if ok:
                self.model[stream].extend(data)
                self.order.extend((stream, item["n"]) for item in data)
            calls.append((stream, data, expected, ok))

        async def run() -> list[Any]:
            return await asyncio.gather(
                *(
                    self.store.append(s, [NewRecord("event", "t", d) for d in data], e)
                    for s, data, e, _ in calls
                ),
                return_exceptions=True,
            )

        outcomes = self.loop.run_until_complete(run())
        for (_, _, _, ok), outcome in zip(calls, outcomes, strict=True):
            if ok:
                assert not isinstance(outcome, BaseException), outcome
            else:
                assert isinstance(outcome, ConcurrencyError), outcome

    @precondition(lambda self: any(self.model.values()))
    @rule(stream=st.sampled_from(STREAMS), start=st.integers(1, 8))
    def read_from_a_version(self, stream: str, start: int) -> None:
        got = self.loop.run_until_complete(self.store.read_stream(stream, start))
        assert [r.data for r in got] == self.model[stream][start - 1 :]

    @invariant()
    def streams_and_global_order_match_the_model(self) -> None:
        for stream in STREAMS:
            got = self.loop.run_until_complete(self.store.read_stream(stream))
            assert [r.data for r in got] == self.model[stream]
            assert [r.version for r in got] == list(range(1, len(got) + 1))
        everything = self.loop.run_until_complete(self.store.read_all(0, 10_000))
        assert [(r.stream_id, r.data["n"]) for r in everything] == self.order

    @invariant()
    def chain_verifies(self) -> None:
        assert self.loop.run_until_complete(self.store.verify()).ok


StoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=15, deadline=None)
TestStoreMachine = StoreMachine.TestCase
