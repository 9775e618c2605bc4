"""TLS on the cellular path (issue 13 item 9):

- tls_handshake_bytes: bytes on the wire for one full TLS handshake between the modem emulator's
  real TLS client (pinned to the depot CA, as the modem is) and `depot serve --tls-cert`, with an
  EC P-256 CA and server certificate; tls_handshake_bytes_rsa2048 with RSA-2048 certificates.
- cellular_bytes_per_record_tls: bytes on the air per record when the firmware's uploader on the
  real micropython sends the same 96 records as bench_cellular over the modem's TLS (SIM7600
  CCH* commands), the session kept open across the batches, with the same TCP/IP model;
  cellular_bytes_per_record_tls_session_each_batch: the same if every batch paid a new handshake
  (batches far apart, the server having closed the idle session).
- tls_handshake_bytes_resumed: one handshake resuming the previous session (a TLS 1.3 ticket),
  what a modem that supports resumption would pay instead of a full handshake (the SIM7600 and
  BG95 drivers here do not ask for it).
- modem_tls_heap_bytes: the heap TLS takes on micropython while the uploader has work (the module
  and its session state; the CA is streamed from its file, never held), measured with
  gc.mem_free() around loading it for a Modem; modem_tls_heap_bytes_idle: what is left once the
  uploader has released it (Modem.release).
"""

from __future__ import annotations

import os
import pty
import tempfile
import tty
from pathlib import Path

from host_tools.server import BackgroundServer
from host_tools.store import Store
from sim import certs as tls_certs
from sim import mpy as _mpy
from sim.modem_emulator import TCP_HEADER, ModemEmulator
from tests.bench.bench_cellular import DAY, RECORDS

TLS_DAY = DAY.replace('DEV, KEY, TTY, URL, ROOT, N = sys.argv[1:7]',
                      'DEV, KEY, TTY, URL, ROOT, N, CA = sys.argv[1:8]').replace(
    'apn="sim")', 'apn="sim", ca=CA)')


def upload_over_tls(tmp: Path, kind: str) -> tuple[int, list[int], int]:
    """(air bytes, handshake bytes of each session, batches) for RECORDS records over TLS."""
    ca = tls_certs.make_ca("Depot CA", kind=kind)
    (tmp / f"ca-{kind}.pem").write_bytes(ca.pem)
    cert, key_file = tls_certs.server_files(ca, tmp, f"server-{kind}", kind=kind)
    store = Store(tmp / f"tls-{kind}.sqlite3")
    dev = "HH-BENCH"
    key = store.enrol(dev)
    (tmp / f"dev-{kind}").mkdir()
    script = tmp / "tls_day.py"
    script.write_text(TLS_DAY)
    master, slave = pty.openpty()
    tty.setraw(slave)
    with BackgroundServer(store, tls_cert=cert, tls_key=key_file) as srv:
        emu = ModemEmulator(master, master, "sim7600", srv.url, seed=1).start()
        try:
            args = (dev, key.hex(), os.ttyname(slave), f"https://localhost:{srv.port}",
                    str(tmp / f"dev-{kind}"), str(RECORDS), str(tmp / f"ca-{kind}.pem"))
            out = _mpy.run(script=script, args=args, timeout=120)
        finally:
            emu.stop()
            os.close(master)
            os.close(slave)
    assert len(store.records(dev)) == RECORDS, "not every record arrived"
    return emu.air_bytes, emu.tls_handshakes, int(out.split()[0])


HEAP = r"""
import asyncio, gc
from firmware import modem
class Port:
    def write(self, b): pass
    async def drain(self): pass
    async def readinto(self, b): return 0
gc.collect()
before = gc.mem_free()
m = modem.Modem(Port(), "sim7600", ca=CA_PATH)
gc.collect()
mid = gc.mem_free()
from firmware import modem_tls
m.driver = modem_tls.TLS(m)  # as Modem.post makes it for the first https post
del modem_tls
gc.collect()
loaded = gc.mem_free()
asyncio.run(m.release())  # as the uploader does when it has nothing left to send
gc.collect()
print(before - mid, mid - loaded, mid - gc.mem_free())
"""


def tls_heap(tmp: Path, ca_pem: bytes) -> tuple[int, int, int]:
    """(a Modem, what TLS adds while uploading, what it leaves once released) in bytes of heap."""
    (tmp / "heap-ca.pem").write_bytes(ca_pem)
    out = _mpy.run(f"CA_PATH = {str(tmp / 'heap-ca.pem')!r}\n" + HEAP)
    plain, tls, idle = (int(x) for x in out.split())
    return plain, tls, idle


def resumed_handshake(tmp: Path) -> tuple[int, int]:
    """(full, resumed) handshake bytes: a request on one session, then a new session resuming it."""
    from sim.tls_link import TlsLink, client_context

    ca = tls_certs.make_ca("Depot CA")
    cert, key_file = tls_certs.server_files(ca, tmp, "server-resume")
    with BackgroundServer(Store(tmp / "resume.sqlite3"), tls_cert=cert, tls_key=key_file) as srv:
        ctx = client_context(ca.pem)
        first = TlsLink((srv.host, srv.port), "localhost", ca.pem, context=ctx)
        first.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first.read_http_response()  # the server's session ticket arrives with the answer
        session = first.tls.session
        first.close()
        again = TlsLink((srv.host, srv.port), "localhost", ca.pem, context=ctx, session=session)
        assert again.tls.session_reused, "the session was not resumed"
        again.close()
    return first.handshake_bytes, again.handshake_bytes


def run(report) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        air, handshakes, batches = upload_over_tls(tmp, "ec")
        full = handshakes[0]
        report("tls_handshake_bytes", full, "B", "one full handshake, EC P-256 chain, TLS 1.3 (Python ssl "
               "client pinned to the depot CA, uvicorn server)")
        report("cellular_bytes_per_record_tls", air / RECORDS, "B",
               f"{RECORDS} records, {batches} batches over {len(handshakes)} TLS session(s) kept open, "
               "SIM7600 CCH* from micropython, TCP/IP model")
        session = full + TCP_HEADER * (3 + 4) + 2 * TCP_HEADER * -(-full // 1360)
        fresh = air + (batches - len(handshakes)) * session
        report("cellular_bytes_per_record_tls_session_each_batch", fresh / RECORDS, "B",
               "the same if each batch opened its own session (batches far apart)")
        _, rsa, _ = upload_over_tls(tmp, "rsa")
        report("tls_handshake_bytes_rsa2048", rsa[0], "B", "one full handshake, RSA-2048 chain")
        full_hs, resumed = resumed_handshake(tmp)
        report("tls_handshake_bytes_resumed", resumed, "B",
               f"a session resumed with a TLS 1.3 ticket (a full one here: {full_hs} B)")
        plain, tls, idle = tls_heap(tmp, (tmp / "ca-ec.pem").read_bytes())
        report("modem_tls_heap_bytes", tls, "B",
               f"modem_tls loaded for a post, over a Modem alone ({plain} B); the CA "
               f"({len((tmp / 'ca-ec.pem').read_bytes())} B PEM) stays in a file, micropython unix port, "
               "modules from source")
        report("modem_tls_heap_bytes_idle", idle, "B",
               "what modem_tls leaves once the uploader released it (its interned names)")
