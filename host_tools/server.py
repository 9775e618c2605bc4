"""The depot's ingest server: handhelds POST signed record batches over cellular (docs/upload-api.md).

Starlette on uvicorn. Every batch is checked in a fixed order, each failure with its own HTTP
status and error code, so a refusal says exactly why and is counted in /metrics:

    400 malformed        413 too_large         401 bad_signature      404 unknown_device
    422 tampered_body    412 stale_timestamp   403 replayed_counter   409 record_conflict

An accepted batch is stored idempotently (the same store as the dock sync) and answered with an
acknowledgement signed under the device's key, written only after the store committed. SQLite
work runs on one dedicated thread: the store serialises writers anyway, and one writer thread
avoids lock contention and keeps the event loop free.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import socket
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import upload
import uvicorn
from sign import Signer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from host_tools.store import IngestResult, Store, UnknownDevice

SOURCE = "cellular"
COUNTER_NAME = "upload"  # the store's replay guard for the device's request counter
DEFAULT_MAX_BODY = 64 * 1024
DEFAULT_MAX_RECORDS = 256
SEEN_EVERY_S = 10.0  # how often a device's last-seen time is written to the store
MAX_ABSENT = 100_000  # seqs one batch may declare never held (leases skipped at power cuts)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Refusal(Exception):
    def __init__(self, status: int, code: str, detail: str = ""):
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail or code


class Metrics:
    """Request counts, refusals by reason, records by outcome and ingest latency."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.rejections: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.recent: deque[float] = deque(maxlen=2048)

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1
        self.recent.append(seconds)

    def quantile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        s = sorted(self.recent)
        return s[min(len(s) - 1, int(q * len(s)))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "uptime_s": time.time() - self.started,
            "requests": {f"{p} {s}": n for (p, s), n in sorted(self.requests.items())},
            "rejections": dict(self.rejections),
            "records": dict(self.records),
            "ingest_latency_s": {
                "count": self.latency_count, "sum": self.latency_sum,
                "p50": self.quantile(0.5), "p95": self.quantile(0.95), "p99": self.quantile(0.99),
                "buckets": {str(b): n for b, n in
                            zip((*LATENCY_BUCKETS, "+Inf"), self._cumulative(), strict=True)},
            },
        }

    def _cumulative(self) -> list[int]:
        out, run = [], 0
        for n in self.buckets:
            run += n
            out.append(run)
        return out

    def prometheus(self) -> str:
        lines = ["# TYPE depot_requests_total counter"]
        lines += [f'depot_requests_total{{path="{p}",status="{s}"}} {n}'
                  for (p, s), n in sorted(self.requests.items())]
        lines.append("# TYPE depot_rejections_total counter")
        lines += [f'depot_rejections_total{{reason="{r}"}} {n}' for r, n in sorted(self.rejections.items())]
        lines.append("# TYPE depot_records_total counter")
        lines += [f'depot_records_total{{outcome="{k}"}} {n}' for k, n in sorted(self.records.items())]
        lines.append("# TYPE depot_ingest_latency_seconds histogram")
        for b, n in zip((*LATENCY_BUCKETS, "+Inf"), self._cumulative(), strict=True):
            lines.append(f'depot_ingest_latency_seconds_bucket{{le="{b}"}} {n}')
        lines.append(f"depot_ingest_latency_seconds_sum {self.latency_sum:.6f}")
        lines.append(f"depot_ingest_latency_seconds_count {self.latency_count}")
        for q in (0.5, 0.95, 0.99):
            lines.append(f'depot_ingest_latency_seconds{{quantile="{q}"}} {self.quantile(q):.6f}')
        return "\n".join(lines) + "\n"


def create_app(store: Store | str | None = None, *, max_body: int = DEFAULT_MAX_BODY,
               max_records: int = DEFAULT_MAX_RECORDS, clock_window_s: float | None = None) -> Starlette:
    """The ASGI app. `clock_window_s`: refuse batches whose device clock is further than this from
    ours (None: the request counter alone guards against replay; devices' clocks may be unset)."""
    db = store if isinstance(store, Store) else Store(store)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="depot-store")
    metrics = Metrics()
    keys: dict[str, Signer] = {}
    last_seen: dict[str, float] = {}

    async def in_store(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def signer_for(device_id: str) -> Signer | None:
        s = keys.get(device_id)
        if s is None:
            key = await in_store(db.key, device_id)
            if key is None:
                return None
            s = keys[device_id] = Signer(key)
        return s

    def commit(device_id: str, counter: int, records: list[bytes], absent: list[int]) -> IngestResult | None:
        if not db.advance_counter(device_id, COUNTER_NAME, counter):
            return None
        if absent:  # before the records: ack_seq may then pass them in the same ingest
            db.declare_absent(device_id, absent, SOURCE)
        res = db.ingest(device_id, records, SOURCE)
        now = time.monotonic()
        if now - last_seen.get(device_id, -SEEN_EVERY_S) >= SEEN_EVERY_S:  # a durable write: not per batch
            last_seen[device_id] = now
            db.seen(device_id, SOURCE)
        return res

    async def post_records(request: Request) -> Response:
        t0 = time.perf_counter()
        device_id = request.path_params["device_id"]
        try:
            length = int(request.headers.get("content-length") or 0)
            if length > max_body:
                raise Refusal(413, "too_large", f"body over {max_body} bytes")
            data = await request.body()
            if len(data) > max_body:
                raise Refusal(413, "too_large", f"body over {max_body} bytes")
            try:
                batch = upload.Batch(data)
            except (upload.FormatError, ValueError, UnicodeError) as exc:
                raise Refusal(400, "malformed", str(exc)) from None
            if batch.device_id != device_id:
                raise Refusal(400, "malformed", "device id in path and batch differ")
            if batch.count > max_records:
                raise Refusal(413, "too_large", f"more than {max_records} records")
            signer = await signer_for(device_id)
            if signer is None:
                raise Refusal(404, "unknown_device", "device not enrolled")
            if not batch.authentic(signer):
                raise Refusal(401, "bad_signature", "batch header not signed by the device's key")
            if not batch.intact():
                raise Refusal(422, "tampered_body", "body does not match its signed hash")
            if clock_window_s is not None and abs(time.time() - batch.clock) > clock_window_s:
                raise Refusal(412, "stale_timestamp", "device clock outside the accepted window")
            try:
                records = batch.records()
            except upload.FormatError as exc:
                raise Refusal(400, "malformed", str(exc)) from None
            if records and batch.last - batch.first + 1 - len(records) > MAX_ABSENT:
                raise Refusal(413, "too_large", "range declares too many absent seqs")
            absent = batch.absent(records)
            try:
                res = await in_store(commit, device_id, batch.counter, records, absent)
            except UnknownDevice:
                raise Refusal(404, "unknown_device", "device not enrolled") from None
            if res is None:
                raise Refusal(403, "replayed_counter", "request counter already used")
        except Refusal as r:
            metrics.rejections[r.code] += 1
            metrics.requests[("records", r.status)] += 1
            return JSONResponse({"error": r.code, "detail": r.detail}, status_code=r.status,
                                headers={"x-depot-error": r.code})
        metrics.records["stored"] += res.stored
        metrics.records["duplicate"] += res.duplicates
        metrics.records["conflict"] += len(res.conflicts)
        metrics.records["invalid"] += res.invalid
        status = upload.ACK_CONFLICT if res.conflicts else upload.ACK_OK
        ack = upload.encode_ack(signer, device_id, batch.counter, res.ack_seq, res.stored, res.duplicates,
                                len(res.conflicts), status)
        http = 200
        headers = {}
        if res.conflicts:  # refused and flagged in the store; the device quarantines the batch
            http = 409
            metrics.rejections["record_conflict"] += 1
            headers["x-depot-error"] = "record_conflict"
        metrics.requests[("records", http)] += 1
        metrics.observe(time.perf_counter() - t0)
        return Response(ack, status_code=http, media_type="application/octet-stream", headers=headers)

    def device_list() -> list[dict[str, Any]]:
        out = []
        for d in db.devices():
            row = dataclasses.asdict(d)
            out.append({k: v.hex() if isinstance(v, bytes) else v for k, v in row.items()})
        return out

    async def devices(request: Request) -> Response:
        """Read-only view for the depot's browser: every device, its watermark and last contact."""
        metrics.requests[("devices", 200)] += 1
        return JSONResponse({"devices": await in_store(device_list)})

    async def healthz(request: Request) -> Response:
        metrics.requests[("healthz", 200)] += 1
        return JSONResponse({"status": "ok", "uptime_s": round(time.time() - metrics.started, 3)})

    async def get_metrics(request: Request) -> Response:
        metrics.requests[("metrics", 200)] += 1
        if request.query_params.get("format") == "json":
            return JSONResponse(metrics.as_dict())
        return PlainTextResponse(metrics.prometheus())

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        pool.shutdown(wait=True)

    app = Starlette(routes=[
        Route("/v1/devices/{device_id}/records", post_records, methods=["POST"]),
        Route("/v1/devices", devices, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", get_metrics, methods=["GET"]),
    ], lifespan=lifespan)
    app.state.metrics = metrics
    app.state.store = db
    return app


def serve(host: str = "127.0.0.1", port: int = 8080, store: str | None = None, **kw: Any) -> None:
    uvicorn.run(create_app(store, **kw), host=host, port=port, log_level="warning", access_log=False)


class BackgroundServer:
    """`depot serve` in a thread on a free loopback port, for tests, benches and the demo."""

    def __init__(self, store: Store | str | None = None, host: str = "127.0.0.1", **kw: Any):
        self.app = create_app(store, **kw)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                                    lifespan="on"))
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
        return self.app.state.metrics
