"""`depot serve`, the ingest server, on a real uvicorn on a loopback port: every kind of bad upload
is refused with its own status and counted; good ones are stored once and acknowledged, signed."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware import record, upload_wire
from firmware.sign import Signer
from host_tools.server import BackgroundServer
from host_tools.store import Store, open_store
from host_tools.upload_server_wire import encode_batch
from tests.ingest_client import post

DEV = "DEV-7"
ROOT = Path(__file__).resolve().parent.parent


def recs(first: int, n: int, dev: str = DEV, item: str = "RR%08d9GB") -> list[bytes]:
    return [record.Record(seq=s, device_id=dev, route_id="R1", stop_id="S%d" % s, item_id=item % s,
                          verdict=record.V_INSIDE).encode() for s in range(first, first + n)]


def get(url: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


@pytest.fixture()
def served(store_url):
    """The ingest server on each backend: a SQLite file and a PostgreSQL database."""
    store = open_store(store_url)
    key = store.enrol(DEV)
    store.enrol("DEV-8")
    with BackgroundServer(store, max_body=8192) as srv:
        yield srv, store, Signer(key)
    store.close()


def test_good_batch_is_stored_once_and_acknowledged_after_commit(served):
    srv, store, signer = served
    status, body, _ = post(srv.url, DEV, encode_batch(DEV, signer, 1, 0, recs(1, 5)))
    assert status == 200
    ack = upload_wire.parse_ack(body, signer, DEV, 1)
    assert ack is not None and (ack.ack_seq, ack.stored, ack.duplicates, ack.status) == (5, 5, 0, 0)
    assert [r.seq for r in store.records(DEV)] == [1, 2, 3, 4, 5]
    # the device retries the same records with a fresh counter (its answer was lost): no new rows
    status, body, _ = post(srv.url, DEV, encode_batch(DEV, signer, 2, 0, recs(1, 5)))
    ack = upload_wire.parse_ack(body, signer, DEV, 2)
    assert status == 200 and ack is not None and (ack.ack_seq, ack.stored, ack.duplicates) == (5, 0, 5)
    assert len(store.records(DEV)) == 5


def test_ack_is_the_highest_contiguous_sequence(served):
    srv, _, signer = served
    _, body, _ = post(srv.url, DEV, encode_batch(DEV, signer, 1, 0, recs(1, 3)))
    _, body, _ = post(srv.url, DEV, encode_batch(DEV, signer, 2, 0, recs(6, 2)))
    ack = upload_wire.parse_ack(body, signer, DEV, 2)
    assert ack is not None and ack.ack_seq == 3  # 4 and 5 have not arrived: 6 and 7 stay on the device
    _, body, _ = post(srv.url, DEV, encode_batch(DEV, signer, 3, 0, recs(4, 2)))
    ack = upload_wire.parse_ack(body, signer, DEV, 3)
    assert ack is not None and ack.ack_seq == 7


def test_every_bad_upload_is_refused_with_its_own_status_and_counted(served):
    srv, store, signer = served
    good = encode_batch(DEV, signer, 10, 0, recs(1, 3))
    forged = encode_batch(DEV, Signer(bytes(32)), 11, 0, recs(1, 3))
    tampered = bytearray(encode_batch(DEV, signer, 12, 0, recs(1, 3)))
    tampered[-5] ^= 0x20  # one letter of the last item id
    other_key = encode_batch("DEV-8", signer, 13, 0, recs(1, 3, dev="DEV-8"))
    unknown = encode_batch("DEV-404", signer, 14, 0, recs(1, 3, dev="DEV-404"))
    huge = encode_batch(DEV, signer, 15, 0, recs(1, 200))
    assert post(srv.url, DEV, good)[0] == 200
    cases = [
        (DEV, good, 403, "replayed_counter"),  # the same request again, byte for byte
        (DEV, forged, 401, "bad_signature"),
        (DEV, bytes(tampered), 422, "tampered_body"),
        ("DEV-8", other_key, 401, "bad_signature"),  # signed with DEV-7's key
        ("DEV-404", unknown, 404, "unknown_device"),
        (DEV, b"PSUB\x01garbage", 400, "malformed"),
        ("DEV-8", good, 400, "malformed"),  # path names another device than the batch
        (DEV, huge, 413, "too_large"),
    ]
    for dev, body, want, code in cases:
        status, data, header = post(srv.url, dev, body)
        assert (status, header, json.loads(data)["error"]) == (want, code, code), code
    assert [r.seq for r in store.records(DEV)] == [1, 2, 3] and store.records("DEV-8") == []
    status, text = get(srv.url, "/metrics")
    counts = dict(re.findall(r'depot_rejections_total\{reason="(\w+)"\} (\d+)', text.decode()))
    assert counts == {"replayed_counter": "1", "bad_signature": "2", "tampered_body": "1",
                      "unknown_device": "1", "malformed": "2", "too_large": "1"}
    assert 'depot_requests_total{path="records",status="200"} 1' in text.decode()
    assert "depot_ingest_latency_seconds_count 1" in text.decode()
    m = json.loads(get(srv.url, "/metrics?format=json")[1])
    assert m["rejections"]["bad_signature"] == 2 and m["records"]["stored"] == 3


def test_same_sequence_with_other_content_is_refused_and_flagged(served):
    srv, store, signer = served
    assert post(srv.url, DEV, encode_batch(DEV, signer, 1, 0, recs(1, 3)))[0] == 200
    clash = recs(3, 2, item="CC%08d9GB")  # seq 3 differs from what the server holds, seq 4 is new
    status, body, header = post(srv.url, DEV, encode_batch(DEV, signer, 2, 0, clash))
    ack = upload_wire.parse_ack(body, signer, DEV, 2)
    assert (status, header) == (409, "record_conflict")
    assert ack is not None
    assert (ack.status, ack.conflicts, ack.stored, ack.ack_seq) == (upload_wire.ACK_CONFLICT, 1, 1, 4)
    assert [c.seq for c in store.conflicts(DEV)] == [3]
    assert store.records(DEV)[2].item_id == "RR000000039GB"


def test_stale_device_clock_is_refused_when_a_window_is_set(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    signer = Signer(store.enrol(DEV))
    with BackgroundServer(store, clock_window_s=300) as srv:
        now = int(time.time())
        assert post(srv.url, DEV, encode_batch(DEV, signer, 1, now - 3600, recs(1, 1)))[:3:2] == (
            412, "stale_timestamp")
        assert post(srv.url, DEV, encode_batch(DEV, signer, 2, now, recs(1, 1)))[0] == 200


def test_depot_serve_command_answers_health(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(os.environ, DEPOT_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "--store", str(tmp_path / "d.sqlite3"),
                             "serve", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}", "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_seqs_the_device_never_held_are_declared_and_passed_by_the_ack(served):
    srv, store, signer = served
    # the journal skipped 3-4 (a lease lost at a power cut) and 6-9 before 10
    batch = encode_batch(DEV, signer, 1, 0, recs(1, 2) + recs(5, 1) + recs(10, 1), first=1)
    status, body, _ = post(srv.url, DEV, batch)
    ack = upload_wire.parse_ack(body, signer, DEV, 1)
    assert status == 200 and ack is not None and ack.ack_seq == 10
    assert store.absent(DEV) == [(3, 4), (6, 9)]
    # a range starting above the server's ack does not pass the seqs below it
    batch = encode_batch(DEV, signer, 2, 0, recs(13, 1), first=12)
    ack = upload_wire.parse_ack(post(srv.url, DEV, batch)[1], signer, DEV, 2)
    assert ack is not None and ack.ack_seq == 10


def test_mutated_uploads_are_refused_cleanly_never_stored(served):
    """Every byte flip, truncation and extension of a good batch gets a 4xx (never a 500 or a
    stored record), and the server still takes the good batch afterwards."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    srv, store, signer = served
    good = encode_batch(DEV, signer, 1_000_000, 0, recs(1, 3), compress=True)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)), min_size=1, max_size=4),
           st.integers(0, len(good)), st.binary(max_size=8))
    def mutate(flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
        bad = bytearray(good)
        for i, x in flips:
            bad[i] ^= x
        bad = bytes(bad[:cut]) + tail
        if bad == good:
            return
        status, _, code = post(srv.url, DEV, bad)
        assert 400 <= status < 500 and code, (status, code)

    mutate()
    assert store.records(DEV) == []
    status, body, _ = post(srv.url, DEV, good)
    ack = upload_wire.parse_ack(body, signer, DEV, 1_000_000)
    assert status == 200 and ack is not None and ack.ack_seq == 3


def test_devices_view_lists_enrolled_devices_without_keys(served):
    srv, _, signer = served
    post(srv.url, DEV, encode_batch(DEV, signer, 1, 0, recs(1, 2)))
    status, body = get(srv.url, "/v1/devices")
    devices = {d["device_id"]: d for d in json.loads(body)["devices"]}
    assert status == 200 and set(devices) == {DEV, "DEV-8"}
    assert devices[DEV]["ack_seq"] == 2 and devices[DEV]["last_source"] == "cellular"
    assert "key" not in devices[DEV] and signer_key_hex(signer) not in body.decode()


def signer_key_hex(signer: Signer) -> str:
    return bytes(b ^ 0x36 for b in signer._ipad[:32]).hex()  # the device key, to prove it is absent
