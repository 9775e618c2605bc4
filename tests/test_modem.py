"""The firmware's modem driver (firmware/modem.py) on the real MicroPython VM, talking over a pty to
the simulator's AT-command emulator (sim/modem_emulator.py) in both dialects, which forwards POSTs to a
small HTTP server on loopback. Each failure the emulator injects comes back as its class."""

from __future__ import annotations

import hashlib
import http.server
import os
import pty
import subprocess
import threading
import tty

import pytest

from sim import mpy as _mpy
from sim.modem_emulator import ModemEmulator

SCRIPT = r"""
import sys, asyncio, binascii
from firmware import modem
f = open(sys.argv[1], "r+b")
m = modem.Modem(asyncio.StreamReader(f), sys.argv[2], apn="sim", cmd_ms=400, net_ms=3000)
URL = sys.argv[3]

async def act(w):
    if w[0] == "post":
        body = bytes((i * 7) & 255 for i in range(int(w[2])))
        st, data = await m.post(URL + w[1], body)
        return "%d %s" % (st, binascii.hexlify(data).decode())
    if w[0] == "reg":
        return str(await m.registered())
    if w[0] == "up":
        await m.power_up()
        return "up"
    if w[0] == "cycle":
        await m.power_cycle()
        return "cycled"
    if w[0] == "ctx":
        await m.context(True)
        return "ctx"

while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        r = asyncio.run(act(line.split()))
    except modem.ModemError as e:
        r = "%s %d" % (type(e).__name__, e.code)
    print(r)
"""


def body(n: int) -> bytes:
    return bytes((i * 7) & 255 for i in range(n))


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers a POST with the SHA-256 of what it received; /status/<n> answers with status n."""

    received: list[bytes] = []

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        Echo.received.append(data)
        status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        out = hashlib.sha256(data).digest()
        self.send_response(status)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_url():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


class Device:
    """The driver running on micropython, one action per line; the emulator on the pty's host end."""

    def __init__(self, dialect: str, url: str, tmp_path):
        master, slave = pty.openpty()
        tty.setraw(slave)
        self.master, self.slave = master, slave
        self.emu = ModemEmulator(master, master, dialect, url, seed=7).start()
        script = tmp_path / "modem_driver.py"
        script.write_text(SCRIPT)
        self.proc = subprocess.Popen(
            [_mpy.micropython_exe(), "-X", "heapsize=256K", str(script), os.ttyname(slave), dialect, url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_mpy.mpy_env())

    def __call__(self, action: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(action.encode() + b"\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().decode().strip()

    def close(self) -> str:
        _, err = self.proc.communicate(timeout=20)
        self.emu.stop()
        os.close(self.master)
        os.close(self.slave)
        return err.decode()


@pytest.fixture(params=["sim7600", "bg95"])
def device(request, http_url, tmp_path):
    d = Device(request.param, http_url, tmp_path)
    yield d
    err = d.close()
    assert "Traceback" not in err, err


def test_post_round_trip(device):
    Echo.received.clear()
    assert device("up") == "up"
    assert device("reg") == "True"
    out = device("post /v1/x 700")
    assert out == "200 " + hashlib.sha256(body(700)).hexdigest()
    assert Echo.received == [body(700)]
    assert device("post /status/413 40") == "413 " + hashlib.sha256(body(40)).hexdigest()
    assert device.emu.posts == 2 and device.emu.air_bytes > 740


def test_cme_error_is_classified(device):
    assert device("up") == "up"
    device.emu.inject("cme:13")  # SIM failure, answered to the registration query
    assert device("post /v1/x 10") == "SimProvisioning 13"
    device.emu.inject("cme:30")
    assert device("post /v1/x 10") == "NoCoverage 30"
    device.emu.inject("cme:100")
    assert device("post /v1/x 10") == "Transient 100"
    assert device("post /v1/x 10").startswith("200 ")  # and the next one goes through


def test_no_answer_is_modem_state_and_a_power_cycle_recovers(device):
    assert device("up") == "up"
    device.emu.inject("timeout")
    assert device("post /v1/x 10") == "ModemState 0"
    assert device("cycle") == "cycled"
    assert device("post /v1/x 10").startswith("200 ")


def test_no_coverage_then_context_rebuilt(device):
    Echo.received.clear()
    assert device("up") == "up"
    assert device("post /v1/x 10").startswith("200 ")
    device.emu.set_coverage(False)
    assert device("reg") == "False"
    assert device("post /v1/x 10") == "NoCoverage 0"
    device.emu.set_coverage(True)  # the context went down with the radio: the driver brings it up
    assert device("post /v1/x 10").startswith("200 ")
    assert len(Echo.received) == 2


def test_network_failures_during_http(device):
    Echo.received.clear()
    assert device("up") == "up"
    code = "706" if device.emu.dialect == "sim7600" else "716"
    device.emu.inject("http:" + code)
    assert device("post /v1/x 10") == "Transient " + code
    device.emu.inject("http:714")  # DNS
    assert device("post /v1/x 10") == "ContextBroken 714"
    assert device("ctx") == "ctx"
    device.emu.inject("lost_response")  # the server got it; the device hears a network error
    assert device("post /v1/x 10") == "Transient " + code
    assert len(Echo.received) == 1
    device.emu.inject("truncate")
    assert device("post /v1/x 10") == "Transient 0"
    device.emu.inject("duplicate")
    assert device("post /v1/x 10") == "200 " + hashlib.sha256(body(10)).hexdigest()
    assert device("post /v1/x 12") == "200 " + hashlib.sha256(body(12)).hexdigest()


def test_line_assembly_allocates_nothing(mpy):
    out = mpy("""
        import micropython
        from firmware import modem
        m = modem.Modem(None)
        line = b"+HTTPACTION: 1,200,86\\r\\n"
        res = [0, 0, 0]
        def run():
            m.n = 0
            i = 0
            while i < len(line) and not m.feed(line[i]):
                i += 1
            res[0] = m.starts(b"+HTTPACTION:")
            res[1] = m.int_at(1, 12)
            res[2] = m.int_at(2, 12)
        run()
        micropython.heap_lock()
        try:
            run()
        finally:
            micropython.heap_unlock()
        print(res)
    """)
    assert out.strip() == "[True, 200, 86]"


def test_attach_for_the_virtual_handheld(mpy, http_url, tmp_path):
    """sim/device.py's hook: the board's dialect, POSTs sent to the depot's server whatever host the
    device names, control messages; the driver takes the raw UART file hal.open_uart gives it."""
    from boards import board_sim
    from sim.modem_emulator import attach

    master, slave = pty.openpty()
    tty.setraw(slave)
    emu = attach(master, board_sim.BOARD, str(tmp_path), seed=1, server_url=http_url)
    try:
        Echo.received.clear()
        out = mpy(f"""
            import asyncio, binascii
            from firmware import modem
            m = modem.Modem(open({os.ttyname(slave)!r}, "r+b"), "sim7600", cmd_ms=400, net_ms=3000)
            st, data = asyncio.run(m.post("http://depot.example:8080/v1/devices/HH-1/records", b"abc"))
            print(st, binascii.hexlify(data).decode())
        """)
        assert out.split() == ["200", hashlib.sha256(b"abc").hexdigest()]
        assert Echo.received == [b"abc"]
        stats = emu.control({"action": "coverage", "on": False})
        assert (stats["dialect"], stats["coverage"], stats["posts"]) == ("sim7600", False, 1)
        assert emu.control({"action": "inject", "fault": "timeout"})["faults_pending"] == ["timeout"]
    finally:
        emu.close()
        os.close(master)
        os.close(slave)
