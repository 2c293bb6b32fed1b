"""docs/CHAIN.md's tables and examples are what the code does: the worked example, the
genesis values, the number forms (Python's, and JavaScript's and Go's where those are
installed), the string and key-order rules, what an append refuses, the order of the
reasons, and the command-line names the page uses. The verifier script and the
detection claims are tested in tests/eventstore/test_chain_spec.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner

from eventstore import (
    LOG_GENESIS,
    NO_STREAM,
    EventStore,
    InvalidRecordError,
    NewRecord,
    Record,
    canonical_json,
    genesis_hash,
)
from eventstore._verify import Problem
from orchestrator.cli import cli
from orchestrator.runtime.settings import load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "CHAIN.md"
TEXT = DOC.read_text("utf-8")


def _table(marker: str) -> list[list[str]]:
    """The rows of the table after ``<!-- marker: … -->``, cells without backticks."""
    after = TEXT.split(f"<!-- {marker}:", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in after.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def _code(cell: str) -> str:
    match = re.fullmatch(r"`([^`]*)`", cell)
    assert match, cell
    return match.group(1)


def test_the_worked_example_is_what_the_store_writes() -> None:
    example = re.search(r"```text\n(genesis .*?)```", TEXT, flags=re.S)
    assert example
    values = dict(re.findall(r"^(\w+)\s+= (.*)$", example.group(1), flags=re.M))

    async def write() -> list[Record]:
        moment = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        store = await EventStore.open("sqlite:///:memory:", clock=lambda: moment)
        try:
            data = {"total": 12.5, "items": ["tea"]}
            await store.append("order-1", [NewRecord("event", "order.placed", data)], NO_STREAM)
            return await store.read_all()
        finally:
            await store.close()

    [record] = asyncio.run(write())
    assert values["genesis"] == genesis_hash("order-1") == record.prev_hash
    assert (
        hashlib.sha256((values["genesis"] + values["body"]).encode()).hexdigest() == values["hash"]
    )
    assert values["hash"] == record.hash
    assert values["log_hash"] == record.log_hash
    link = hashlib.sha256(f"{LOG_GENESIS}{values['hash']}1".encode()).hexdigest()
    assert link == values["log_hash"]


def test_the_genesis_values_are_the_code_s() -> None:
    assert f"= {LOG_GENESIS}" in TEXT
    assert hashlib.sha256(b"eventstore.log.genesis").hexdigest() == LOG_GENESIS
    assert 'sha256( b"eventstore.genesis\\x00" + utf8(stream_id) )' in TEXT
    stream = "saga-ü"
    expected = hashlib.sha256(b"eventstore.genesis\x00" + stream.encode()).hexdigest()
    assert genesis_hash(stream) == expected


NUMBERS = _table("numbers")


def test_the_number_table_is_what_the_store_writes() -> None:
    assert len(NUMBERS) >= 8
    for stored, _, _ in NUMBERS:
        text = _code(stored)
        assert canonical_json(json.loads(text)) == text
        assert canonical_json({"x": json.loads(text)}) == f'{{"x":{text}}}'
    assert canonical_json({"x": 1}) != canonical_json({"x": 1.0}) == '{"x":1.0}'


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_number_table_is_what_javascript_writes() -> None:
    texts = [_code(stored) for stored, _, _ in NUMBERS]
    script = (
        "for (const t of JSON.parse(process.argv[1])) console.log(JSON.stringify(JSON.parse(t)))"
    )
    done = subprocess.run(
        ["node", "-e", script, json.dumps(texts)], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [_code(js) for _, js, _ in NUMBERS]


GO_PROGRAM = """package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	var texts []string
	json.Unmarshal([]byte(os.Args[1]), &texts)
	for _, text := range texts {
		var value any
		json.Unmarshal([]byte(text), &value)
		out, _ := json.Marshal(value)
		fmt.Println(string(out))
	}
	out, _ := json.Marshal("\\u2028<>&")
	fmt.Println(string(out))
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
def test_the_number_table_is_what_go_writes(tmp_path: Path) -> None:
    (tmp_path / "main.go").write_text(GO_PROGRAM)
    texts = [_code(stored) for stored, _, _ in NUMBERS]
    done = subprocess.run(
        ["go", "run", "main.go", json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=120,
    )
    *numbers, escaped = done.stdout.splitlines()
    assert numbers == [_code(go) for _, _, go in NUMBERS]
    assert escaped == '"\\u2028\\u003c\\u003e\\u0026"'  # what the page says Go escapes


def test_strings_and_keys_as_the_page_says() -> None:
    assert canonical_json('"\\\b\f\n\r\t\x1f\x00') == '"\\"\\\\\\b\\f\\n\\r\\t\\u001f\\u0000"'
    for kept in ("é", "😀", "/", "<", ">", "&", "\x7f", "\u2028", "\u2029"):
        assert canonical_json(kept) == f'"{kept}"'
    assert list(json.loads(canonical_json({"😀": 0, "\uffff": 0}))) == ["\uffff", "😀"]
    # RFC 8785 sorts by UTF-16 code units: U+1F600 is D83D DE00, before U+FFFF.
    assert sorted(["\uffff", "😀"], key=lambda k: k.encode("utf-16-be")) == ["😀", "\uffff"]


@pytest.mark.parametrize(
    "data",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": 2**64},
        {"x": -(2**63) - 1},
        {1: "a key that is not a string"},
        {"x": "\ud800"},
        ["not", "an", "object"],
    ],
    ids=["NaN", "Infinity", "2**64", "-2**63-1", "int key", "lone surrogate", "list"],
)
def test_what_an_append_refuses(data: object) -> None:
    async def append() -> None:
        store = await EventStore.open("sqlite:///:memory:")
        try:
            with pytest.raises(InvalidRecordError):
                await store.append("s", [NewRecord("event", "t", data)], NO_STREAM)  # type: ignore[arg-type]
            assert await store.last_position() == 0
            edges = {"lo": -(2**63), "hi": 2**64 - 1}
            await store.append("s", [NewRecord("event", "t", edges)], NO_STREAM)
        finally:
            await store.close()

    asyncio.run(append())


def test_the_reasons_are_listed_in_the_code_s_order() -> None:
    named: list[str] = []
    for row in _table("reasons"):
        for reason in re.findall(r"`([^`]+)`", row[0]):
            if reason not in named:
                named.append(reason)
    assert named == list(get_args(Problem))


def test_the_command_line_names_the_page_uses(tmp_path: Path) -> None:
    runner = CliRunner()
    usage = runner.invoke(cli, ["verify", "--help"], obj={}).output
    for option in ("--stream", "--public-key", "--sealed", "--heads", "--against", "--json"):
        assert option in usage
    key = tmp_path / "checkpoint.key"
    assert runner.invoke(cli, ["keygen", "--out", str(key)], obj={}).exit_code == 0
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert (tmp_path / "checkpoint.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")

    db = tmp_path / "store.sqlite"

    async def fill() -> None:
        store = await EventStore.open(f"sqlite:///{db}")
        await store.append("a", [NewRecord("event", "t", {})], NO_STREAM)
        await store.close()

    asyncio.run(fill())
    heads = tmp_path / "head.json"
    done = runner.invoke(
        cli, ["verify", "--store", f"sqlite:///{db}", "--heads", str(heads)], obj={}
    )
    assert done.exit_code == 0, done.output
    assert set(json.loads(heads.read_text())) == {
        "store", "position", "log_hash", "hash", "stream_id", "version",
    }  # fmt: skip

    config = tmp_path / "sagaflow.yaml"
    config.write_text("audit:\n  checkpoint_every: 1000\n  checkpoint_interval: 60\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GREENLANG_AUDIT_SIGNING_KEY_FILE", str(key))
        audit = load_settings(config).audit
        assert audit.signer() is not None
        assert (audit.checkpoint_every, audit.checkpoint_interval) == (1000, 60)
