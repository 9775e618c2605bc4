"""What keeps slow or greedy clients from starving `depot serve` (docs/upload-api.md, "Limits").

uvicorn closes idle keep-alive connections, but not a connection that never finishes its request
headers, and it accepts connections without bound. `guarded_protocol` adds both, on uvicorn's own
h11 protocol:

- a header deadline: a connection whose request headers are not complete `header_timeout_s` after
  it opened (or after its previous response) is closed;
- a connection limit: above `max_connections` a new connection is answered 503 with Retry-After
  at once and closed, before any of its bytes are parsed.

`Guard` wraps the app: above `max_inflight` requests in progress a request is answered 503 with
Retry-After, and each answered request can be logged on the `depot.access` logger. The body's
own cap and deadline are the upload handler's (server_upload.read_body): they depend on the endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from host_tools.server_metrics import Metrics

access_log = logging.getLogger("depot.access")


@dataclass(frozen=True)
class Limits:
    max_body: int = 64 * 1024  # bytes of one batch, counted as they arrive (chunked too)
    max_records: int = 256  # records in one batch
    header_timeout_s: float = 10.0  # request line and headers complete within this
    body_timeout_s: float = 60.0  # the whole body within this (a slow cellular uplink: ~2 KB/s)
    max_connections: int = 512  # open at once; well below the process's file limit
    max_inflight: int = 64  # requests being answered at once
    retry_after_s: int = 5  # what a 503 asks the client to wait


def busy_body(limit: str) -> bytes:
    return json.dumps({"error": "overloaded", "detail": f"too many {limit}; retry later"}).encode()


def busy_response(limits: Limits, limit: str) -> bytes:
    """A complete raw HTTP 503, for a connection turned away before it was parsed."""
    body = busy_body(limit)
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"retry-after: %d\r\nx-depot-error: overloaded\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (limits.retry_after_s, len(body), body))


def guarded_protocol(limits: Limits, metrics: Metrics) -> type[H11Protocol]:
    class GuardedH11(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _turned_away = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            metrics.connections.inc()
            if len(self.connections) > limits.max_connections:
                self._turned_away = True
                metrics.overload("connections")
                transport.write(busy_response(limits, "connections"))
                if transport.can_write_eof():
                    transport.write_eof()  # the client reads the 503, then we close
                self._deadline = self.loop.call_later(1.0, transport.close)
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._turned_away:
                return  # never parsed: this connection only gets its 503
            super().data_received(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers have the same deadline

        def connection_lost(self, exc: Exception | None) -> None:
            metrics.connections.dec()
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(limits.header_timeout_s, self._headers_late)

        def _headers_late(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                metrics.timeout("headers")
                self.transport.close()

    return GuardedH11


class Guard:
    """ASGI wrapper: the in-flight limit and the access log."""

    def __init__(self, app: Any, limits: Limits, metrics: Metrics, log_access: bool = False):
        self.app = app
        self.state = app.state  # the Starlette app's (metrics, store, limits)
        self.limits = limits
        self.metrics = metrics
        self.log_access = log_access
        self.inflight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limits.max_inflight:
            self.metrics.overload("requests")
            body = busy_body("requests")
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(self.limits.retry_after_s).encode()),
                (b"x-depot-error", b"overloaded"), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            self._log(scope, 503, len(body), 0.0)
            return
        self.inflight += 1
        t0 = time.perf_counter()
        answer = {"status": 0, "bytes": 0}

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.inflight -= 1
            self._log(scope, answer["status"], answer["bytes"], time.perf_counter() - t0)

    def _log(self, scope: dict, status: int, nbytes: int, seconds: float) -> None:
        if self.log_access:
            client = scope.get("client") or ("-", 0)
            access_log.info("%s %s %s %d %d %.1fms", client[0], scope["method"], scope["path"], status,
                            nbytes, seconds * 1000)
