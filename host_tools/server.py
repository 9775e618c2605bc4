"""The depot's ingest server: handhelds POST signed record batches over cellular (docs/upload-api.md).

Starlette on uvicorn. Every batch is checked in a fixed order, each failure with its own HTTP
status and error code, so a refusal says exactly why and is counted in /metrics:

    400 malformed        413 too_large         401 bad_signature      404 unknown_device
    422 tampered_body    412 stale_timestamp   403 replayed_counter   409 record_conflict
    408 body_timeout     503 overloaded (Retry-After)

The cheap checks come first (size while the body streams in, framing, enrolment, MAC, body hash,
clock), then the request counter is used up, and only then is a deflated body inflated (bounded,
on a worker thread): a refused batch can never be replayed to make the server work again. A
refusal of a batch whose header the device signed is itself signed (an acknowledgement with
status ACK_REFUSED): only such an answer makes the device set the batch aside.

An accepted batch is stored idempotently (the same store as the dock sync) and answered with an
acknowledgement signed under the device's key, written only after the store committed. SQLite
work runs on one dedicated thread: the store serialises writers anyway, and one writer thread
avoids lock contention and keeps the event loop free.

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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from firmware import upload_wire
from firmware.sign import Signer
from host_tools.server_guard import Guard, Limits, guarded_protocol
from host_tools.server_metrics import CONTENT_TYPE, Metrics
from host_tools.store import IngestResult, Storage, StoreUnavailable, UnknownDevice, open_store
from host_tools.upload_server_wire import Batch, encode_ack

log = logging.getLogger("depot.serve")

SOURCE = "cellular"
COUNTER_NAME = "upload"  # the store's replay guard for the device's request counter
DEFAULT_MAX_BODY = Limits.max_body
DEFAULT_MAX_RECORDS = Limits.max_records
SEEN_EVERY_S = 10.0  # how often a device's last-seen time is written to the store
MAX_ABSENT = 100_000  # seqs one batch may declare never held (leases skipped at power cuts)


class Refusal(Exception):
    """An answer other than an acknowledgement. `close`: end the connection after it (the rest of
    the body is never read). `signed`: a refusal acknowledgement the device can verify."""

    def __init__(self, status: int, code: str, detail: str = "", close: bool = False,
                 retry_after: float | None = None):
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail or code
        self.close = close
        self.retry_after = retry_after
        self.signed: bytes | None = None


class ClientGone(Exception):
    """The client disconnected before its body was complete: nothing to answer."""


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body, counted as it arrives (Content-Length or chunked): 413 as soon as it
    passes `limit`, 408 when it is not complete within `timeout_s`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refusal(400, "malformed", "bad Content-Length", close=True)
        if int(declared) > limit:
            raise Refusal(413, "too_large", f"body over {limit} bytes", close=True)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise Refusal(413, "too_large", f"body over {limit} bytes", close=True)
    except TimeoutError:
        raise Refusal(408, "body_timeout", f"body not complete within {timeout_s:g} s", close=True) from None
    except ClientDisconnect:
        raise ClientGone() from None
    return bytes(body)


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
    keys: dict[bytes, Signer] = {}  # by key, never by device: revoke and rotate-key hold at once
    last_seen: dict[str, float] = {}

    async def in_store(fn: Any, *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except StoreUnavailable as exc:  # nothing committed: the device retries, maybe elsewhere
            log.warning("store unavailable: %s", exc)
            raise Refusal(503, "store_unavailable", "the store cannot be reached; retry later",
                          retry_after=limits.retry_after_s) from None

    async def signer_for(device_id: str) -> Signer | None:
        key = await in_store(db.key, device_id)  # every request: the store is the one authority
        if key is None:
            return None
        s = keys.get(key)
        if s is None:
            if len(keys) > 4096:
                keys.clear()
            s = keys[key] = Signer(key)
        return s

    def use_counter(device_id: str, counter: int) -> bool:
        return db.advance_counter(device_id, COUNTER_NAME, counter)

    def commit(device_id: str, records: list[bytes], absent: list[int]) -> IngestResult:
        if absent:  # before the records: ack_seq may then pass them in the same ingest
            db.declare_absent(device_id, absent, SOURCE)
        res = db.ingest(device_id, records, SOURCE)
        now = time.monotonic()
        if now - last_seen.get(device_id, -SEEN_EVERY_S) >= SEEN_EVERY_S:  # a durable write: not per batch
            last_seen[device_id] = now
            db.seen(device_id, SOURCE)
        return res

    async def refuse_signed(r: Refusal, signer: Signer, device_id: str, counter: int) -> Refusal:
        ack_seq = await in_store(db.ack_seq, device_id)
        r.signed = encode_ack(signer, device_id, counter, ack_seq, status=upload_wire.ACK_REFUSED)
        return r

    async def check(request: Request, device_id: str) -> tuple[Batch, Signer, IngestResult]:
        data = await read_body(request, limits.max_body, limits.body_timeout_s)
        try:
            batch = Batch(data)
        except (upload_wire.FormatError, ValueError, UnicodeError) as exc:
            raise Refusal(400, "malformed", str(exc)) from None
        if batch.device_id != device_id:
            raise Refusal(400, "malformed", "device id in path and batch differ")
        if batch.count > limits.max_records:
            raise Refusal(413, "too_large", f"more than {limits.max_records} records")
        signer = await signer_for(device_id)
        if signer is None:
            raise Refusal(404, "unknown_device", "device not enrolled")
        if not batch.authentic(signer):
            raise Refusal(401, "bad_signature", "batch header not signed by the device's key")
        if not batch.intact():
            raise Refusal(422, "tampered_body", "body does not match its signed hash")
        if clock_window_s is not None and abs(time.time() - batch.clock) > clock_window_s:
            raise Refusal(412, "stale_timestamp", "device clock outside the accepted window")
        try:  # the counter is used up before any costly work: a replay is refused at once
            fresh = await in_store(use_counter, device_id, batch.counter)
        except UnknownDevice:
            raise Refusal(404, "unknown_device", "device not enrolled") from None
        if not fresh:
            raise Refusal(403, "replayed_counter", "request counter already used")
        try:
            records = await asyncio.get_running_loop().run_in_executor(inflater, batch.records)
        except upload_wire.FormatError as exc:
            raise await refuse_signed(Refusal(400, "malformed", str(exc)), signer, device_id,
                                      batch.counter) from None
        if records and batch.last - batch.first + 1 - len(records) > MAX_ABSENT:
            raise await refuse_signed(Refusal(413, "too_large", "range declares too many absent seqs"),
                                      signer, device_id, batch.counter)
        try:
            res = await in_store(commit, device_id, records, batch.absent(records))
        except UnknownDevice:
            raise Refusal(404, "unknown_device", "device not enrolled") from None
        return batch, signer, res

    async def post_records(request: Request) -> Response:
        t0 = time.perf_counter()
        device_id = request.path_params["device_id"]
        try:
            batch, signer, res = await check(request, device_id)
        except ClientGone:
            metrics.request("records", 499)
            log.info("client %s went away mid-upload (%s)", _peer(request), device_id)
            return Response(status_code=400)  # nobody reads it
        except Refusal as r:
            metrics.reject(r.code)
            metrics.request("records", r.status)
            headers = {"x-depot-error": r.code}
            if r.retry_after is not None:
                headers["retry-after"] = "%d" % max(1, round(r.retry_after))
            if r.close:
                headers["connection"] = "close"
            if r.signed is not None:
                return Response(r.signed, status_code=r.status, media_type="application/octet-stream",
                                headers=headers)
            return JSONResponse({"error": r.code, "detail": r.detail}, status_code=r.status, headers=headers)
        metrics.record("stored", res.stored)
        metrics.record("duplicate", res.duplicates)
        metrics.record("conflict", len(res.conflicts))
        metrics.record("invalid", res.invalid)
        status = upload_wire.ACK_CONFLICT if res.conflicts else upload_wire.ACK_OK
        ack = encode_ack(signer, device_id, batch.counter, res.ack_seq, res.stored, res.duplicates,
                         len(res.conflicts), status)
        http = 200
        headers = {}
        if res.conflicts:  # refused and flagged in the store; the device quarantines the batch
            http = 409
            metrics.reject("record_conflict")
            headers["x-depot-error"] = "record_conflict"
        metrics.request("records", http)
        metrics.observe(time.perf_counter() - t0)
        return Response(ack, status_code=http, media_type="application/octet-stream", headers=headers)

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
        Route("/v1/devices/{device_id}/records", post_records, methods=["POST"]),
        Route("/v1/devices", devices, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.metrics = metrics
    app.state.store = db
    app.state.limits = limits
    return Guard(app, limits, metrics, log_access=access_log)


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "-"


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
