"""Torture, bad input: every parser the device or the depot exposes to the outside world, fed with
damaged versions of valid inputs (bit flips, truncations, insertions, deletions, random bytes).

Each target runs twice: hypothesis on CPython (the shared firmware code, or the real ingest server
on loopback), and one real `micropython` process that mutates inputs itself from a seeded PRNG and
prints its counters. The properties (issue 8, "Bad input, fuzzed"): no crash, no hang, a clear
error, the previous good state kept. Case counts scale with TORTURE=long; see docs/torture.md.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import dock_wire as P
from firmware import journal, nmea, record, route_package, scan_code, scan_code_format, upload_wire
from firmware.sign import Signer
from host_tools import route_compile
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.upload_server_wire import Batch, encode_batch
from sim import town
from tests.ingest_client import post
from tests.torture_util import VM_MUTATOR, cases, mutated, tally

pytestmark = pytest.mark.torture

ROOT = Path(__file__).resolve().parents[1]
VM_PATHS = (ROOT / "sim" / "vm",)
KEY = bytes(range(1, 33))
HYP = cases(200, 5000)  # hypothesis examples per target
VMN = cases(2000, 40000)  # mutated inputs per VM run


def fuzz_settings(n: int = HYP) -> settings:
    return settings(max_examples=n, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def vm(mpy, body: str, heap: str = "256K", **params: object) -> str:
    """Run `body` on the VM after the mutator, with each param bound to a global of that name."""
    head = "".join(f"{k} = {v!r}\n" for k, v in params.items())
    return mpy(head + VM_MUTATOR + body, heap=heap, extra_paths=VM_PATHS, timeout=cases(120, 1200))


def vm_counts(out: str, tag: str) -> dict[str, int]:
    """The VM's last `tag k=v k=v ...` line as a dict."""
    line = [ln for ln in out.splitlines() if ln.startswith(tag + " ")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


# ================================================================================ route packages

@pytest.fixture(scope="module")
def good_pkg(tmp_path_factory) -> tuple[bytes, Path, list[str]]:
    fc = town.town(seed=11, stops=12, area="south", route_id="FUZZ-1", service_date="2026-11-27")
    data = route_compile.compile_geojson(fc, key=KEY).package
    path = tmp_path_factory.mktemp("pkg") / "good.pkg"
    path.write_bytes(data)
    return data, path, [f["properties"]["stop_id"] for f in fc["features"]]


def reseal(data: bytes, key: bytes = KEY, fix_crcs: bool = True) -> bytes:
    """What a key holder (a buggy compiler) could produce: the damaged package with its section
    and header CRCs recomputed where the table still locates them, and signed again. This is how
    mutations get past the integrity checks into the structure parser."""
    import binascii

    b = bytearray(data[:-route_package.TRAILER_LEN] if len(data) >= route_package.TRAILER_LEN else data)
    if fix_crcs and len(b) >= route_package.HEADER_LEN:
        nsec = b[5]
        hlen = route_package.HEADER_LEN + nsec * route_package.SECTION_LEN
        if hlen <= len(b):
            for k in range(nsec):
                at = route_package.HEADER_LEN + k * route_package.SECTION_LEN
                _, off, ln, _ = struct.unpack_from(route_package.SECTION, b, at)
                if off + ln <= len(b):
                    struct.pack_into("<I", b, at + 12, binascii.crc32(b[off: off + ln]))
            crc = binascii.crc32(b[route_package.HEADER_LEN:hlen], binascii.crc32(b[:60]))
            struct.pack_into("<I", b, 60, crc)
    return bytes(b) + Signer(key).mac(bytes(b))


def test_route_package_hypothesis_only_package_error_and_the_good_route_stays(good_pkg, tmp_path):
    data, good_path, stop_ids = good_pkg
    active = route_package.RoutePackage(str(good_path), KEY)  # the route in use while bad ones arrive
    seen = {"cases": 0, "refused": 0, "accepted": 0}
    path = tmp_path / "incoming.pkg"

    @fuzz_settings()
    @given(mutated([data]), st.sampled_from(["raw", "resigned", "resealed"]))
    def one(pair: tuple[bytes, bytes], mode: str) -> None:
        _, bad = pair
        if mode != "raw":
            bad = reseal(bad, fix_crcs=mode == "resealed")
        if bad == data:
            return
        seen["cases"] += 1
        path.write_bytes(bad)
        try:
            route_package.RoutePackage(str(path), KEY).close()
            seen["accepted"] += 1
            assert mode != "raw", "a package that fails its HMAC was accepted"
        except route_package.PackageError as exc:
            seen["refused"] += 1
            assert str(exc).startswith(("route package", "not a route package"))
        assert active.stop(seen["cases"] % len(stop_ids)).stop_id == stop_ids[seen["cases"] % len(stop_ids)]

    one()
    active.close()
    with route_package.RoutePackage(str(good_path), KEY) as again:
        assert (again.route_id, again.stop_count) == ("FUZZ-1", len(stop_ids))
    tally("route-package (hypothesis, CPython)", seen["cases"],
          extra=f"{seen['refused']} refused, {seen['accepted']} re-signed ones opened")


ROUTE_VM = r"""
import binascii, struct
from firmware import route_package, sign
with open(GOOD, "rb") as f:
    good = f.read()
active = route_package.RoutePackage(GOOD, KEY)
ids = [active.stop(i).stop_id for i in range(active.stop_count)]

def reseal(b, fix):
    b = bytearray(b[:-32] if len(b) >= 32 else b)
    if fix and len(b) >= 64:
        nsec = b[5]
        hlen = 64 + 16 * nsec
        if hlen <= len(b):
            for k in range(nsec):
                at = 64 + 16 * k
                off, ln = struct.unpack_from("<II", b, at + 4)
                if off + ln <= len(b):
                    struct.pack_into("<I", b, at + 12, binascii.crc32(b[off:off + ln]))
            struct.pack_into("<I", b, 60, binascii.crc32(b[64:hlen], binascii.crc32(b[:60])))
    return bytes(b) + sign.hmac_sha256(KEY, b)

rng = Rng(8)
tried = refused = accepted = crashes = kept = 0
i = 0
while i < N:
    mode = i % 3
    i += 1
    bad = mutate(rng, good)
    if mode:
        bad = reseal(bad, mode == 2)
    if bad == good:
        continue
    tried += 1
    with open(BAD, "wb") as f:
        f.write(bad)
    try:
        route_package.RoutePackage(BAD, KEY).close()
        accepted += 1
        if mode == 0:
            crashes += 1
            print("ACCEPTED unsigned mutation", i)
    except route_package.PackageError:
        refused += 1
    except Exception as e:
        crashes += 1
        print("CRASH", i, mode, type(e).__name__, e)
    if active.stop(i % len(ids)).stop_id == ids[i % len(ids)]:
        kept += 1
active.close()
again = route_package.RoutePackage(GOOD, KEY)
print("route tried=%d refused=%d accepted=%d crashes=%d kept=%d reopened=%d" % (
    tried, refused, accepted, crashes, kept, again.stop_count == len(ids)))
"""


def test_route_package_on_the_vm_only_package_error_and_the_good_route_stays(mpy, good_pkg, tmp_path):
    _, good_path, stop_ids = good_pkg
    out = vm(mpy, ROUTE_VM, GOOD=str(good_path), BAD=str(tmp_path / "bad.pkg"), KEY=KEY, N=VMN)
    c = vm_counts(out, "route")
    crashes = [ln for ln in out.splitlines() if ln.startswith(("CRASH", "ACCEPTED"))]
    assert c["crashes"] == 0, "\n".join(crashes[:20])
    assert c["refused"] + c["accepted"] == c["tried"] > 0.9 * VMN
    assert c["kept"] == c["tried"] and c["reopened"] == 1
    tally("route-package (micropython VM)", c["tried"], c["crashes"],
          f"{c['refused']} refused, {c['accepted']} re-signed ones opened")


# ==================================================================================== NMEA lines

def nmea_line(body: str) -> bytes:
    c = 0
    for ch in body.encode():
        c ^= ch
    return f"${body}*{c:02X}".encode()


NMEA_GOOD = [nmea_line(b) for b in (
    "GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
    "GNRMC,235959.00,A,3351.40800,S,15112.91800,E,0.012,,311299,,,D",
    "GNGNS,080011.00,5130.00300,N,00007.20100,W,AAN,14,0.80,36.0,47.0,,,V",
    "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1",
    "GNGLL,3351.40800,S,15112.91800,E,080009.00,A,A",
    "BDGGA,080002,2232.00001,N,11408.99999,E,1,09,1.10,66.6,M,-2.5,M,,",
    "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K",
    "GPGSV,3,2,11,14,25,170,00,16,57,208,39,18,67,296,40,19,40,246,00",
    "GNZDA,080017.00,06,03,2024,00,00",
    "INRMC,080014,A,4404.14066,N,01233.93131,E,,,050324,,,A",
)]


def rechecksum(line: bytes) -> bytes:
    """Give a damaged line a correct checksum again, so it reaches the field parsers."""
    star = line.rfind(b"*")
    body = line[1:star] if line.startswith(b"$") and star > 0 else line.lstrip(b"$")
    c = 0
    for ch in body:
        c ^= ch
    return b"$" + body + b"*%02X" % c


def counted(p: nmea.NMEA) -> int:
    return p.good + p.bad_checksum + p.malformed + p.unsupported


def test_nmea_hypothesis_never_raises_and_every_line_is_counted_once():
    p = nmea.NMEA()
    seen = {"cases": 0, "lines": 0}

    @fuzz_settings()
    @given(mutated(NMEA_GOOD), st.booleans(), st.sampled_from([b"", b"\r\n", b"\n"]))
    def one(pair: tuple[bytes, bytes], fix: bool, eol: bytes) -> None:
        _, line = pair
        if fix:
            line = rechecksum(line)
        line += eol
        before = counted(p)
        p.parse(bytearray(line))
        blank = not line.strip(b"\r\n")
        assert counted(p) == before + (0 if blank else 1)
        seen["cases"] += 1
        seen["lines"] += 0 if blank else 1
        p.feed(bytearray(line + b"\n"))  # the UART path: garbage never raises there either
        fixes = p.fixes
        assert p.parse(bytearray(NMEA_GOOD[0])) == nmea.GGA and p.fixes == fixes + 1  # still works
        assert (p.lat_e6, p.lon_e6) == (48117300, 11516667)

    one()
    tally("nmea (hypothesis, CPython)", seen["cases"],
          extra=f"good={p.good} bad_checksum={p.bad_checksum} malformed={p.malformed} "
                f"unsupported={p.unsupported}")


NMEA_VM = r"""
from firmware import nmea
p = nmea.NMEA()
rng = Rng(3)
fed = 0
crashes = 0
i = 0
while i < N:
    line = mutate(rng, GOOD[i % len(GOOD)])
    if i % 2:  # half get a valid checksum again, to reach the field parsers
        star = line.rfind(b"*")
        body = line[1:star] if line.startswith(b"$") and star > 0 else line
        c = 0
        for ch in body:
            c ^= ch
        line = b"$" + body + b"*%02X" % c
    i += 1
    buf = bytearray(line)
    try:
        p.parse(buf)
        p.feed(buf)
        p.feed_byte(10)
    except Exception as e:
        crashes += 1
        print("CRASH", i, repr(line), type(e).__name__, e)
    if line.strip(b"\r\n"):
        fed += 1
stream_total = p.good + p.bad_checksum + p.malformed + p.unsupported
# the same lines again through parse() only, to check the counter identity exactly
q = nmea.NMEA()
rng = Rng(3)
fed2 = 0
i = 0
while i < N:
    line = mutate(rng, GOOD[i % len(GOOD)])
    if i % 2:
        star = line.rfind(b"*")
        body = line[1:star] if line.startswith(b"$") and star > 0 else line
        c = 0
        for ch in body:
            c ^= ch
        line = b"$" + body + b"*%02X" % c
    i += 1
    q.parse(bytearray(line))
    if line.strip(b"\r\n"):
        fed2 += 1
ok = q.parse(bytearray(GOOD[0])) == nmea.GGA and q.lat_e6 == 48117300
print("nmea lines=%d good=%d bad_checksum=%d malformed=%d unsupported=%d crashes=%d after=%d stream=%d" % (
    fed2, q.good - ok, q.bad_checksum, q.malformed, q.unsupported, crashes, ok, stream_total))
"""


def test_nmea_on_the_vm_never_raises_and_counters_add_up(mpy):
    out = vm(mpy, NMEA_VM, GOOD=NMEA_GOOD, N=VMN)
    c = vm_counts(out, "nmea")
    assert c["crashes"] == 0, "\n".join(ln for ln in out.splitlines() if ln.startswith("CRASH"))[:3000]
    assert c["good"] + c["bad_checksum"] + c["malformed"] + c["unsupported"] == c["lines"]
    assert c["lines"] > 0.95 * VMN and c["after"] == 1
    assert min(c["good"], c["bad_checksum"], c["malformed"], c["unsupported"]) > 0  # every path hit
    tally("nmea (micropython VM)", VMN, c["crashes"],
          f"good={c['good']} bad_checksum={c['bad_checksum']} malformed={c['malformed']} "
          f"unsupported={c['unsupported']}")


# ================================================================================= scanned codes

GS = b"\x1d"
CODES = [
    b"RR473124829GB\r\n",
    b"]C1" + b"00" + b"376123450000000019" + b"420" + b"1012AB" + GS + b"4215281012AB\r\n",
    b"]d2" + GS + b"0109506000134352" + GS + b"21ABC" + GS + b"10L1",
    b"(00)376123450000000019(420)1012AB",
    b"00376123450000000019",
    b"JJD000390007827240066",
    b"C-1234565",
]
SCAN_CODE_FORMATS = [("dhl", "JJD#{12,24}", None), ("local", "AA#########AA", None),
                 ("crate", "C-#{7}", "mod10")]
ERRORS = {scan_code.OK, scan_code.E_MISREAD, scan_code.E_CHECK, scan_code.E_UNKNOWN, scan_code.E_TOO_LONG}


def check_scan(s: scan_code.Scan) -> int:
    """What the scan path relies on: a known code, its message and buzzer pattern; an item id
    that fits a record when OK, none otherwise."""
    assert s.error in ERRORS
    assert isinstance(s.message, str) and s.pattern in scan_code.PATTERNS
    if s.ok:
        assert 0 < len(s.item_id.encode()) <= record.MAX_TEXT and s.kind
    else:
        assert s.message and s.item_id == ""
    return s.error


def test_scanned_codes_hypothesis_parse_never_raises_and_says_why():
    fmts = [scan_code_format.Format(*f) for f in SCAN_CODE_FORMATS]
    seen: dict[int, int] = {}

    @fuzz_settings()
    @given(mutated(CODES))
    def one(pair: tuple[bytes, bytes]) -> None:
        _, raw = pair
        code = check_scan(scan_code.parse(raw, fmts))
        seen[code] = seen.get(code, 0) + 1

    one()
    # the refusals a carrier can get are told apart by message and by buzzer pattern
    assert len({scan_code.MESSAGES[e] for e in ERRORS}) == len(ERRORS)
    assert len({scan_code.PATTERNS[e] for e in ERRORS - {scan_code.E_TOO_LONG}}) == len(ERRORS) - 1
    tally("scanned-codes (hypothesis, CPython)", sum(seen.values()),
          extra=" ".join(f"{scan_code.MESSAGES[k] or 'ok'}={v}" for k, v in sorted(seen.items())))


SCAN_CODE_VM = r"""
from firmware import scan_code, scan_code_format
fmts = [scan_code_format.Format(n, p, c) for n, p, c in FORMATS]
rng = Rng(5)
seen = [0, 0, 0, 0, 0]
crashes = bad = 0
i = 0
while i < N:
    raw = mutate(rng, CODES[i % len(CODES)])
    i += 1
    try:
        s = scan_code.parse(raw, fmts)
        if s.error not in (0, 1, 2, 3, 4) or not s.pattern or (s.ok and not 0 < len(s.item_id) <= 40):
            bad += 1
            print("BAD", repr(raw), s)
        else:
            seen[s.error] += 1
    except Exception as e:
        crashes += 1
        print("CRASH", repr(raw), type(e).__name__, e)
print("scan_code ok=%d misread=%d check=%d unknown=%d too_long=%d bad=%d crashes=%d" % (
    seen[0], seen[1], seen[2], seen[3], seen[4], bad, crashes))
"""


def test_scanned_codes_on_the_vm_never_raise_and_say_why(mpy):
    out = vm(mpy, SCAN_CODE_VM, CODES=CODES, FORMATS=SCAN_CODE_FORMATS, N=VMN)
    c = vm_counts(out, "scan_code")
    assert (c["crashes"], c["bad"]) == (0, 0), "\n".join(
        ln for ln in out.splitlines() if ln.startswith(("CRASH", "BAD")))[:3000]
    assert c["ok"] + c["misread"] + c["check"] + c["unknown"] + c["too_long"] == VMN
    assert min(c["ok"], c["misread"], c["check"], c["unknown"]) > 0
    tally("scanned-codes (micropython VM)", VMN, c["crashes"],
          " ".join(f"{k}={c[k]}" for k in ("ok", "misread", "check", "unknown", "too_long")))


# =================================================================================== dock frames

def wire(ftype: int, seq: int, ack: int, payload: bytes) -> bytes:
    enc = P.Encoder()
    enc.payload[: len(payload)] = payload
    return bytes(enc.frame(ftype, seq, ack, len(payload)))


DOCK_FRAMES = [(P.HELLO, 1, 0, b""), (P.RECORDS | P.REPLY, 7, 3, bytes(range(200))),
               (P.ACK, 9, 0, b"\0" * 40), (P.PUT_DATA, 200, 0, b"\1" * 300 + b"\0\0" + b"x" * 254)]
DOCK_WIRES = [wire(*f) for f in DOCK_FRAMES]
DOCK_GOOD = wire(P.STATUS, 42, 0, b"still here")


def decode(dec: P.Decoder, data: bytes, step: int) -> list[tuple[int, int, int, bytes]]:
    out = []
    pos = 0
    while pos < len(data):
        end = min(len(data), pos + step)
        while pos < end:
            pos = dec.feed(data, pos, end)
            if dec.ready:
                out.append((dec.type, dec.seq, dec.ack, bytes(dec.buf[P.HEAD: P.HEAD + dec.plen])))
    return out


def test_dock_frames_hypothesis_garbage_counted_dropped_and_the_next_frame_decodes():
    seen = {"cases": 0, "good": 0, "bad": 0}

    @fuzz_settings()
    @given(mutated([b"".join(DOCK_WIRES)] + DOCK_WIRES, max_ops=4), st.integers(1, 1100))
    def one(pair: tuple[bytes, bytes], step: int) -> None:
        _, data = pair
        dec = P.Decoder()
        got = decode(dec, data, step)
        chunks = [c for c in data.split(b"\0")[:-1] if c]
        assert dec.good + dec.bad == len(chunks)  # every delimited frame counted once
        assert dec.good == len(got) and all(f in DOCK_FRAMES for f in got)  # only real frames pass
        after = decode(dec, b"\0" + DOCK_GOOD, step)
        assert after[-1:] == [(P.STATUS, 42, 0, b"still here")]
        seen["cases"] += 1
        seen["good"] += dec.good - 1
        seen["bad"] += dec.bad

    one()
    tally("dock-frames (hypothesis, CPython)", seen["cases"],
          extra=f"{seen['bad']} garbled frames dropped, {seen['good']} intact ones decoded")


DOCK_VM = r"""
from firmware import dock_wire as P
rng = Rng(21)
dec = P.Decoder()
crashes = miscount = wrong = lost = 0
frames = 0
i = 0
while i < N:
    data = mutate(rng, WIRES[i % len(WIRES)] if i % 5 else b"".join(WIRES), 4)
    i += 1
    g0 = dec.good + dec.bad
    chunks = 0
    for c in data.split(b"\0")[:-1]:
        if c:
            chunks += 1
    try:
        pos = 0
        while pos < len(data):
            pos = dec.feed(data, pos, len(data))
            if dec.ready:
                f = (dec.type, dec.seq, dec.ack, bytes(dec.buf[3:3 + dec.plen]))
                if f not in FRAMES:
                    wrong += 1
        if dec.good + dec.bad != g0 + chunks:
            miscount += 1
        pos = 0
        good = b"\0" + GOOD
        ok = False
        while pos < len(good):
            pos = dec.feed(good, pos, len(good))
            ok = ok or (dec.ready and dec.type == P.STATUS and dec.seq == 42)
        if not ok:
            lost += 1
    except Exception as e:
        crashes += 1
        print("CRASH", repr(data), type(e).__name__, e)
    frames += chunks
print("dock frames=%d good=%d bad=%d crashes=%d miscount=%d wrong=%d lost=%d" % (
    frames, dec.good - N, dec.bad, crashes, miscount, wrong, lost))
"""


def test_dock_frames_on_the_vm_garbage_counted_dropped_and_the_next_frame_decodes(mpy):
    out = vm(mpy, DOCK_VM, WIRES=DOCK_WIRES, FRAMES=DOCK_FRAMES, GOOD=DOCK_GOOD, N=VMN)
    c = vm_counts(out, "dock")
    assert c["crashes"] == 0, "\n".join(ln for ln in out.splitlines() if ln.startswith("CRASH"))[:3000]
    assert (c["miscount"], c["wrong"], c["lost"]) == (0, 0, 0)
    assert c["bad"] > 0.5 * VMN and c["good"] > 0  # per case, good + bad == delimited frames
    tally("dock-frames (micropython VM)", VMN, c["crashes"],
          f"{c['bad']} garbled frames dropped, {c['good']} intact ones decoded")


# ============================================================================== upload requests

DEV_A = "FUZZ-A"  # only ever gets damaged batches: must hold nothing until the valid one at the end
DEV_B = "FUZZ-B"  # gets batches re-signed by its own key after damage (a buggy device)
REFUSALS = {400: "malformed", 401: "bad_signature", 403: "replayed_counter", 404: "unknown_device",
            409: "record_conflict", 412: "stale_timestamp", 413: "too_large", 422: "tampered_body"}


def recs(dev: str, first: int, n: int) -> list[bytes]:
    return [record.Record(seq=s, device_id=dev, route_id="R1", stop_id="S%d" % s,
                          item_id="RR%08d9GB" % s, verdict=record.V_INSIDE).encode()
            for s in range(first, first + n)]


def resign_batch(data: bytes, signer: Signer) -> bytes:
    """A damaged batch whose header still parses, re-hashed and re-signed under the device key:
    what a buggy device could send. Gets past the MAC into the body parser and the store."""
    try:
        b = Batch(data)
    except (upload_wire.FormatError, ValueError):
        return data
    head = bytearray(data[: b.hlen - 2 * 32])
    struct.pack_into("<I", head, 26, len(b.body))
    head += hashlib.sha256(b.body).digest()
    return bytes(head) + signer.mac(b"upload-batch/1", bytes(head)) + bytes(b.body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("srv") / "depot.sqlite3")
    keys = {d: Signer(store.enrol(d)) for d in (DEV_A, DEV_B)}
    with BackgroundServer(store, max_body=16384) as srv:
        yield srv, store, keys


def test_upload_requests_hypothesis_only_documented_4xx_nothing_stored_then_a_valid_batch(server):
    srv, store, keys = server
    counter = {"n": 1000}
    seen: dict[int, int] = {}
    before = dict(srv.metrics.rejections)

    def next_counter() -> int:
        counter["n"] += 1
        return counter["n"]

    @fuzz_settings()
    @given(st.integers(0, 6), st.data())
    def one(kind: int, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, 6))
        dev = DEV_B if kind == 6 else DEV_A
        good = encode_batch(dev, keys[dev], next_counter(), 0, recs(dev, 1, n))
        _, bad = data.draw(mutated([good]))
        path_id = dev
        headers = None
        if kind == 4:  # another (or no real) device in the path
            path_id = data.draw(st.sampled_from([DEV_B, "NOBODY", "FUZZ-A%2F..", "x" * 300, "%FF%FE"]))
        elif kind == 5:  # odd HTTP headers around a damaged body
            headers = {"content-type": data.draw(st.sampled_from(["text/plain", "", "application/json"])),
                       "x-depot-counter": str(data.draw(st.integers(-5, 10**12)))}
        elif kind == 6:
            bad = resign_batch(bad, keys[DEV_B])
        if bad == good and path_id == dev:
            return
        status, body, err = post(srv.url, path_id, bad, headers)
        assert status < 500, (status, body)
        seen[status] = seen.get(status, 0) + 1
        if kind == 6 and status == 200:
            return  # re-signed and still well formed: a genuine batch, stored like any other
        assert status in REFUSALS, (status, body)
        if status == 404 and not err:
            assert path_id not in (DEV_A, DEV_B)  # a path the router does not know
            return
        if status == 409:  # refused and flagged, answered with the signed ack (status CONFLICT)
            ack = upload_wire.parse_ack(body, keys[DEV_B], DEV_B, struct.unpack_from("<I", bad, 8)[0])
            assert err == "record_conflict" and ack is not None and ack.status == upload_wire.ACK_CONFLICT
        elif body[:1] == b"{":
            assert err == REFUSALS[status] == json.loads(body)["error"]
        else:  # refused after its counter was used up: the refusal is signed for this very request
            ack = upload_wire.parse_ack(body, keys[dev], dev, struct.unpack_from("<I", bad, 8)[0])
            assert err == REFUSALS[status] and ack is not None and ack.status == upload_wire.ACK_REFUSED
        assert store.count(DEV_A) == 0

    one()
    refused = sum(v for k, v in seen.items() if k != 200)
    rejected = sum(srv.metrics.rejections.values()) - sum(before.values())
    assert rejected <= refused and rejected >= refused - seen.get(404, 0)
    # a valid batch afterwards is accepted and acknowledged, signed
    c = next_counter()
    batch = encode_batch(DEV_A, keys[DEV_A], c, 0, recs(DEV_A, 1, 5))
    status, body, _ = post(srv.url, DEV_A, batch)
    ack = upload_wire.parse_ack(body, keys[DEV_A], DEV_A, c)
    assert status == 200 and ack is not None and (ack.ack_seq, ack.stored) == (5, 5)
    assert store.count(DEV_A) == 5
    tally("upload-requests (hypothesis, real server on loopback)", sum(seen.values()),
          extra=" ".join(f"{k}x{v}" for k, v in sorted(seen.items())))


def test_a_signed_batch_with_a_bad_deflate_body_is_a_400(server):
    # found by the re-signed fuzz above (it was a 500: zlib.error escaped Batch.records); fixed in
    # upload_wire.py by its owner, kept here as a regression case
    srv, store, keys = server
    body = b"\xff\xfe this is not a raw deflate stream"
    head = struct.pack("<4sBBBBIIIIHI", b"PSUB", 1, upload_wire.F_DEFLATE, len(DEV_A), 0, 5_000_000, 0, 1, 1,
                       1, len(body)) + DEV_A.encode() + hashlib.sha256(body).digest()
    status, _, err = post(srv.url, DEV_A, head + keys[DEV_A].mac(b"upload-batch/1", head) + body)
    assert (status, err) == (400, "malformed")


ACK_VM = r"""
from firmware import upload_wire, sign
from host_tools.upload_server_wire import Batch, encode_ack
s = sign.Signer(KEY)
rng = Rng(13)
crashes = accepted = 0
i = 0
while i < N:
    counter = 100 + i % 7
    good = encode_ack(s, DEV, counter, 40 + i % 9, 3, 1, 0)
    bad = mutate(rng, good)
    i += 1
    try:
        a = upload_wire.parse_ack(bad, s, DEV, counter)
        if bad != good and a is not None:
            accepted += 1
            print("ACCEPTED", repr(bad))
        b = Batch(bad)  # the same damage through the batch parser never escapes either
    except ValueError:
        pass
    except Exception as e:
        crashes += 1
        print("CRASH", repr(bad), type(e).__name__, e)
ok = upload_wire.parse_ack(encode_ack(s, DEV, 9, 77), s, DEV, 9)
print("ack accepted=%d crashes=%d after=%d" % (accepted, crashes, ok is not None and ok.ack_seq == 77))
"""


def test_upload_acks_on_the_vm_a_damaged_ack_is_never_trusted(mpy):
    out = vm(mpy, ACK_VM, KEY=KEY, DEV="DEV-1", N=VMN)
    c = vm_counts(out, "ack")
    assert (c["crashes"], c["accepted"], c["after"]) == (0, 0, 1), out[-3000:]
    tally("upload-acks (micropython VM)", VMN, c["crashes"], "no damaged acknowledgement trusted")


# ===================================================================== journal: corrupted tail

JOURNAL_RECORDS = 40


def jrec(i: int) -> record.Record:
    return record.Record(device_id="DEV0001", route_id="R12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i), lat_e6=52000000 + i, lon_e6=4000000)


def frame_ends(seg: bytes) -> list[int]:
    ends, p = [], 0
    while p + 2 <= len(seg):
        p += 2 + (seg[p] | seg[p + 1] << 8) + 4
        ends.append(p)
    return ends


def first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def test_journal_hypothesis_recovery_keeps_every_record_before_the_damage(tmp_path):
    import shutil

    base = tmp_path / "base"
    base.mkdir()
    j = journal.Journal(str(base / "j"))
    for i in range(JOURNAL_RECORDS):
        j.append(jrec(i))
    j.close()
    segs = sorted(p.name for p in (base / "j").iterdir() if p.name.endswith(".seg"))
    assert len(segs) > 3
    last_name = segs[-1]
    first_last = int(last_name[:-4])
    pristine = (base / "j" / last_name).read_bytes()
    ends = frame_ends(pristine)
    seen = {"cases": 0, "kept": 0}

    @fuzz_settings(cases(100, 2000))
    @given(mutated([pristine], max_ops=2))
    def one(pair: tuple[bytes, bytes]) -> None:
        _, bad = pair
        if bad == pristine:
            return
        root = Path(tempfile.mkdtemp(dir=tmp_path))
        shutil.copytree(base / "j", root / "j")
        (root / "j" / last_name).write_bytes(bad)
        d = first_difference(pristine, bad)
        jj = journal.Journal(str(root / "j"))
        buf = bytearray(journal.FRAME_MAX)
        held = [s for s, _ in jj.records(1, buf)]
        whole = [first_last + k for k, e in enumerate(ends) if e <= d]
        assert held == list(range(1, first_last)) + whole
        s = jj.append(jrec(99))
        assert s > JOURNAL_RECORDS  # a seq handed out before the damage is never reused
        jj.close()
        assert [q for q, _ in journal.Journal(str(root / "j")).records(1, buf)] == held + [s]
        shutil.rmtree(root)
        seen["cases"] += 1
        seen["kept"] += len(held)

    one()
    tally("journal-tail (hypothesis, CPython files)", seen["cases"],
          extra=f"{JOURNAL_RECORDS} records, {len(segs)} segments; every record before the damage kept")


JOURNAL_VM = r"""
import os, vfs
from firmware import journal, record
from flashdev import FlashDevice

def make(i):
    return record.Record(device_id="DEV0001", route_id="R12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i), lat_e6=52000000 + i, lon_e6=4000000)

def mount():
    try:
        vfs.umount("/f")
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(dev), "/f")

dev = FlashDevice(4096, 24)
vfs.VfsLfs2.mkfs(dev)
mount()
j = journal.Journal("/f/j")
for i in range(R):
    j.append(make(i))
j.close()
segs = sorted(n for n in os.listdir("/f/j") if n.endswith(".seg"))
last = "/f/j/" + segs[-1]
first_last = int(segs[-1][:-4])
with open(last, "rb") as f:
    pristine = f.read()
ends = []
p = 0
while p + 2 <= len(pristine):
    p += 2 + (pristine[p] | pristine[p + 1] << 8) + 4
    ends.append(p)
vfs.umount("/f")
image = bytes(dev.image)
buf = bytearray(journal.FRAME_MAX)
rng = Rng(17)
tried = crashes = lost = reused = kept = 0
i = 0
while i < N:
    i += 1
    bad = mutate(rng, pristine, 2)
    if bad == pristine:
        continue
    tried += 1
    dev.restore(image)
    try:
        mount()
        with open(last, "wb") as f:
            f.write(bad)
        vfs.umount("/f")
        d = 0
        while d < len(bad) and d < len(pristine) and bad[d] == pristine[d]:
            d += 1
        mount()  # a fresh boot
        jj = journal.Journal("/f/j")
        held = [s for s, _ in jj.records(1, buf)]
        want = list(range(1, first_last)) + [first_last + k for k in range(len(ends)) if ends[k] <= d]
        if held != want:
            lost += 1
            print("LOST", i, repr(bad), held, want)
        s = jj.append(make(99))
        if s <= R:
            reused += 1
        jj.close()
        if i % 4 == 0:  # and it is there after the next boot (every 4th case: mounts are slow)
            mount()
            if [q for q, _ in journal.Journal("/f/j").records(1, buf)] != held + [s]:
                lost += 1
                print("LOST after append", i)
        kept += len(held)
    except Exception as e:
        crashes += 1
        print("CRASH", i, repr(bad), type(e).__name__, e)
print("journal tried=%d crashes=%d lost=%d reused=%d segments=%d kept=%d" % (
    tried, crashes, lost, reused, len(segs), kept))
"""


def test_journal_on_the_vm_littlefs_recovery_keeps_every_record_before_the_damage(mpy):
    n = cases(150, 3000)
    out = vm(mpy, JOURNAL_VM, heap="1M", R=JOURNAL_RECORDS, N=n)
    c = vm_counts(out, "journal")
    assert (c["crashes"], c["lost"], c["reused"]) == (0, 0, 0), "\n".join(
        ln for ln in out.splitlines() if ln.startswith(("CRASH", "LOST")))[:3000]
    assert c["tried"] > 0.9 * n and c["segments"] > 3
    tally("journal-tail (micropython VM, littlefs)", c["tried"], c["crashes"],
          f"{JOURNAL_RECORDS} records in {c['segments']} segments; every record before the damage kept")


# ======================================================== dock session: the device on the VM

def test_dock_session_on_the_vm_survives_mutated_requests_and_still_syncs_everything(tmp_path):
    """The firmware's dock session (tests/dockharness.py: micropython behind a pty) gets a stream
    of requests with damaged payloads, unknown types and raw garbage; it must answer or drop each,
    never die, delete nothing, and then sync every record to the genuine host."""
    import random
    import time

    from host_tools.dock_link import DockLink
    from host_tools.sync import sync_device
    from tests.dockharness import Device, Relay
    from tests.torture_util import mutate

    n_records = 40
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=n_records)
    rng = random.Random(99)
    n = cases(300, 5000)
    bases = [(P.HELLO, bytes(P.NONCE)), (P.AUTH, bytes(32)), (P.STATUS, b""),
             (P.SET_CLOCK, struct.pack("<I", 1_700_000_000)),
             (P.GET_RECORDS, struct.pack(P.GET_FIXED, 1, 4, 200)),
             (P.PROGRESS, struct.pack(P.PROGRESS_FIXED, 1, 2, 0, 200)),
             (P.ACK, struct.pack(P.ACK_FIXED, n_records, bytes(32))),
             (P.PUT_BEGIN, struct.pack(P.PUT_BEGIN_FIXED, 3000, bytes(32))),
             (P.PUT_DATA, struct.pack(P.PUT_DATA_FIXED, 0) + bytes(range(200))),
             (P.PUT_END, b""), (0x55, b"?")]
    try:
        with DockLink(relay.host_path, retries=2) as link:
            for i in range(n):
                ftype, payload = bases[i % len(bases)]
                if i % 7 == 6:  # raw line noise: a damaged frame, bytes and all
                    enc = P.Encoder()
                    enc.payload[: len(payload)] = payload
                    link._write(mutate(rng, bytes(enc.frame(ftype, i & 0xFF, 0, len(payload)))))
                else:
                    if i % 11 == 10:
                        ftype = rng.randrange(256)
                    link.send(ftype, rng.randrange(256), rng.randrange(256),
                              mutate(rng, payload)[: P.MAX_PAYLOAD] if payload or i % 2 else payload)
                if i % 10 == 9:
                    while link.poll(0.005) is not None:
                        pass  # keep the device's replies flowing
            link._write(b"\0")
            time.sleep(0.2)
            while link.poll(0.05) is not None:
                pass
            hello = link.hello()
            assert (hello.watermark, hello.pending, hello.last_seq) == (0, n_records, n_records)
        assert [e for e in dev.events() if e[0] == "ack"] == []  # no damaged ack was taken
        rep = sync_device(relay.host_path, store)
        assert rep.ok, rep.error
        assert (rep.stored, rep.acked_seq) == (n_records, n_records)
    finally:
        relay.close()
        out = dev.stop()  # raises if the device printed a traceback
    assert "Traceback" not in out
    tally("dock-session (micropython VM over a pty)", n, 0,
          f"then a full sync of {n_records} records; nothing deleted by the noise")
