"""The ingest server's upload endpoint (docs/upload-api.md): POST /v1/devices/{id}/records.

Every batch is checked in a fixed order, each failure with its own HTTP status and error code
(a `Refusal`), counted in /metrics. The cheap checks come first (size while the body streams in,
framing, enrolment, MAC, body hash, clock), then the request counter is used up, and only then is
a deflated body inflated (bounded, on a worker thread): a refused batch can never be replayed to
make the server work again. A refusal of a batch whose header the device signed is itself signed
(an acknowledgement with status ACK_REFUSED): only such an answer makes the device set the batch
aside. An accepted batch is stored idempotently and answered with an acknowledgement signed under
the device's key, written only after the store committed. The app around it is server.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from firmware import upload_wire
from firmware.sign import Signer
from host_tools.server_guard import Limits
from host_tools.server_metrics import Metrics
from host_tools.store import IngestResult, Storage, UnknownDevice
from host_tools.upload_server_wire import Batch, encode_ack

log = logging.getLogger("depot.serve")

SOURCE = "cellular"
COUNTER_NAME = "upload"  # the store's replay guard for the device's request counter
SEEN_EVERY_S = 10.0  # how often a device's last-seen time is written to the store
MAX_ABSENT = 100_000  # seqs one batch may declare never held (leases skipped at power cuts)

InStore = Callable[..., Awaitable[Any]]  # runs a store call on the store's threads


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


class Uploads:
    """The upload endpoint of one app: its store, limits and metrics, and the signers it built."""

    def __init__(self, db: Storage, limits: Limits, metrics: Metrics, in_store: InStore,
                 inflater: ThreadPoolExecutor, clock_window_s: float | None = None):
        self.db, self.limits, self.metrics, self.in_store = db, limits, metrics, in_store
        self.inflater = inflater
        self.clock_window_s = clock_window_s
        self.keys: dict[bytes, Signer] = {}  # by key, never by device: revoke and rotate-key hold at once
        self.last_seen: dict[str, float] = {}

    async def signer_for(self, device_id: str) -> Signer | None:
        key = await self.in_store(self.db.key, device_id)  # every request: the store is the one authority
        if key is None:
            return None
        s = self.keys.get(key)
        if s is None:
            if len(self.keys) > 4096:
                self.keys.clear()
            s = self.keys[key] = Signer(key)
        return s

    def use_counter(self, device_id: str, counter: int) -> bool:
        return self.db.advance_counter(device_id, COUNTER_NAME, counter)

    def commit(self, device_id: str, records: list[bytes], absent: list[int]) -> IngestResult:
        if absent:  # before the records: ack_seq may then pass them in the same ingest
            self.db.declare_absent(device_id, absent, SOURCE)
        res = self.db.ingest(device_id, records, SOURCE)
        now = time.monotonic()
        if now - self.last_seen.get(device_id, -SEEN_EVERY_S) >= SEEN_EVERY_S:  # durable: not per batch
            self.last_seen[device_id] = now
            self.db.seen(device_id, SOURCE)
        return res

    async def refuse_signed(self, r: Refusal, signer: Signer, device_id: str, counter: int) -> Refusal:
        ack_seq = await self.in_store(self.db.ack_seq, device_id)
        r.signed = encode_ack(signer, device_id, counter, ack_seq, status=upload_wire.ACK_REFUSED)
        return r

    async def check(self, request: Request, device_id: str) -> tuple[Batch, Signer, IngestResult]:
        limits = self.limits
        data = await read_body(request, limits.max_body, limits.body_timeout_s)
        try:
            batch = Batch(data)
        except (upload_wire.FormatError, ValueError, UnicodeError) as exc:
            raise Refusal(400, "malformed", str(exc)) from None
        if batch.device_id != device_id:
            raise Refusal(400, "malformed", "device id in path and batch differ")
        if batch.count > limits.max_records:
            raise Refusal(413, "too_large", f"more than {limits.max_records} records")
        signer = await self.signer_for(device_id)
        if signer is None:
            raise Refusal(404, "unknown_device", "device not enrolled")
        if not batch.authentic(signer):
            raise Refusal(401, "bad_signature", "batch header not signed by the device's key")
        if not batch.intact():
            raise Refusal(422, "tampered_body", "body does not match its signed hash")
        window = self.clock_window_s
        if window is not None and abs(time.time() - batch.clock) > window:
            raise Refusal(412, "stale_timestamp", "device clock outside the accepted window")
        try:  # the counter is used up before any costly work: a replay is refused at once
            fresh = await self.in_store(self.use_counter, device_id, batch.counter)
        except UnknownDevice:
            raise Refusal(404, "unknown_device", "device not enrolled") from None
        if not fresh:
            raise Refusal(403, "replayed_counter", "request counter already used")
        try:
            records = await asyncio.get_running_loop().run_in_executor(self.inflater, batch.records)
        except upload_wire.FormatError as exc:
            raise await self.refuse_signed(Refusal(400, "malformed", str(exc)), signer, device_id,
                                      batch.counter) from None
        if records and batch.last - batch.first + 1 - len(records) > MAX_ABSENT:
            raise await self.refuse_signed(Refusal(413, "too_large", "range declares too many absent seqs"),
                                      signer, device_id, batch.counter)
        try:
            res = await self.in_store(self.commit, device_id, records, batch.absent(records))
        except UnknownDevice:
            raise Refusal(404, "unknown_device", "device not enrolled") from None
        return batch, signer, res

    async def post(self, request: Request) -> Response:
        """POST /v1/devices/{device_id}/records: an acknowledgement, or a refusal saying why."""
        metrics = self.metrics
        t0 = time.perf_counter()
        device_id = request.path_params["device_id"]
        try:
            batch, signer, res = await self.check(request, device_id)
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


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "-"
