"""`depot serve` under greedy and slow clients (issue 13 items 2-4, 9, 12; issue 17 item 7), on a
real uvicorn on loopback: bodies are capped while they stream in, slow and surplus connections
are closed or turned away with 503 and Retry-After, a deflate bomb costs nothing and cannot be
replayed, read endpoints need an operator, a client that goes away leaves one log line."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import select
import socket
import time
import zlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from firmware import record, upload_wire
from firmware.sign import Signer
from host_tools.server import BackgroundServer, create_app
from host_tools.server_guard import Limits
from host_tools.store import Store
from host_tools.upload_server_wire import Batch, _inflate, encode_batch
from tests.ingest_client import post

DEV = "LIM-1"
MiB = 1 << 20


def recs(first: int, n: int) -> list[bytes]:
    return [record.Record(seq=s, device_id=DEV, route_id="R1", stop_id="S%d" % s, item_id="RR%08d9GB" % s,
                          verdict=record.V_INSIDE).encode() for s in range(first, first + n)]


def connect(srv: BackgroundServer) -> socket.socket:
    return socket.create_connection((srv.host, srv.port), timeout=10)


def read_answer(s: socket.socket, deadline_s: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (or the deadline)."""
    out = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        r, _, _ = select.select([s], [], [], 0.1)
        if r:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def header(answer: bytes, name: str) -> str:
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        k, _, v = line.decode().partition(":")
        if k.strip().lower() == name:
            return v.strip()
    return ""


def metrics(srv: BackgroundServer) -> dict:
    return srv.metrics.as_dict()


def wait_until(cond, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.02)


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "depot.sqlite3")
    s.enrol(DEV)
    return s


# ====================================================================== 13.2: the body cap streams

def test_a_chunked_body_over_the_cap_is_refused_while_it_streams_and_the_rest_is_never_read(store):
    with BackgroundServer(store, max_body=64 * 1024) as srv:
        s = connect(srv)
        s.sendall(f"POST /v1/devices/{DEV}/records HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
        chunk = b"%x\r\n" % MiB + b"\0" * MiB + b"\r\n"
        sent, answer, pending = 0, b"", b""
        s.setblocking(False)
        while sent < 300 * MiB and not answer:
            pending = pending or chunk  # a partial send's rest goes first: the chunk framing stays whole
            try:
                n = s.send(pending)
                pending = pending[n:]
                sent += n
            except BlockingIOError:
                select.select([s], [s], [], 1.0)
            except (BrokenPipeError, ConnectionResetError):
                # The server closed with our unread bytes in its buffer, so its kernel reset the
                # connection; the answer it sent before that is still queued here to be read.
                s.setblocking(True)
                answer = read_answer(s)
                break
            if select.select([s], [], [], 0)[0]:
                s.setblocking(True)
                answer = read_answer(s)
        s.close()
        assert status_of(answer) == 413 and header(answer, "x-depot-error") == "too_large"
        assert header(answer, "connection") == "close"
        # what the kernel's buffers held, not the 300 MiB the client had to send
        assert sent < 32 * MiB, sent
        assert store.count(DEV) == 0


def test_a_declared_length_over_the_cap_is_refused_before_any_body(store):
    with BackgroundServer(store, max_body=64 * 1024) as srv:
        s = connect(srv)
        s.sendall(f"POST /v1/devices/{DEV}/records HTTP/1.1\r\nHost: x\r\nContent-Length: {300 * MiB}\r\n\r\n"
                  .encode())
        answer = read_answer(s)
        assert status_of(answer) == 413 and header(answer, "connection") == "close"


# ========================================================= 13.3: slow clients, limits, 503 + Retry-After

def test_connections_that_never_finish_their_headers_are_closed_and_surplus_ones_get_503(store):
    limits = Limits(header_timeout_s=3.0, max_connections=20, retry_after_s=7)
    with BackgroundServer(store, limits=limits) as srv:
        slow = []
        for _ in range(30):
            s = connect(srv)
            s.sendall(b"POST /v1/devices/X/records HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            slow.append(s)
        answers = [read_answer(s, deadline_s=15) for s in slow]
        turned_away = [a for a in answers if a]
        closed_silently = [a for a in answers if not a]
        assert len(turned_away) == 10 and len(closed_silently) == 20
        assert {status_of(a) for a in turned_away} == {503}
        assert {header(a, "retry-after") for a in turned_away} == {"7"}
        for s in slow:
            s.close()
        m = metrics(srv)
        assert m["overload"] == {"connections": 10} and m["timeouts"] == {"headers": 20}
        wait_until(lambda: srv.metrics.connections._value.get() == 0)
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("GET", "/healthz")
        assert c.getresponse().status == 200


def test_requests_over_the_inflight_limit_get_503_and_a_stalled_body_gets_408(store):
    limits = Limits(body_timeout_s=3.0, max_inflight=2, retry_after_s=3)
    with BackgroundServer(store, limits=limits) as srv:
        stalled = []
        for _ in range(2):  # two uploads that announce 1,000 bytes and send 10
            s = connect(srv)
            s.sendall(f"POST /v1/devices/{DEV}/records HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                      .encode() + b"\0" * 10)
            stalled.append(s)
        wait_until(lambda: srv.app.inflight == 2)
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("GET", "/healthz")
        r = c.getresponse()
        answer = (r.status, r.getheader("retry-after"), json.loads(r.read())["error"])
        assert answer == (503, "3", "overloaded")
        answers = [read_answer(s) for s in stalled]
        assert [status_of(a) for a in answers] == [408, 408]
        assert {header(a, "x-depot-error") for a in answers} == {"body_timeout"}
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("GET", "/healthz")
        assert c.getresponse().status == 200
        assert metrics(srv)["overload"] == {"requests": 1}


# ================================================================================= 13.4: deflate bomb

def bomb(signer: Signer, counter: int, inflated: int = 60 * MiB) -> bytes:
    packed = zlib.compressobj(9, zlib.DEFLATED, -upload_wire.WBITS)
    body = packed.compress(b"\0" * inflated) + packed.flush()
    w = upload_wire
    head = w.struct.pack(w.HEAD, w.MAGIC, 1, w.F_DEFLATE, len(DEV), 0, counter, 0, 1, 1,
                         1, len(body)) + DEV.encode() + w.hashlib.sha256(body).digest()
    return head + signer.mac(b"upload-batch/1", head) + body


def test_a_deflate_bomb_is_refused_signed_after_its_counter_is_used_and_cannot_be_replayed(store):
    signer = Signer(store.key(DEV) or b"")
    data = bomb(signer, 5)
    assert len(data) < 64 * 1024  # 60 MiB of zeros deflate to about 58 KiB
    with pytest.raises(upload_wire.FormatError, match="inflates past its record count"):
        Batch(data).records()  # the parser stops at count x 256 bytes
    with BackgroundServer(store) as srv:
        status, body, code = post(srv.url, DEV, data)
        refusal = upload_wire.parse_ack(body, signer, DEV, 5)
        assert (status, code) == (400, "malformed")
        assert refusal is not None and (refusal.status, refusal.ack_seq) == (upload_wire.ACK_REFUSED, 0)
        assert post(srv.url, DEV, data)[::2] == (403, "replayed_counter")  # the replay costs a lookup
        good = encode_batch(DEV, signer, 6, 0, recs(1, 3), compress=True)
        assert post(srv.url, DEV, good)[0] == 200
    assert store.count(DEV) == 3


def test_a_deflate_stream_cut_short_or_followed_by_junk_is_malformed():
    packed = zlib.compressobj(9, zlib.DEFLATED, -upload_wire.WBITS)
    stream = packed.compress(b"\x05hello" * 40) + packed.flush()
    with pytest.raises(upload_wire.FormatError, match="does not inflate"):
        _inflate(stream[:-4], 65536)
    assert _inflate(stream, 240) == b"\x05hello" * 40
    with pytest.raises(upload_wire.FormatError, match="inflates past"):
        _inflate(stream, 239)


# ====================================================== 13.9: read endpoints need an operator or loopback

def asgi_get(app, path: str, client: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One GET through the ASGI app as if from `client` (another host is not reachable in tests)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "client": (client, 50000), "server": ("127.0.0.1", 8080)}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_read_endpoints_answer_loopback_only_without_a_token_and_the_token_with_one(store):
    open_app = create_app(store)
    for path in ("/v1/devices", "/metrics"):
        assert asgi_get(open_app, path, "127.0.0.1")[0] == 200
        status, body = asgi_get(open_app, path, "10.1.2.3")
        assert (status, json.loads(body)["error"]) == (403, "loopback_only")
    assert asgi_get(open_app, "/healthz", "10.1.2.3")[0] == 200
    guarded = create_app(store, operator_token="s3cret-token")
    for path in ("/v1/devices", "/metrics"):
        for client in ("127.0.0.1", "10.1.2.3"):
            assert asgi_get(guarded, path, client)[0] == 401
            assert asgi_get(guarded, path, client, {"authorization": "Bearer wrong"})[0] == 401
            assert asgi_get(guarded, path, client, {"authorization": "Bearer s3cret-token"})[0] == 200


# ============================================================== 17.7: prometheus_client, logging

def test_metrics_are_valid_prometheus_text_with_a_plain_histogram(store):
    signer = Signer(store.key(DEV) or b"")
    with BackgroundServer(store) as srv:
        assert post(srv.url, DEV, encode_batch(DEV, signer, 1, 0, recs(1, 2)))[0] == 200
        post(srv.url, DEV, encode_batch(DEV, signer, 1, 0, recs(1, 2)))
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        text = r.read().decode()
    assert (r.getheader("content-type") or "").startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    hist = families["depot_ingest_latency_seconds"]
    assert hist.type == "histogram"
    assert {s.name for s in hist.samples} == {"depot_ingest_latency_seconds_bucket",
                                              "depot_ingest_latency_seconds_count",
                                              "depot_ingest_latency_seconds_sum"}
    assert not any("quantile" in s.labels for s in hist.samples)
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    assert values[("depot_rejections_total", (("reason", "replayed_counter"),))] == 1
    assert values[("depot_records_total", (("outcome", "stored"),))] == 2
    assert values[("depot_requests_total", (("path", "records"), ("status", "200")))] == 1


def test_a_client_that_goes_away_mid_upload_leaves_one_line_and_no_traceback(store, caplog):
    caplog.set_level(logging.INFO)
    with BackgroundServer(store) as srv:
        for _ in range(3):
            s = connect(srv)
            s.sendall(f"POST /v1/devices/{DEV}/records HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
                      .encode() + b"\0" * 10)
            s.close()
        wait_until(lambda: srv.metrics.requests.get("records 499", 0) == 3)
    gone = [r for r in caplog.records if "went away mid-upload" in r.getMessage()]
    assert len(gone) == 3 and all(r.exc_info is None for r in gone)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text


def test_the_access_log_is_one_line_per_answered_request_when_asked_for(store, caplog):
    caplog.set_level(logging.INFO, logger="depot.access")
    with BackgroundServer(store, access_log=True) as srv:
        for path in ("/healthz", "/nowhere"):
            c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
        wait_until(lambda: len([r for r in caplog.records if r.name == "depot.access"]) == 2)
    lines = [r.getMessage().split() for r in caplog.records if r.name == "depot.access"]
    assert [(w[0], w[1], w[2], w[3]) for w in lines] == [("127.0.0.1", "GET", "/healthz", "200"),
                                                         ("127.0.0.1", "GET", "/nowhere", "404")]
    caplog.clear()
    with BackgroundServer(store) as srv:  # off by default
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        c.request("GET", "/healthz")
        c.getresponse().read()
    assert not [r for r in caplog.records if r.name == "depot.access"]
