"""TLS on the cellular path (issue 13 item 9), with real TLS end to end: the firmware's modem driver
(firmware/modem_tls.py) on the MicroPython VM drives the modem emulator's TLS commands over a pty,
the emulator opens a real TLS session (Python's ssl) pinned to the CA the device downloaded, and
`depot serve` answers with uvicorn's TLS. Certificates are made by the test.

A wrong CA, an expired certificate and a server that speaks plain HTTP are each refused by the
device before a byte of its records leaves; a plain-HTTP client is refused by the TLS server; the
day then uploads exactly once, over few handshakes, and gives the TLS driver's RAM back when idle."""

from __future__ import annotations

import http.client
import os
import pty
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from firmware.sign import Signer
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.upload_server_wire import encode_batch
from sim import certs as tls_certs
from sim import mpy as _mpy
from sim.modem_emulator import ModemEmulator

DEV = "HH-TLS"
ROOT = Path(__file__).resolve().parent.parent

DAY = r"""
import sys, asyncio, binascii
from firmware import journal, modem, uploader, record
DEV, KEY, TTY, DIALECT, URL, ROOT, CA = sys.argv[1:8]
KEY = binascii.unhexlify(KEY)
stream = asyncio.StreamReader(open(TTY, "r+b"))

def ctl(cmd):
    print(cmd)
    return sys.stdin.readline().strip()

async def day():
    j = journal.Journal(ROOT + "/journal")
    batch = bytearray(3072)  # as the app builds them: the TLS answer lands in the batch's buffer
    m = modem.Modem(stream, DIALECT, apn="sim", cmd_ms=1000, net_ms=8000, ca=CA, resp=batch)
    up = uploader.Uploader(j, m, DEV, KEY, URL, state_dir=ROOT + "/upload", base_ms=1, cap_ms=5,
                           coverage_ms=1, idle_ms=20, batch=8, buf=batch)
    for i in range(40):
        j.append(record.Record(device_id=DEV, route_id="R1", stop_id="S%d" % i, item_id="RR%08d5GB" % i,
                               verdict=record.V_INSIDE))
    for phase in ("wrong_ca", "expired", "plain_server", "good"):
        ctl("phase " + phase)
        steps = 0
        while j.pending() and steps < (3 if phase != "good" else 40):
            await up.step()
            steps += 1
        ctl("after %s %d %d %s" % (phase, j.pending(), j.watermark, up.last_error.replace(" ", "_")))
    task = asyncio.create_task(up.run())  # the task finds nothing to send and goes idle
    await asyncio.sleep_ms(200)
    before = m.handshakes
    ctl("idle %s %s" % ("firmware.modem_tls" in sys.modules, m.driver is None))
    for i in range(40, 43):  # the next records load it again and open one new session
        j.append(record.Record(device_id=DEV, route_id="R1", stop_id="S%d" % i, item_id="RR%08d5GB" % i,
                               verdict=record.V_INSIDE))
        up.kick()
    while j.pending():
        await asyncio.sleep_ms(20)
    await asyncio.sleep_ms(200)
    ctl("idle_again %s %d" % ("firmware.modem_tls" in sys.modules, m.handshakes - before))
    task.cancel()
    print("DONE", j.pending(), j.watermark, up.quarantined, m.handshakes, up.sent)

asyncio.run(day())
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    depot_ca, rogue_ca = tls_certs.make_ca("Depot CA"), tls_certs.make_ca("Rogue CA")
    (folder / "depot-ca.pem").write_bytes(depot_ca.pem)
    return {
        "folder": folder,
        "ca": str(folder / "depot-ca.pem"),
        "good": tls_certs.server_files(depot_ca, folder, "good"),
        "expired": tls_certs.server_files(depot_ca, folder, "expired", expired=True),
        "rogue": tls_certs.server_files(rogue_ca, folder, "rogue"),
    }


@pytest.mark.slow  # a dozen TLS handshakes on the VM per dialect: not in make quick
@pytest.mark.parametrize("dialect", ["sim7600", "bg95"])
def test_the_device_refuses_wrong_ca_expired_and_plain_servers_then_uploads_exactly_once(
        tmp_path, pki, dialect):
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol(DEV)
    script = tmp_path / "day.py"
    script.write_text(DAY)
    (tmp_path / "dev").mkdir()
    master, slave = pty.openpty()
    tty.setraw(slave)
    after: dict[str, list[str]] = {}
    with BackgroundServer(store, tls_cert=pki["good"][0], tls_key=pki["good"][1]) as good, \
            BackgroundServer(store, tls_cert=pki["expired"][0], tls_key=pki["expired"][1]) as expired, \
            BackgroundServer(store, tls_cert=pki["rogue"][0], tls_key=pki["rogue"][1]) as rogue, \
            BackgroundServer(store) as plain:
        servers = {"wrong_ca": rogue, "expired": expired, "plain_server": plain, "good": good}
        emu = ModemEmulator(master, master, dialect, None, seed=5).start()
        url = f"https://localhost:{good.port}"  # the name the certificates carry
        proc = subprocess.Popen(
            [_mpy.micropython_exe(), "-X", "heapsize=256K", str(script), DEV, key.hex(), os.ttyname(slave),
             dialect, url, str(tmp_path / "dev"), pki["ca"]],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_mpy.mpy_env())
        assert proc.stdin and proc.stdout
        try:
            while True:
                line = proc.stdout.readline().decode().strip()
                if not line or line.startswith("DONE"):
                    break
                cmd, _, arg = line.partition(" ")
                if cmd == "phase":
                    emu.server_url = servers[arg].url.replace("http:", "https:")  # where localhost goes
                elif cmd in ("idle", "idle_again"):
                    after[cmd] = arg.split()
                elif cmd == "after":
                    words = arg.split()
                    after[words[0]] = words[1:]
                    if words[0] != "good":
                        assert store.count(DEV) == 0 and emu.posts == 0, line
                else:
                    raise AssertionError(f"unexpected line from the device: {line!r}")
                proc.stdin.write(b"ok\n")
                proc.stdin.flush()
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            emu.stop()
            os.close(master)
            os.close(slave)
    assert "Traceback" not in err.decode(), err.decode()
    code = "15" if dialect == "sim7600" else "566"
    for phase in ("wrong_ca", "expired", "plain_server"):
        pending, watermark, error = after[phase]
        assert (pending, watermark) == ("40", "0")
        assert error.startswith("network:_TLS_session_to_localhost_failed_(" + code), error
    refused = emu.tls_refused
    assert len(refused) >= 9
    assert any("unable to get local issuer certificate" in r for r in refused)  # the rogue CA
    assert any("certificate has expired" in r for r in refused)
    assert any("WRONG_VERSION_NUMBER" in r or "wrong version number" in r for r in refused)  # plain HTTP
    done = line.split()
    assert done[:4] == ["DONE", "0", "43", "0"], line
    handshakes, batches = int(done[4]), int(done[5])
    assert batches == 6 and handshakes < batches  # the session carried several batches
    # idle, the uploader gave TLS's RAM back; the next record loaded it again for one new session
    assert after["idle"] == ["False", "True"] and after["idle_again"] == ["False", "1"]
    assert [r.seq for r in store.records(DEV)] == list(range(1, 44))  # exactly once
    assert store.conflicts(DEV) == []


def test_a_plain_http_client_is_refused_by_the_tls_server(tmp_path, pki):
    store = Store(tmp_path / "depot.sqlite3")
    signer = Signer(store.enrol(DEV))
    batch = encode_batch(DEV, signer, 1, 0, [])
    with BackgroundServer(store, tls_cert=pki["good"][0], tls_key=pki["good"][1]) as srv:
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)):
            c.request("POST", f"/v1/devices/{DEV}/records", body=batch)
            c.getresponse()
    assert store.counter(DEV, "upload") == 0  # the request never reached the application


def test_depot_serve_serves_https_with_the_given_certificate(tmp_path, pki):
    import socket
    import ssl

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "--store", str(tmp_path / "d.sqlite3"),
                             "serve", "--port", str(port), "--tls-cert", pki["good"][0], "--tls-key",
                             pki["good"][1]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                c = http.client.HTTPSConnection("localhost", port, timeout=10, context=ctx)
                c.request("GET", "/healthz")
                assert c.getresponse().status == 200
                c.close()
                break
            except (ConnectionRefusedError, ConnectionResetError):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "listening on https://127.0.0.1:%d" % port in err.decode()


def test_depot_flash_pins_the_server_ca_in_the_device_config(tmp_path, pki):
    import json

    from host_tools import cmd_flash, flash
    from host_tools.errors import DepotError

    pem = cmd_flash.read_server_ca("https://depot.example:8443", pki["ca"])
    files = dict(flash.Image("sim", []).with_identity("H-1", bytes(32), "https://depot.example:8443", pem))
    config = json.loads(files["/config/device.json"])
    assert config == {"device_id": "H-1", "key": "00" * 32, "server_url": "https://depot.example:8443"}
    assert files["/config/server_ca.pem"] == Path(pki["ca"]).read_bytes()  # streamed to the modem from here
    plain = dict(flash.Image("sim", []).with_identity("H-1", bytes(32), "http://127.0.0.1:8080"))
    assert "/config/server_ca.pem" not in plain
    with pytest.raises(DepotError, match="needs the CA"):
        cmd_flash.read_server_ca("https://depot.example:8443", "")
    (tmp_path / "two.pem").write_text(pem + pem)
    with pytest.raises(DepotError, match="not one PEM certificate"):
        cmd_flash.read_server_ca("https://depot.example:8443", str(tmp_path / "two.pem"))
    assert cmd_flash.read_server_ca("http://127.0.0.1:8080", "") == ""  # plain: the lab and the simulator


@pytest.mark.slow
def test_a_simulated_day_flashed_with_the_server_ca_uploads_over_tls_exactly_once(tmp_path):
    """The whole path: `depot flash --server-url https://… --server-ca` writes the CA into the
    virtual handheld's config, the app (main.py) hands it to its modem, the modem emulator's real
    TLS reaches `depot serve --tls-cert`, and every record the carrier heard confirmed is stored
    once."""
    import dataclasses

    from sim import day

    short = day.Scenario.load(ROOT / "examples" / "scenarios" / "short.toml")
    scenario = dataclasses.replace(short, tls=True)
    summary = day.run(scenario, tmp_path, progress=False)
    assert summary["failures"] == []
    d = summary["devices"]["HH-0101"]
    assert d["confirmed"] == d["stored"] == 20
    assert d["via_cellular_before_dock"] > 0  # uploaded over TLS during the day, not only docked
