"""Every python block of docs/brokers.md (the seed's snippets) runs against real Redis."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "brokers.md"
BLOCK = re.compile(r"```(python|yaml)\n(.*?)```", re.S)


def blocks(kind: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(DOC.read_text()) if lang == kind]


PYTHON = blocks("python")


def test_the_doc_has_the_seed_snippets() -> None:
    text = "\n".join(PYTHON)
    for needle in (
        "broker.publish(",
        "RequestReplyPattern",
        "WorkQueuePattern",
        "get_dead_letter_messages",
        "MessagingConfig.from_yaml",
        "get_consumer_lag",
        "health_check",
    ):
        assert needle in text, needle


@pytest.mark.redis
@pytest.mark.parametrize("index", range(len(PYTHON)))
async def test_doc_snippet_runs(
    index: int, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "messaging.yaml").write_text(blocks("yaml")[0])
    monkeypatch.chdir(tmp_path)
    code = PYTHON[index].replace("redis://localhost:6379", redis_url)
    # asyncio.run needs a thread without a running loop.
    await asyncio.wait_for(
        asyncio.to_thread(exec, compile(code, f"snippet{index}", "exec"), {"__name__": "__main__"}),
        60,
    )
