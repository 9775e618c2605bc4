"""Torture, security (issue 8): forged, tampered, replayed and unknown-device uploads; a route
package signed with another device's key; a forged dock acknowledgement. Each is refused with its
own status or message, counted, and changes nothing that was held."""

from __future__ import annotations

import hashlib
import http.client
import json
import struct
import time
from pathlib import Path

import pytest

from firmware import dock_wire as P
from firmware import record, upload_wire
from firmware.sign import Signer
from host_tools import route_compile
from host_tools.dock_link import AckRefused, AuthRefused, DeviceRefused, DockLink
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.sync import sync_device
from host_tools.upload_server_wire import encode_ack, encode_batch
from sim import town
from tests.dockharness import Device, Relay
from tests.torture_util import cases, tally

pytestmark = pytest.mark.torture

DEV = "SEC-1"
OTHER = "SEC-2"


def _flip_last_bit(tag: bytes) -> bytes:
    # Always a change: overwriting the last byte with 0 left 1 genuine tag in 256 intact (a flake).
    return tag[:-1] + bytes([tag[-1] ^ 1])


def recs(dev: str, first: int, n: int, item: str = "RR%08d9GB") -> list[bytes]:
    return [record.Record(seq=s, device_id=dev, route_id="R1", stop_id="S%d" % s, item_id=item % s,
                          verdict=record.V_INSIDE).encode() for s in range(first, first + n)]


def request(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request(method, path, body=body, headers={"content-type": "application/octet-stream"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r.getheader("x-depot-error") or ""


def post(url: str, dev: str, body: bytes) -> tuple[int, str]:
    status, _, err = request(url, "POST", f"/v1/devices/{dev}/records", body)
    return status, err


def metrics(url: str) -> dict:
    status, body, _ = request(url, "GET", "/metrics?format=json")
    assert status == 200
    return json.loads(body)


# ======================================================================================= uploads

def test_forged_tampered_replayed_and_unknown_uploads_refused_distinctly_and_counted(tmp_path):
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol(DEV)
    other_key = store.enrol(OTHER)
    me = Signer(key)
    rounds = cases(5, 100)
    with BackgroundServer(store) as srv:
        counter = 0
        outcomes: dict[str, tuple[int, str]] = {}
        for r in range(rounds):
            first = 1 + 10 * r
            counter += 10
            good = encode_batch(DEV, me, counter, 0, recs(DEV, first, 10))
            # forged: a well-formed batch signed under a key that is not the device's
            forged = encode_batch(DEV, Signer(bytes(32)), counter + 1, 0, recs(DEV, first, 10))
            # another enrolled device's key used to speak for this one
            impostor = encode_batch(DEV, Signer(other_key), counter + 2, 0, recs(DEV, first, 10))
            # tampered: the device's own signed batch with one record byte changed in transit
            tampered = bytearray(encode_batch(DEV, me, counter + 3, 0, recs(DEV, first, 10)))
            tampered[-3] ^= 0x01
            # unknown device: correct format, signed, but never enrolled
            unknown = encode_batch("NOBODY", Signer(bytes(range(32))), counter + 4, 0,
                                   recs("NOBODY", first, 10))
            outcomes["forged"] = post(srv.url, DEV, forged)
            outcomes["impostor"] = post(srv.url, DEV, impostor)
            outcomes["tampered"] = post(srv.url, DEV, bytes(tampered))
            outcomes["unknown"] = post(srv.url, "NOBODY", unknown)
            assert store.count(DEV) == 10 * r, "a refused batch stored something"
            assert post(srv.url, DEV, good) == (200, "")
            # replayed: the same request again, and new content under a used counter
            outcomes["replayed"] = post(srv.url, DEV, good)
            reuse = encode_batch(DEV, me, counter, 0, recs(DEV, first + 10, 10))
            outcomes["reused_counter"] = post(srv.url, DEV, reuse)
            assert store.count(DEV) == 10 * (r + 1)
            assert outcomes == {
                "forged": (401, "bad_signature"), "impostor": (401, "bad_signature"),
                "tampered": (422, "tampered_body"), "unknown": (404, "unknown_device"),
                "replayed": (403, "replayed_counter"), "reused_counter": (403, "replayed_counter")}
        m = metrics(srv.url)
    assert {k: m["rejections"].get(k, 0) for k in ("bad_signature", "tampered_body", "unknown_device",
                                                    "replayed_counter")} == {
        "bad_signature": 2 * rounds, "tampered_body": rounds, "unknown_device": rounds,
        "replayed_counter": 2 * rounds}
    assert m["requests"]["records 200"] == rounds
    assert [r.item_id for r in store.records(DEV)] == ["RR%08d9GB" % s for s in range(1, 10 * rounds + 1)]
    assert store.count(OTHER) == 0 and store.conflicts() == []
    tally("security uploads", 6 * rounds, extra="forged, impostor, tampered, unknown, replayed, "
          "reused counter: all refused, distinct codes, counted in /metrics")


def test_a_forged_acknowledgement_never_reaches_the_uploader(tmp_path):
    """The device side: an ack signed under another key, for another request, or for another
    device is not an acknowledgement (parse_ack gives None), so the watermark cannot move."""
    me, them = Signer(bytes(range(32))), Signer(bytes(32))
    genuine = encode_ack(me, DEV, 7, 40)
    assert upload_wire.parse_ack(genuine, me, DEV, 7).ack_seq == 40  # type: ignore[union-attr]
    assert upload_wire.parse_ack(encode_ack(them, DEV, 7, 40), me, DEV, 7) is None
    assert upload_wire.parse_ack(genuine, me, DEV, 8) is None  # a replayed ack of an earlier request
    assert upload_wire.parse_ack(encode_ack(me, OTHER, 7, 40), me, DEV, 7) is None
    assert upload_wire.parse_ack(b"", me, DEV, 7) is None


# ================================================================================ route packages

KEY = bytes(range(1, 33))
OTHER_KEY = bytes(range(101, 133))


def test_a_route_package_signed_for_another_device_is_refused_on_the_vm(mpy, tmp_path):
    fc = town.town(seed=4, stops=8, area="south", route_id="MINE", service_date="2026-11-27")
    mine = route_compile.compile_geojson(fc, key=KEY).package
    fc2 = town.town(seed=4, stops=8, area="south", route_id="THEIRS", service_date="2026-11-27")
    theirs = route_compile.compile_geojson(fc2, key=OTHER_KEY).package
    (tmp_path / "active.pkg").write_bytes(mine)
    (tmp_path / "incoming.pkg").write_bytes(theirs)
    out = mpy(f"""
        from firmware import route_package
        active = route_package.RoutePackage({str(tmp_path / "active.pkg")!r}, {KEY!r})
        try:
            route_package.RoutePackage({str(tmp_path / "incoming.pkg")!r}, {KEY!r})
            print("ACCEPTED")
        except route_package.PackageError as e:
            print("refused:", e)
        print("active:", active.route_id, active.stop_count, active.stop(0).stop_id)
        """)
    assert out.splitlines() == [
        "refused: route package signature invalid: tampered, or signed for another device",
        "active: MINE 8 S0001"]


# ========================================================================== dock acknowledgement

N = 60


def test_forged_dock_acks_are_refused_by_the_device_session_and_nothing_is_deleted(tmp_path: Path):
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    other_key = store.enrol("DEV2")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=N)
    tries = cases(10, 200)
    try:
        with DockLink(relay.host_path, retries=2) as link:
            old = link.hello()
            link.authenticate(old, key)
            recorded = link._ses().mac(P.ack_message("DEV1", N))  # a genuine ack of that session
            hello = link.hello()
            assert (hello.watermark, hello.pending) == (0, N)
            link.authenticate(hello, key)
            ses = link._ses()
            forgeries = []
            for k in range(tries):
                forgeries += [
                    Signer(bytes([k % 256]) * 32).mac(P.ack_message("DEV1", N)),  # wrong key
                    Signer(other_key).mac(P.ack_message("DEV1", N)),  # another device's key
                    Signer(key).mac(P.ack_message("DEV1", N)),  # the device key, not the session's
                    ses.mac(P.ack_message("DEV2", N)),  # this session, another device id
                    ses.mac(b"upload-batch/1", P.ack_message("DEV1", N)),  # other domain
                    _flip_last_bit(ses.mac(P.ack_message("DEV1", N))),  # damaged tag
                    recorded,  # replayed from the previous session
                ]
            for tag in forgeries:
                with pytest.raises(AckRefused, match="bad signature"):
                    link.ack(N, tag)
            # a short ACK payload is a bad request, not a crash
            with pytest.raises(DeviceRefused, match="bad request"):
                link.request(P.ACK, b"\1\2\3")
            st = link.status()
            assert (st.watermark, st.pending) == (0, N)
        end = time.monotonic() + 10  # the VM prints its events as it goes: let the reader catch up
        while sum(e[0] == "ack_refused" for e in dev.events()) < len(forgeries) and time.monotonic() < end:
            time.sleep(0.05)
        refused = [e[1] for e in dev.events() if e[0] == "ack_refused"]
        assert refused == ["bad signature"] * len(forgeries)
        # the genuine host still syncs everything afterwards
        rep = sync_device(relay.host_path, store)
        assert rep.ok, rep.error
        assert (rep.stored, rep.acked_seq) == (N, N)
    finally:
        relay.close()
        out = dev.stop()
    assert "Traceback" not in out
    assert dev.journal_state()[:2] == (N, 0)
    tally("security dock-acks", len(forgeries) + 1,
          extra="wrong key, other device's key, device key outside the session, other device id, "
                "upload signature, damaged tag, replayed from another session: all refused, "
                "nothing deleted")


def test_a_dock_without_the_key_is_refused_every_request_and_changes_nothing(tmp_path: Path):
    """Issue 13.1: a rogue dock (no key) tries every request, before and after a forged AUTH."""
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=N)
    rounds = cases(3, 40)
    requests = [(P.SET_CLOCK, struct.pack("<I", 1)),
                (P.PUT_BEGIN, struct.pack(P.PUT_BEGIN_FIXED, 0xFFFFFFFF, bytes(32))),
                (P.PUT_DATA, struct.pack(P.PUT_DATA_FIXED, 0) + bytes(100)), (P.PUT_END, b""),
                (P.GET_RECORDS, struct.pack(P.GET_FIXED, 1, 8, 1000)), (P.STATUS, b""),
                (P.ACK, struct.pack(P.ACK_FIXED, N, bytes(32))),
                (P.SET_KEY, struct.pack(P.SET_KEY_FIXED, bytes(32), bytes(32)))]
    refused = 0
    try:
        with DockLink(relay.host_path, retries=2) as link:
            for r in range(rounds):
                hello = link.hello()
                guess = Signer(bytes([r % 256]) * 32).mac(P.auth_message(hello.host_nonce,
                                                                         hello.device_nonce, "DEV1"))
                with pytest.raises(AuthRefused, match="host proof refused"):
                    link.request(P.AUTH, guess)
                refused += 1
                for t, pl in requests:
                    with pytest.raises(AuthRefused, match="authenticate first"):
                        link.request(t, pl)
                    refused += 1
        time.sleep(0.3)  # the VM prints its events as it goes
        assert [e[0] for e in dev.events() if e[0] in ("clock", "route_receiving", "route", "ack",
                                                      "key_rotated", "authenticated")] == []
        assert not (tmp_path / "route" / "incoming.pkg").exists()
        rep = sync_device(relay.host_path, store)
        assert rep.ok and (rep.stored, rep.acked_seq) == (N, N)
    finally:
        relay.close()
        out = dev.stop()
    assert "Traceback" not in out
    tally("security rogue-dock requests", refused,
          extra="forged AUTH, then SET_CLOCK, PUT_BEGIN 0xFFFFFFFF, PUT_DATA, PUT_END, GET_RECORDS, "
                "STATUS, ACK, SET_KEY: all refused before the key is proved, nothing changed")


def test_a_valid_package_still_replaces_the_route_after_the_forgeries(tmp_path):
    """Counterpart of the refusal: the same reader takes the device's own package (so the refusal
    above is about the key, not the package)."""
    from firmware import route_package

    fc = town.town(seed=4, stops=8, area="south", route_id="MINE", service_date="2026-11-27")
    p = tmp_path / "p.pkg"
    p.write_bytes(route_compile.compile_geojson(fc, key=OTHER_KEY).package)
    with route_package.RoutePackage(str(p), OTHER_KEY) as pkg:
        assert pkg.package_hash == hashlib.sha256(p.read_bytes()).digest()[:8]
    with pytest.raises(route_package.PackageError, match="signed for another device"):
        route_package.RoutePackage(str(p), KEY)
    assert struct.unpack_from("<4s", p.read_bytes())[0] == b"RPKG"


# ============================================================ ingest server under abuse (issue 13)

def test_oversized_chunked_slow_and_bomb_uploads_cost_the_server_nothing_lasting(tmp_path):
    """Issue 13 items 2-4, each repeated: a chunked body past the cap is cut off while it streams,
    connections that never finish their headers are closed at the deadline and those past the
    connection limit get 503 with Retry-After, a deflate bomb is refused signed and its replay is
    a 403; a genuine batch after each round is stored exactly once."""
    import select
    import socket
    import zlib

    from host_tools.server_guard import Limits

    store = Store(tmp_path / "depot.sqlite3")
    me = Signer(store.enrol(DEV))
    rounds = cases(3, 30)
    limits = Limits(max_body=64 * 1024, header_timeout_s=2.0, max_connections=8)
    mib = 1 << 20
    sent_total = 0
    with BackgroundServer(store, limits=limits) as srv:
        for r in range(rounds):
            # 13.2: 1 MiB chunks until the server answers
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            s.sendall(f"POST /v1/devices/{DEV}/records HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n".encode())
            s.setblocking(False)
            chunk, sent, pending = b"%x\r\n" % mib + b"\0" * mib + b"\r\n", 0, b""
            while sent < 300 * mib and not select.select([s], [], [], 0)[0]:
                pending = pending or chunk  # the rest of a partial send first: whole chunks
                try:
                    n = s.send(pending)
                    pending = pending[n:]
                    sent += n
                except BlockingIOError:
                    select.select([s], [s], [], 1.0)
                except OSError:
                    break
            s.setblocking(True)
            assert s.recv(12) == b"HTTP/1.1 413"
            s.close()
            assert sent < 32 * mib
            sent_total += sent
            # 13.3: 12 connections that stop half way through their headers
            slow = [socket.create_connection((srv.host, srv.port), timeout=10) for _ in range(12)]
            for c in slow:
                c.sendall(b"GET /healthz HTTP/1.1\r\n")
            answers = []
            for c in slow:
                c.settimeout(10)
                try:
                    answers.append(c.recv(4096))
                except ConnectionResetError:
                    answers.append(b"")
                c.close()
            busy = [a for a in answers if a.startswith(b"HTTP/1.1 503")]
            assert len(busy) == 4 and all(b"retry-after: 5" in a for a in busy)
            assert answers.count(b"") == 8
            # 13.4: 60 MiB of zeros in about 58 KiB, signed; then the same request again
            counter = 10 * r + 1
            packer = zlib.compressobj(9, zlib.DEFLATED, -upload_wire.WBITS)
            body = packer.compress(b"\0" * (60 * mib)) + packer.flush()
            head = struct.pack("<4sBBBBIIIIHI", b"PSUB", 1, upload_wire.F_DEFLATE, len(DEV), 0, counter, 0, 1,
                               1, 1, len(body)) + DEV.encode() + hashlib.sha256(body).digest()
            bomb = head + me.mac(b"upload-batch/1", head) + body
            status, answer, err = request(srv.url, "POST", f"/v1/devices/{DEV}/records", bomb)
            refusal = upload_wire.parse_ack(answer, me, DEV, counter)
            assert (status, err) == (400, "malformed") and refusal is not None
            assert refusal.status == upload_wire.ACK_REFUSED
            assert post(srv.url, DEV, bomb) == (403, "replayed_counter")
            good = encode_batch(DEV, me, counter + 1, 0, recs(DEV, 1 + 5 * r, 5),
                                                   compress=True)
            assert post(srv.url, DEV, good) == (200, "")
            assert store.count(DEV) == 5 * (r + 1)
        m = srv.metrics.as_dict()
    assert m["overload"] == {"connections": 4 * rounds}
    assert m["timeouts"] == {"headers": 8 * rounds}
    assert {k: m["rejections"][k] for k in ("too_large", "malformed", "replayed_counter")} == {
        "too_large": rounds, "malformed": rounds, "replayed_counter": rounds}
    tally("security ingest-abuse", rounds * 15,
          extra=f"{rounds} chunked bodies cut off after {sent_total // rounds // mib} MiB on average, "
                f"{12 * rounds} slow connections closed or turned away with 503, {rounds} deflate bombs "
                "refused signed and not replayable")


def test_an_unsigned_refusal_never_sets_a_batch_aside(mpy, tmp_path):
    """Issue 13 item 8 on the VM, every 4xx a captive portal or proxy might send, then a refusal
    signed under another key: none quarantines; only the server's own signed refusal does."""
    statuses = list(range(400, 452)) + [499]
    out = mpy(f"""
        import asyncio
        from firmware import journal, record, upload_wire, uploader
        from firmware.sign import Signer
        from host_tools.upload_server_wire import Batch, encode_ack
        DEV = "HH-S"
        KEY = bytes(range(32))
        class Portal:
            def __init__(self):
                self.answers = {statuses!r} + ["forged", "signed"]
            async def post(self, url, body):
                b = Batch(bytes(body))
                a = self.answers.pop(0)
                if a in ("forged", "signed"):
                    by = Signer(bytes(32) if a == "forged" else KEY)
                    return 400, encode_ack(by, DEV, b.counter, 0, status=upload_wire.ACK_REFUSED)
                return a, b"<html>Sign in to continue</html>"
        j = journal.Journal({str(tmp_path / "j")!r})
        for i in range(3):
            j.append(record.Record(device_id=DEV, item_id="I%d" % i))
        up = uploader.Uploader(j, Portal(), DEV, KEY, "http://h", state_dir={str(tmp_path / "u")!r})
        aside = []
        for i in range({len(statuses) + 2}):
            asyncio.run(up.step())
            aside.append(up.quarantined)
        print(aside.index(1), up.quarantined, j.pending())
    """)
    assert out.split() == [str(len(statuses) + 1), "1", "3"]
    tally("security unsigned-refusals", len(statuses) + 2,
          extra=f"{len(statuses)} unsigned 4xx and a refusal signed under another key: none quarantined")


def test_keys_stay_private_and_hostile_text_stays_inert_across_umasks_and_payloads(tmp_path):
    """Issue 13 items 5 and 12: under every umask the store, its -wal and -shm are 0600 in a 0700
    folder; random text with control characters and formula starts never reaches a terminal raw
    or a spreadsheet as a formula."""
    import csv
    import io
    import os
    import random
    import stat

    from host_tools import untrusted

    umasks = [0o000, 0o002, 0o007, 0o022, 0o027, 0o077][: cases(6, 6)]
    for i, mask in enumerate(umasks):
        old = os.umask(mask)
        try:
            home = tmp_path / f"home{i}"
            store = Store(home / "sub" / "depot.sqlite3")
            store.enrol(DEV)
            store.ingest(DEV, recs(DEV, 1, 2), "test")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (home / "sub").iterdir()}
            assert stat.S_IMODE((home / "sub").stat().st_mode) == 0o700
            assert modes == {"depot.sqlite3": 0o600, "depot.sqlite3-wal": 0o600, "depot.sqlite3-shm": 0o600}
            store.close()
        finally:
            os.umask(old)
    rng = random.Random(13)
    n = cases(2000, 100_000)
    alphabet = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), 0x202E, 0x2066]] + list("=+-@AZaz09 ,\"'")
    for _ in range(n):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
        shown = untrusted.shown(text)
        assert not [c for c in shown if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u202e\u2066"]
        cell = next(csv.reader(io.StringIO(_csv_line(untrusted.csv_cell(text)))))[0]
        assert cell[:1] not in ("=", "+", "-", "@"), repr(text)
    tally("security private-and-inert", len(umasks) + n,
          extra=f"{len(umasks)} umasks: store, -wal, -shm 0600 in 0700; {n} hostile strings inert in "
                "text and CSV")


def _csv_line(cell: str) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerow([cell])
    return buf.getvalue()


def test_tls_refuses_every_impostor_server_and_every_plain_client(tmp_path):
    """Issue 13 item 9, repeated: the modem emulator's TLS client pinned to the depot CA (as the
    device's modem is) refuses a server certified by another CA, an expired certificate, a
    certificate for another name and a plain-HTTP server; the TLS server refuses plain-HTTP
    clients; the genuine server is reached every time."""
    import socket
    import ssl

    from sim import certs as tls_certs
    from sim.tls_link import TlsLink, TlsRefused

    depot_ca, rogue_ca = tls_certs.make_ca("Depot CA"), tls_certs.make_ca("Rogue CA")
    store = Store(tmp_path / "depot.sqlite3")
    files = {"good": tls_certs.server_files(depot_ca, tmp_path, "good"),
             "rogue_ca": tls_certs.server_files(rogue_ca, tmp_path, "rogue"),
             "expired": tls_certs.server_files(depot_ca, tmp_path, "expired", expired=True),
             "other_name": tls_certs.server_files(depot_ca, tmp_path, "other", hosts=("depot.example.org",))}
    rounds = cases(5, 100)
    refused: dict[str, int] = {}
    servers = {name: BackgroundServer(store, tls_cert=c, tls_key=k) for name, (c, k) in files.items()}
    servers["plain_server"] = BackgroundServer(store)
    for s in servers.values():
        s.__enter__()
    try:
        for _ in range(rounds):
            for name, srv in servers.items():
                try:
                    link = TlsLink((srv.host, srv.port), "localhost", depot_ca.pem)
                except TlsRefused:
                    refused[name] = refused.get(name, 0) + 1
                    continue
                link.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert link.read_http_response().startswith(b"HTTP/1.1 200")
                link.close()
            plain = socket.create_connection((servers["good"].host, servers["good"].port), timeout=10)
            plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            try:
                answer = plain.recv(100)
            except (ConnectionResetError, ssl.SSLError):
                answer = b""
            plain.close()
            assert not answer.startswith(b"HTTP/1.1 200")
            refused["plain_client"] = refused.get("plain_client", 0) + 1
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)
    assert refused == {"rogue_ca": rounds, "expired": rounds, "other_name": rounds, "plain_server": rounds,
                       "plain_client": rounds}
    assert servers["good"].metrics.requests.get("healthz 200") == rounds
    tally("security tls", 6 * rounds, extra="rogue CA, expired, other name, plain server, plain client: "
          "all refused; the genuine server reached every time")


# =========================================================== route package structure (13.11)

def test_resigned_packages_with_random_structure_damage_open_clean_or_refuse(tmp_path):
    """A package built wrong but signed with the device key: open() either refuses it with a
    PackageError or every stop, item lookup and fence search afterwards works. Nothing else."""
    import random

    from firmware import geofence, route_package
    from tests.test_route_package import reseal, sections

    fc = town.town(seed=4, stops=20, area="south", route_id="MINE", service_date="2026-11-27")
    good = route_compile.compile_geojson(fc, key=KEY).package
    secs = sections(good)
    rng = random.Random(13)
    n = cases(200, 5000)
    refused = opened = 0
    for _ in range(n):
        tag = rng.choice(["STOP", "GEOM", "GRID", "ITEM", "RECS"])
        off, ln = secs[tag]
        at = off + rng.randrange(ln)
        width = rng.choice([1, 2, 4])
        value = rng.choice([0, 1, 0xFF, 0x7F, 0x80, rng.randrange(256)])

        def patch(b, s, at=at, width=width, value=value):
            for j in range(width):
                if at + j < len(b):
                    b[at + j] = value

        p = tmp_path / "r.pkg"
        p.write_bytes(reseal(good, patch, KEY))
        try:
            pkg = route_package.RoutePackage(str(p), KEY)
        except route_package.PackageError:
            refused += 1
            continue
        with pkg:
            for i in range(pkg.stop_count):
                pkg.stop(i)
            for it in ("RR000000000GB", fc["features"][0]["properties"]["items"][0]):
                pkg.find_item(it)
            for _ in range(5):
                geofence.nearest(pkg, rng.randrange(-5000, 5000), rng.randrange(-5000, 5000))
        opened += 1
    assert refused > n // 4 and refused + opened == n
    tally("security route-package structure", n, extra=f"re-signed random damage: {refused} refused "
          f"with PackageError, {opened} opened and served every stop, item and fence search")


# ============================================== seqs, ids, keys, hostile compile input (13.6-13.12)

def test_seqs_anywhere_in_32_bits_never_exhaust_the_store(tmp_path):
    """13.6: records and absent runs with seqs up to 2**32-1; gaps and absent stay runs, bounded
    by the number of holes, and the store answers every sync and report."""
    import random

    from host_tools import seqruns
    from host_tools.store import MAX_SEQ

    store = Store(tmp_path / "depot.sqlite3")
    store.enrol(DEV)
    rng = random.Random(6)
    n = cases(200, 5000)
    invalid = 0
    for _ in range(n // 10):
        seqs = [rng.choice([rng.randrange(1, 2**32), rng.randrange(1, 5000), MAX_SEQ, MAX_SEQ + 1,
                            0xFFFFFFFF]) for _ in range(10)]
        r = store.ingest(DEV, recs(DEV, 1, 0) + [record.Record(seq=s, device_id=DEV, route_id="R1",
                         stop_id="S1", item_id="RR%08d9GB" % (s % 10**8), verdict=record.V_INSIDE).encode()
                         for s in seqs], "dock")
        invalid += r.invalid
        a = rng.randrange(1, 2**32)
        store.declare_absent(DEV, [(a, min(a + rng.randrange(2**31), 2**32 - 1)), rng.randrange(1, 2**32)],
                             "dock")
        gaps = store.gaps(DEV)
        assert len(gaps) <= store.count(DEV) and all(1 <= x <= y <= MAX_SEQ for x, y in gaps)
        absent = store.absent(DEV)
        assert all(1 <= x <= y <= MAX_SEQ for x, y in absent)
        assert seqruns.intersect(absent, seqruns.runs_of(r.seq for r in store.records(DEV))) == []
    assert invalid > 0 and store.ack_seq(DEV) <= MAX_SEQ
    tally("security seqs near 2**32", n, extra=f"{store.count(DEV)} stored, {invalid} above MAX_SEQ "
          f"refused; gaps and absent kept as {len(store.gaps(DEV))} and {len(store.absent(DEV))} runs")


def test_random_ids_are_either_valid_names_or_refused_everywhere(tmp_path):
    """13.7: whatever an id holds, it is refused at enrol and compile, or it is a plain file name."""
    import random

    from host_tools import ids

    store = Store(tmp_path / "store" / "depot.sqlite3")
    rng = random.Random(7)
    alphabet = "aZ09._-/\\\n\r\t\x1b\x00 ~é😀:.."
    n = cases(300, 20000)
    refused = 0
    fc = town.town(seed=4, stops=2, area="south", route_id="X", service_date="2026-11-27")
    for k in range(n):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 20)))
        why = ids.problem("device id", value)
        if why:
            refused += 1
            with pytest.raises(ids.BadId):
                store.enrol(value)
            if k % 20 == 0:
                with pytest.raises(route_compile.CompileError):
                    route_compile.compile_geojson(fc, route_id=value[:16] or "/")
        else:
            assert Path(value).name == value and not value.startswith((".", "-"))
            if store.key(value) is None:
                store.enrol(value)
    assert refused > n // 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing written beside it
    tally("security ids", n, extra=f"{refused} refused at enrol (and compile), {n - refused} plain names")


def test_rotations_and_a_revoke_hold_at_once_on_the_server(tmp_path):
    """13.10: each rotation refuses the old key at the next request and takes the new one; the
    revoke refuses the device at once."""
    from host_tools import cli

    db = str(tmp_path / "depot.sqlite3")
    store = Store(db)
    key = store.enrol(DEV)
    rounds = cases(5, 60)
    seq = 1
    with BackgroundServer(store) as srv:
        for _ in range(rounds):
            batch = encode_batch(DEV, Signer(key), seq, 0, recs(DEV, seq, 1))
            assert post(srv.url, DEV, batch) == (200, "")
            seq += 1
            assert cli.main(["--store", db, "rotate-key", "--device-id", DEV]) == 0
            old = encode_batch(DEV, Signer(key), seq, 0, recs(DEV, seq, 1))
            assert post(srv.url, DEV, old) == (401, "bad_signature")
            key = store.key(DEV)
            assert key is not None
            store.key_delivered(DEV, key)
        assert cli.main(["--store", db, "revoke", "--device-id", DEV]) == 0
        last = encode_batch(DEV, Signer(key), seq, 0, recs(DEV, seq, 1))
        assert post(srv.url, DEV, last) == (404, "unknown_device")
    assert store.count(DEV) == rounds
    tally("security revoke/rotate-key", 2 * rounds + 1,
          extra="old key refused at the first request after each rotation, revoked device refused")


def test_hostile_route_files_are_one_line_each(tmp_path):
    """13.12: NaN and infinite coordinates name their feature; JSON nested deep is one line."""
    import math
    import random

    rng = random.Random(12)
    n = cases(30, 400)
    for k in range(n):
        fc = town.town(seed=k % 7, stops=4, area="south", route_id="H", service_date="2026-11-27")
        i = rng.randrange(4)
        ring = fc["features"][i]["geometry"]["coordinates"][0]
        ring[rng.randrange(1, len(ring) - 1)][rng.randrange(2)] = rng.choice([math.nan, math.inf, -math.inf])
        with pytest.raises(route_compile.CompileError, match=rf"feature #{i} \(stop_id 'S000{i + 1}'\): a "
                           "coordinate is not a number"):
            route_compile.compile_geojson(fc)
    deep = tmp_path / "deep.geojson"
    for depth in (10_000, 200_000):
        deep.write_text("{\"a\":" * depth + "1" + "}" * depth)
        with pytest.raises(route_compile.CompileError, match="nested too deeply"):
            route_compile.compile_file(deep)
    tally("security hostile route files", n + 2, extra="NaN/inf vertices name their feature; "
          "JSON 10,000 and 200,000 deep: one line, no traceback")
