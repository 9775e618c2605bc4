"""The depot's ingest server: handhelds POST signed record batches over cellular (docs/upload-api.md).

Starlette on uvicorn, inside the in-flight guard (server_guard.py). The upload endpoint and its
checks are server_upload.py; each refusal has its own HTTP status and error code, so it says
exactly why and is counted in /metrics (server_metrics.py):

    400 malformed        413 too_large         401 bad_signature      404 unknown_device
    422 tampered_body    412 stale_timestamp   403 replayed_counter   409 record_conflict
    408 body_timeout     503 overloaded (Retry-After)

Store work runs on the store's own threads: one for SQLite (the store serialises writers anyway,
and one writer thread avoids lock contention and keeps the event loop free), as many as its
connection pool holds for PostgreSQL.

The read endpoints (/v1/devices, /metrics) answer an operator token (`Authorization: Bearer`) or,
with no token configured, loopback clients only. /healthz is open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host_tools.server_guard import Guard, Limits, guarded_protocol
from host_tools.server_metrics import CONTENT_TYPE, Metrics
from host_tools.server_upload import Refusal, Uploads
from host_tools.store import Storage, StoreUnavailable, open_store

log = logging.getLogger("depot.serve")

DEFAULT_MAX_BODY = Limits.max_body
DEFAULT_MAX_RECORDS = Limits.max_records


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(store: Storage | str | None = None, *, max_body: int = DEFAULT_MAX_BODY,
               max_records: int = DEFAULT_MAX_RECORDS, clock_window_s: float | None = None,
               limits: Limits | None = None, operator_token: str | None = None,
               access_log: bool = False) -> Any:
    """The ASGI app (Starlette inside the in-flight guard). `clock_window_s`: refuse batches whose
    device clock is further than this from ours (None: the request counter alone guards against
    replay; devices' clocks may be unset). `limits`: sizes, deadlines and connection limits
    (max_body and max_records override its fields). `operator_token`: what the read endpoints
    require; None lets loopback clients read them."""
    limits = dataclasses.replace(limits or Limits(), max_body=max_body, max_records=max_records)
    db: Storage = open_store(store) if store is None or isinstance(store, str) else store
    # SQLite has one writer: one thread. PostgreSQL takes as many as its connection pool holds.
    pool = ThreadPoolExecutor(max_workers=getattr(db, "concurrency", 1), thread_name_prefix="depot-store")
    inflater = ThreadPoolExecutor(max_workers=2, thread_name_prefix="depot-inflate")
    metrics = Metrics()

    async def in_store(fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except StoreUnavailable as exc:  # nothing committed: the device retries, maybe elsewhere
            log.warning("store unavailable: %s", exc)
            raise Refusal(503, "store_unavailable", "the store cannot be reached; retry later",
                          retry_after=limits.retry_after_s) from None

    uploads = Uploads(db, limits, metrics, in_store, inflater, clock_window_s)

    def operator(request: Request, path: str) -> Response | None:
        """None when the caller may read; else the refusal to send."""
        if operator_token is not None:
            given = request.headers.get("authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {operator_token}".encode()):
                return None
            metrics.request(path, 401)
            return JSONResponse({"error": "operator_token", "detail": "Authorization: Bearer <operator "
                                 "token> required"}, status_code=401,
                                headers={"www-authenticate": "Bearer", "x-depot-error": "operator_token"})
        if is_loopback(request.client.host if request.client else None):
            return None
        metrics.request(path, 403)
        return JSONResponse({"error": "loopback_only", "detail": "start depot serve with an operator "
                             "token to read this from another host"}, status_code=403,
                            headers={"x-depot-error": "loopback_only"})

    def device_list() -> list[dict[str, Any]]:
        out = []
        for d in db.devices():
            row = dataclasses.asdict(d)
            out.append({k: v.hex() if isinstance(v, bytes) else v for k, v in row.items()})
        return out

    async def devices(request: Request) -> Response:
        """Read-only view for the depot's browser: every device, its watermark and last contact."""
        if (no := operator(request, "devices")) is not None:
            return no
        metrics.request("devices", 200)
        return JSONResponse({"devices": await in_store(device_list)})

    async def healthz(request: Request) -> Response:
        """200 while this instance can reach its store, 503 when it cannot (a load balancer then
        sends devices to another instance)."""
        # not on the store's threads: they may all be waiting on the database this checks
        reachable = await asyncio.get_running_loop().run_in_executor(None, db.ping)
        status = 200 if reachable else 503
        metrics.request("healthz", status)
        return JSONResponse({"status": "ok" if reachable else "store unreachable", "store": reachable,
                             "uptime_s": round(time.time() - metrics.started, 3)}, status_code=status)

    async def get_metrics(request: Request) -> Response:
        if (no := operator(request, "metrics")) is not None:
            return no
        metrics.request("metrics", 200)
        if request.query_params.get("format") == "json":
            return JSONResponse(metrics.as_dict())
        return Response(metrics.prometheus(), media_type=CONTENT_TYPE)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        pool.shutdown(wait=True)
        inflater.shutdown(wait=True)

    app = Starlette(routes=[
        Route("/v1/devices/{device_id}/records", uploads.post, methods=["POST"]),
        Route("/v1/devices", devices, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.metrics = metrics
    app.state.store = db
    app.state.limits = limits
    return Guard(app, limits, metrics, log_access=access_log)


def uvicorn_config(app: Any, tls_cert: str | None = None, tls_key: str | None = None,
                   **kw: Any) -> uvicorn.Config:
    """uvicorn with the guarded protocol, TLS when given a certificate, and logging left to the
    process's stdlib configuration (log_config=None: uvicorn adds no handlers of its own)."""
    return uvicorn.Config(app, http=guarded_protocol(app.limits, app.metrics), log_config=None,
                          access_log=False, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                          timeout_keep_alive=5, **kw)


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """The server's socket; with `reuse_port` several `depot serve` processes bind the same port
    (SO_REUSEPORT) and the kernel spreads connections among those alive."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8080, store: str | None = None, *,
          tls_cert: str | None = None, tls_key: str | None = None, reuse_port: bool = False,
          **kw: Any) -> None:
    app = create_app(store, **kw)
    sock = listening_socket(host, port, reuse_port)
    uvicorn.Server(uvicorn_config(app, tls_cert, tls_key)).run(sockets=[sock])


class BackgroundServer:
    """`depot serve` in a thread on a free loopback port, for tests, benches and the demo."""

    def __init__(self, store: Storage | str | None = None, host: str = "127.0.0.1",
                 tls_cert: str | None = None, tls_key: str | None = None, **kw: Any):
        self.app = create_app(store, **kw)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"{'https' if tls_cert else 'http'}://{self.host}:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(self.app, tls_cert, tls_key, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("ingest server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    @property
    def metrics(self) -> Metrics:
        return self.app.metrics
