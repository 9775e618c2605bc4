"""Test harness for the dock link: the real device session on `micropython` behind a pty, the host
on another pty, and a relay between the two that can throttle to a baud rate, corrupt bytes and
cut the line. Used by tests/test_dock_sync.py and tests/bench/bench_dock.py."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import subprocess
import threading
import time
import tty
from pathlib import Path

from sim import mpy

DEVICE_SCRIPT = r"""
import sys, asyncio, json, binascii, os, gc
from firmware import journal, record, dock
root, port, dev, keyhex = sys.argv[1:5]
n, seg, after, idle = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
modem_port = sys.argv[9]  # an uploader on this modem line lends the session its batch buffer
for d in (root + "/route",):
    try:
        os.mkdir(d)
    except OSError:
        pass
def fill(j, n):
    i = 0
    while i < n:
        j.append(record.Record(device_id=dev, route_id="R1", stop_id="S%d" % (i % 50),
                               item_id="RR%09dGB" % (j.next_seq), verdict=record.V_INSIDE,
                               lat_e6=52000000 + i, lon_e6=13000000 - i, device_time=1700000000 + i))
        i += 1
j = journal.Journal(root + "/jnl", seg_max=seg)
fill(j, n)
if after:
    j.close()  # a reboot: the new journal skips the rest of the seq lease it had taken
    j = journal.Journal(root + "/jnl", seg_max=seg)
    fill(j, after)
ticks = [0]
def ev(what, value):
    print(json.dumps([what, value, ticks[0]]))
async def carrier(d, up):
    wire = False
    while True:  # stands for the carrier's other tasks: it must keep running while docked
        ticks[0] += 1
        if (d.session is not None) != wire:  # the session (its modules, its buffers) made or let go
            wire = not wire
            gc.collect()
            ev("wire", [wire, gc.mem_free()])
            if wire and up is not None:  # whose buffers, and the uploader's task from now on
                w = d.session
                ev("borrowed", [up.lent, isinstance(w.dec.buf, memoryview), len(w.dec.buf) + len(w.enc.out)])
                if not up.started:
                    up.started = True
                    asyncio.create_task(up.run())
            elif up is not None:  # undocked: did it post meanwhile? A new record for it now
                ev("posted_while_docked", up.posted_while_docked)
                fill(j, 1)
                up.kick()
        if wire and up is not None and up.posting:
            up.posted_while_docked = True
        await asyncio.sleep_ms(20)
def save_key(k):
    with open(root + "/key.hex", "w") as f:
        f.write(binascii.hexlify(k).decode())
async def main():
    s = open(port, "r+b")
    up = None
    if modem_port:
        from firmware import modem, uploader
        batch = bytearray(3072)  # as the app's: the modem's answers land in it too
        m = modem.Modem(open(modem_port, "r+b"), "sim7600", resp=batch)
        up = uploader.Uploader(j, m, dev, binascii.unhexlify(keyhex), "http://127.0.0.1:1",
                               state_dir=root + "/upload", buf=batch)
        up.started = up.posted_while_docked = False
    d = dock.Dock(s, j, dev, binascii.unhexlify(keyhex), route_dir=root + "/route", status=ev,
                  firmware="test-1", board="sim", battery=lambda: 77, set_time=lambda t: ev("clock", t),
                  save_key=save_key, idle_ms=idle, lender=up)
    asyncio.create_task(carrier(d, up))
    print(json.dumps(["ready", j.next_seq - 1, 0]))
    await d.run()
asyncio.run(main())
"""

JOURNAL_STATE = r"""
import sys
from firmware import journal
j = journal.Journal(sys.argv[1] + "/jnl")
buf = bytearray(400)
seqs = [s for s, _ in j.records(1, buf)]
print(j.watermark, j.pending(), len(seqs), j.next_seq)
"""


def _pty() -> tuple[int, int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave)  # before anyone writes: no echo, no CR/LF translation
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class Relay(threading.Thread):
    """Moves bytes between the device's pty and the host's, like a cable and a USB bridge.

    rate: bytes/s per direction (None: as fast as the ptys go); corrupt: probability that a byte
    has one bit flipped; cut: drop everything (unplugged)."""

    def __init__(self, rate: float | None = None, corrupt: float = 0.0, seed: int = 1):
        super().__init__(daemon=True)
        self.dev_master, self._dev_slave, self.dev_path = _pty()
        self.host_master, self._host_slave, self.host_path = _pty()
        self.rate = rate
        self.corrupt = corrupt
        self.cut = False
        self.rng = random.Random(seed)
        self.to_host = 0  # bytes delivered device -> host
        self.flipped = 0
        self._halt = threading.Event()

    def _mangle(self, data: bytes) -> bytes:
        if not self.corrupt:
            return data
        b = bytearray(data)
        for i in range(len(b)):
            if self.rng.random() < self.corrupt:
                b[i] ^= 1 << self.rng.randrange(8)
                self.flipped += 1
        return bytes(b)

    def run(self) -> None:
        out = {self.dev_master: bytearray(), self.host_master: bytearray()}
        other = {self.dev_master: self.host_master, self.host_master: self.dev_master}
        credit = {self.dev_master: 0.0, self.host_master: 0.0}
        last = time.monotonic()
        while not self._halt.is_set():
            r, _, _ = select.select([self.dev_master, self.host_master], [], [], 0.002)
            for fd in r:
                try:
                    data = os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    continue
                if not self.cut:
                    out[other[fd]] += self._mangle(data)
            now = time.monotonic()
            dt, last = now - last, now
            for fd, buf in out.items():
                if self.cut:
                    buf.clear()
                    continue
                if not buf:
                    credit[fd] = 0.0
                    continue
                if self.rate is None:
                    n = len(buf)
                else:
                    credit[fd] = min(credit[fd] + self.rate * dt, 256.0)
                    n = min(len(buf), int(credit[fd]))
                if n <= 0:
                    continue
                try:
                    w = os.write(fd, bytes(buf[:n]))
                except (BlockingIOError, OSError):
                    continue
                del buf[:w]
                if self.rate is not None:
                    credit[fd] -= w
                if fd == self.host_master:
                    self.to_host += w

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=2)
        for fd in (self.dev_master, self._dev_slave, self.host_master, self._host_slave):
            try:
                os.close(fd)
            except OSError:
                pass


class Device:
    """The firmware's dock session on the real `micropython`, journal in a temp dir (VfsPosix)."""

    def __init__(self, root: Path, port: str, device_id: str, key: bytes, records: int = 0,
                 seg_max: int = 1024, heap: str = "256K", after_reboot: int = 0, idle_ms: int = 10000,
                 modem_port: str = ""):
        self.root = root
        self.log: list[list] = []
        script = root / "device.py"
        script.write_text(DEVICE_SCRIPT)
        self.proc = subprocess.Popen(
            [mpy.micropython_exe(), "-X", f"heapsize={heap}", str(script), str(root), port, device_id,
             key.hex(), str(records), str(seg_max), str(after_reboot), str(idle_ms), modem_port],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=mpy.mpy_env())
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 60
        while not any(e[0] == "ready" for e in self.events()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("device did not start:\n" + "".join(self._lines))
            time.sleep(0.02)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.append(raw.decode(errors="replace"))

    def events(self) -> list[list]:
        out = []
        for line in list(self._lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def output(self) -> str:
        return "".join(self._lines)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=2)
        out = self.output()
        if "Traceback" in out:
            raise AssertionError("device raised:\n" + out)
        return out

    def journal_state(self) -> tuple[int, int, int, int]:
        """(watermark, pending, records still held, next_seq) read on the VM after stop()."""
        script = self.root / "state.py"
        script.write_text(JOURNAL_STATE)
        out = mpy.run(script=script, args=(str(self.root),))
        w, p, held, nxt = (int(x) for x in out.split())
        return w, p, held, nxt
