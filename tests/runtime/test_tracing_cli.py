"""Tracing as a user turns it on: ``orchestrator run --role engine`` and ``--role
worker`` as two processes on a real redis-server, each exporting OTLP/HTTP to a
collector on loopback; ``orchestrator start --traceparent`` puts the saga in the
caller's trace, and the spans of both processes form that one trace."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.runtime.processes import serving
from tests.runtime.test_metrics import ORDER, ROOT
from tests.servers import RedisServer


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]
    role: str


class Collector:
    """An OTLP/HTTP trace receiver on a free loopback port, keeping what it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.received(request)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def received(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append(
                            Span(
                                span.name,
                                span.trace_id.hex(),
                                span.span_id.hex(),
                                span.parent_span_id.hex(),
                                _attributes(span.attributes),
                                str(resource["sagaflow.role"]),
                            )
                        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        kind = pair.value.WhichOneof("value")
        out[pair.key] = getattr(pair.value, kind) if kind else None
    return out


@pytest.fixture
def collector() -> Iterator[Collector]:
    made = Collector()
    yield made
    made.close()


def orchestrator(*args: str, cwd: Path) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def start_role(config: Path, role: str, cwd: Path, started: str) -> subprocess.Popen[str]:
    process, line = serving(["run", "--config", str(config), "--role", role], cwd, started)
    assert "spans to http://127.0.0.1:" in line, line
    return process


@pytest.mark.redis
def test_engine_and_worker_processes_export_one_trace_per_saga(
    tmp_path: Path, redis_server: RedisServer, collector: Collector
) -> None:
    config = tmp_path / "sagaflow.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'sagas.db'}\nworkflows: {ROOT / 'workflows'}\n"
        f"broker_type: redis\nredis:\n  host: 127.0.0.1\n  port: {redis_server.port}\n"
        "metrics_enabled: false\nengine:\n  intake_poll_interval: 0.05\n"
        f"tracing:\n  enabled: true\n  endpoint: {collector.url}\n"
    )
    processes = []
    try:
        processes.append(start_role(config, "engine", tmp_path, "engine running"))
        processes.append(start_role(config, "worker", tmp_path, "step workers running"))
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        started = subprocess.run(
            orchestrator(
                "start", "order_fulfilment", "--config", str(config), "--wait",
                "--input", _json({**ORDER, "card": "4000000000000002"}),  # declined
                cwd=tmp_path,
            ),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TRACEPARENT": f"00-{caller_trace}-{caller_span}-01"},
        )  # fmt: skip
        assert started.returncode == 3, started.stdout + started.stderr  # compensated
        saga_id = started.stdout.split()[0]
        for process in processes:  # a clean stop exports what is still batched
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=60)
            assert process.returncode == 0, out
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    spans = [s for s in collector.spans if s.attributes.get("sagaflow.saga_id") == saga_id]
    (saga,) = [s for s in spans if s.name == "saga order_fulfilment"]
    assert saga.role == "engine"
    assert (saga.trace_id, saga.parent) == (caller_trace, caller_span)
    assert saga.attributes["sagaflow.saga.status"] == "compensated"
    steps = [s for s in spans if s is not saga]
    assert {s.role for s in steps} == {"worker"}
    assert {(s.trace_id, s.parent) for s in steps} == {(caller_trace, saga.span_id)}
    names = {s.name for s in steps}
    assert "step charge_payment" in names, names
    assert any(name.startswith("compensate ") for name in names), names


def test_start_refuses_a_malformed_traceparent(tmp_path: Path) -> None:
    result = subprocess.run(
        orchestrator(
            "start", "order_fulfilment", "--store", f"sqlite:///{tmp_path / 's.db'}",
            "--workflows", str(ROOT / "workflows"), "--traceparent", "00-abc-def-01",
            cwd=tmp_path,
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "'00-abc-def-01' is not a W3C traceparent" in result.stderr
    assert "--traceparent" in result.stderr
    assert not (tmp_path / "s.db").exists()  # refused before anything was written


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value)
