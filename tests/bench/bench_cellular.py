"""Cellular upload figures (issue 6, 8):

- cellular_bytes_per_record: bytes on the air per delivery record when the firmware's uploader on
  the real micropython sends a day's records at the default batch size through the modem emulator
  to `depot serve` (HTTP request and response with headers, plus the emulator's TCP/IP model);
  cellular_vs_json_ratio: the same records sent as one signed JSON POST each, over the bytes of
  the binary batches (how many times more the JSON way costs).
- ingest_records_per_s: records/s committed by `depot serve` (its own process, SQLite store with
  synchronous=FULL) under 50 concurrent simulated devices posting signed 32-record batches over
  keep-alive connections on loopback, for a bounded time; its reference is the store's own ingest
  rate with no HTTP in the way (ingest_vs_store_ratio).
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import socket
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

from firmware import record
from firmware import uploader as _uploader  # noqa: F401  (the firmware module whose default batch size we use)
from firmware.sign import Signer
from host_tools.record_dict import as_dict
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.upload_server_wire import Batch, encode_batch
from sim import mpy as _mpy
from sim.modem_emulator import http_request_bytes, tcp_overhead

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 50
LOAD_S = 8.0
RECORDS = 96  # three batches of the default size, if the batch buffer holds them

DAY = r"""
import sys, asyncio, binascii
from firmware import journal, modem, uploader, record
DEV, KEY, TTY, URL, ROOT, N = sys.argv[1:7]
j = journal.Journal(ROOT + "/journal")
m = modem.Modem(asyncio.StreamReader(open(TTY, "r+b")), "sim7600", apn="sim")
up = uploader.Uploader(j, m, DEV, binascii.unhexlify(KEY), URL, state_dir=ROOT + "/upload")
for i in range(int(N)):
    j.append(record.Record(outcome=record.DELIVERED, device_id=DEV, route_id="R-2026-11-27-017",
                           package_hash=b"\x12\x34\x56\x78\x9a\xbc\xde\xf0", stop_id="S%04d" % (i + 1),
                           item_id="RR%08d5GB" % (47312482 + i), verdict=record.V_INSIDE, match=record.M_ITEM,
                           device_time=1795770000 + 90 * i, gnss_time=1795770000 + 90 * i,
                           lat_e6=52370216 + 37 * i, lon_e6=4895168 - 21 * i, accuracy_dm=38, fix_age_s=1,
                           distance_dm=0))
async def go():
    while j.pending():
        await up.step()
asyncio.run(go())
print(up.sent, j.watermark)
"""


def sample_record(dev: str, seq: int) -> record.Record:
    return record.Record(seq=seq, outcome=record.DELIVERED, device_id=dev, route_id="R-2026-11-27-017",
                         package_hash=b"\x12\x34\x56\x78\x9a\xbc\xde\xf0", stop_id="S%04d" % seq,
                         item_id="RR%08d5GB" % (47312481 + seq), verdict=record.V_INSIDE,
                         match=record.M_ITEM, device_time=1795770000 + 90 * seq,
                         gnss_time=1795770000 + 90 * seq,
                         lat_e6=52370216 + 37 * seq, lon_e6=4895168 - 21 * seq, accuracy_dm=38, fix_age_s=1)


def air_bytes_binary(tmp: Path) -> tuple[int, int, int, str]:
    """Run the uploader on micropython through the emulator; return (air bytes, records, batches,
    headers)."""
    from sim.modem_emulator import ModemEmulator

    store = Store(tmp / "air.sqlite3")
    dev = "HH-BENCH"
    key = store.enrol(dev)
    (tmp / "dev").mkdir()
    script = tmp / "air.py"
    script.write_text(DAY)
    master, slave = pty.openpty()
    tty.setraw(slave)
    with BackgroundServer(store) as srv:
        emu = ModemEmulator(master, master, "sim7600", srv.url, seed=1).start()
        try:
            out = _mpy.run(script=script, args=(dev, key.hex(), os.ttyname(slave), srv.url, str(tmp / "dev"),
                                          str(RECORDS)), timeout=120)
        finally:
            emu.stop()
            os.close(master)
            os.close(slave)
        # one real response, to price the JSON alternative's answers with the same headers
        import http.client

        c = http.client.HTTPConnection(srv.host, srv.port)
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        resp_head = f"HTTP/1.1 {r.status} {r.reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in r.getheaders())
        c.close()
    assert len(store.records(dev)) == RECORDS, "not every record arrived"
    batches = int(out.split()[0])  # the uploader's count of acknowledged batches
    return emu.air_bytes, RECORDS, batches, resp_head


def air_bytes_json(n: int, resp_head: str) -> int:
    """The same records as one JSON POST each, signed (hex HMAC header), with a signed JSON answer."""
    total = 0
    url = "http://127.0.0.1:8080/v1/devices/HH-BENCH/records"
    for seq in range(1, n + 1):
        doc = as_dict(sample_record("HH-BENCH", seq))
        doc["counter"] = seq
        body = json.dumps(doc, separators=(",", ":"))
        req = http_request_bytes(url, len(body), "application/json") + len("X-Signature: \r\n") + 64
        answer = json.dumps({"ack_seq": seq, "counter": seq, "mac": "0" * 64}, separators=(",", ":"))
        resp = len(resp_head) + len("\r\n") + len(answer)
        total += req + resp + tcp_overhead(req, resp)
    return total


async def load(port: int, batches: dict[str, list[bytes]], seconds: float) -> tuple[int, int, list[float]]:
    stop_at = time.monotonic() + seconds
    done = [0, 0]
    lat: list[float] = []

    async def device(dev: str, bodies: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for body in bodies:
            if time.monotonic() > stop_at:
                break
            head = (f"POST /v1/devices/{dev}/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n")
            t0 = time.perf_counter()
            writer.write(head.encode() + body)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if b" 200 " in status:
                done[0] += 1
                done[1] += Batch(body).count
        writer.close()

    await asyncio.gather(*(device(d, b) for d, b in batches.items()))
    return done[0], done[1], lat


def ingest_rate(tmp: Path, report) -> None:
    path = tmp / "load.sqlite3"
    store = Store(path)
    keys = {f"LOAD-{i:03d}": store.enrol(f"LOAD-{i:03d}") for i in range(DEVICES)}
    # the reference: the store alone, one thread, same batch size
    ref = Store(tmp / "ref.sqlite3")
    ref.enrol("REF")
    recs = [sample_record("REF", s).encode() for s in range(1, 32 * 40 + 1)]
    t0 = time.perf_counter()
    for i in range(0, len(recs), 32):
        ref.ingest("REF", recs[i:i + 32], "bench")
    store_rate = len(recs) / (time.perf_counter() - t0)
    store.close()
    ref.close()

    per_dev = 400  # more batches than any device gets through in the time bound
    batches = {}
    for dev, key in keys.items():
        s = Signer(key)
        batches[dev] = [encode_batch(dev, s, b + 1, 0, [sample_record(dev, b * 32 + k + 1).encode()
                                                        for k in range(32)])
                        for b in range(per_dev)]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "--store", str(path), "serve", "--port",
                             str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("depot serve did not start") from None
                time.sleep(0.1)
        t0 = time.perf_counter()
        ok, n, lat = asyncio.run(load(port, batches, LOAD_S))
        elapsed = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    stored = len(Store(path).records())
    assert stored == n, f"acknowledged {n} records but the store holds {stored}"
    lat.sort()
    rate = n / elapsed
    report("ingest_records_per_s", rate, "rec/s",
           f"{DEVICES} devices, {ok} batches of 32 in {elapsed:.1f} s, "
           f"p50 {lat[len(lat) // 2] * 1000:.0f} ms p95 {lat[int(len(lat) * 0.95)] * 1000:.0f} ms")
    report("ingest_store_only_records_per_s", store_rate, "rec/s", "Store.ingest alone, 32/batch, no HTTP")
    report("ingest_vs_store_ratio", rate / store_rate, "x", "server under load / store alone")


def run(report) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        air, n, batches, resp_head = air_bytes_binary(tmp)
        per = air / n
        js = air_bytes_json(n, resp_head) / n
        report("cellular_bytes_per_record", per, "B",
               f"{n} records in {batches} batches (at most {_uploader.BATCH}, as many as the batch buffer "
               "holds), HTTP + TCP/IP model, uploader on micropython")
        report("cellular_json_bytes_per_record", js, "B", "one signed JSON POST per record, same model")
        report("cellular_vs_json_ratio", js / per, "x", "JSON-per-record bytes / binary batch bytes")
        ingest_rate(tmp, report)

