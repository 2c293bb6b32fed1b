"""``/metrics`` over HTTP: a tiny asyncio server in the engine's own event loop.

No thread and no framework: one GET per connection, answered and closed, which is
all a Prometheus scrape needs. It binds to 127.0.0.1 by default; ``metrics.host``
opens it wider (``0.0.0.0`` for a scraper on another host).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["MetricsServer"]

logger = logging.getLogger("orchestrator")

_REQUEST_TIMEOUT = 10.0
_MAX_HEADER_BYTES = 16 * 1024


class MetricsServer:
    """Serves ``render()`` at ``GET /metrics`` on ``host:port`` (port 0: any free one;
    ``port`` tells which after ``start``)."""

    def __init__(self, render: Callable[[], Awaitable[bytes]], host: str, port: int) -> None:
        self._render = render
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self) -> None:
        """Listen; ``OSError`` if the address is taken or cannot be bound."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > _MAX_HEADER_BYTES:
                    raise ValueError("request head too long")
                method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
                path = rest.split(" ", 1)[0].split("?", 1)[0]
                if method not in ("GET", "HEAD"):
                    await _respond(writer, 405, b"only GET\n", "text/plain; charset=utf-8")
                elif path != "/metrics":
                    await _respond(writer, 404, b"see /metrics\n", "text/plain; charset=utf-8")
                else:
                    body = await self._render()
                    await _respond(writer, 200, body, CONTENT_TYPE_LATEST, method == "HEAD")
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that sent no request: nothing to answer
        except Exception:
            logger.exception("metrics: a scrape failed")
            with contextlib.suppress(Exception):
                await _respond(writer, 500, b"scrape failed\n", "text/plain; charset=utf-8")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


async def _respond(
    writer: asyncio.StreamWriter, status: int, body: bytes, content_type: str, head: bool = False
) -> None:
    writer.write(
        (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
    )
    if not head:
        writer.write(body)
    await writer.drain()
