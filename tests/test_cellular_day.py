"""A carrier's day over cellular: the firmware's uploader and modem driver on the real MicroPython
VM, the simulator's modem emulator on a pty, and `depot serve` with its store on loopback.

Coverage drops about half the time, the modem answers with errors, times out, loses, truncates,
corrupts and duplicates responses, the device reboots mid-day (its journal skips a lease of
sequence numbers) and the carrier docks at lunch. Every record ends up in the store exactly once,
the device's watermark reaches the last record, and nothing is sent over the air after the dock
acknowledged it.
"""

from __future__ import annotations

import os
import pty
import sqlite3
import subprocess
import tty

import pytest

from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.upload_server_wire import Batch
from sim import mpy as _mpy
from sim.modem_emulator import ModemEmulator

DEV = "HH-0042"

DAY = r"""
import sys, asyncio, binascii, random
from firmware import journal, modem, uploader, record
DEV, KEY, TTY, DIALECT, URL, ROOT = sys.argv[1:7]
KEY = binascii.unhexlify(KEY)
random.seed(42)
stream = asyncio.StreamReader(open(TTY, "r+b"))

def ctl(cmd):
    print(cmd)
    return sys.stdin.readline().strip()

def boot():
    j = journal.Journal(ROOT + "/journal")
    batch = bytearray(3072)  # as the app builds them: the modem answers into the batch's buffer
    m = modem.Modem(stream, DIALECT, apn="sim", cmd_ms=400, net_ms=3000, resp=batch)
    up = uploader.Uploader(j, m, DEV, KEY, URL, state_dir=ROOT + "/upload", base_ms=1, cap_ms=5,
                           coverage_ms=1, idle_ms=20, buf=batch)
    return j, m, up

def rec(i):
    return record.Record(device_id=DEV, route_id="R1", stop_id="S%d" % i, item_id="RR%08d5GB" % i,
                         verdict=record.V_INSIDE)

FAULTS = ("cme:100", "timeout", "net", "lost_response", "truncate", "duplicate", "corrupt", "http:714",
          "lost_response", "cme:30")

async def day():
    j, m, up = boot()
    written = []
    seen = {}
    for i in range(60):
        written.append(j.append(rec(i)))
        if i % 4 == 0:
            ctl("cover %d" % (random.random() < 0.5))
        if i % 5 == 2:
            ctl("fault " + FAULTS[(i // 5) % len(FAULTS)])
        if i == 20:  # docked at lunch: the dock takes everything held and acknowledges it
            buf = bytearray(256)
            hx = [binascii.hexlify(bytes(r)).decode() for s, r in j.records(j.watermark + 1, buf)]
            j.acknowledge(int(ctl("dock " + " ".join(hx))))
        if i == 35:  # power cut: the journal will skip the rest of its sequence lease
            j.close()
            j, m, up = boot()
        await up.step()
        seen[up.last_error.split(":")[0].replace(" ", "_")] = 1
    ctl("errors " + " ".join(k for k in seen if k))
    ctl("cover 1")
    task = asyncio.create_task(up.run())  # the afternoon: the task runs on its own while scanning
    for i in range(60, 64):
        written.append(j.append(rec(i)))
        up.kick()
        await asyncio.sleep_ms(10)
    for _ in range(1000):
        if j.pending() == 0:
            break
        await asyncio.sleep_ms(10)
    task.cancel()
    print("DONE", j.pending(), j.watermark, up.quarantined, " ".join(str(s) for s in written))

asyncio.run(day())
"""


@pytest.mark.parametrize("dialect", ["sim7600", "bg95"])
def test_a_day_of_records_arrives_exactly_once(tmp_path, dialect):
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol(DEV)
    script = tmp_path / "day.py"
    script.write_text(DAY)
    (tmp_path / "dev").mkdir()
    master, slave = pty.openpty()
    tty.setraw(slave)
    covered = []
    errors: set[str] = set()
    docked: tuple[int, int] | None = None  # (posts before the dock, seq it acknowledged)
    with BackgroundServer(store) as srv:
        emu = ModemEmulator(master, master, dialect, srv.url, seed=3).start()
        proc = subprocess.Popen(
            [_mpy.micropython_exe(), "-X", "heapsize=256K", str(script), DEV, key.hex(), os.ttyname(slave),
             dialect, srv.url, str(tmp_path / "dev")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_mpy.mpy_env())
        assert proc.stdin and proc.stdout
        try:
            while True:
                line = proc.stdout.readline().decode().strip()
                if not line or line.startswith("DONE"):
                    break
                cmd, _, arg = line.partition(" ")
                reply = "ok"
                if cmd == "cover":
                    covered.append(arg == "1")
                    emu.set_coverage(arg == "1")
                elif cmd == "fault":
                    net = "http:" + ("706" if dialect == "sim7600" else "716")
                    emu.inject(net if arg == "net" else arg)
                elif cmd == "errors":
                    errors = set(arg.split())
                elif cmd == "dock":
                    res = store.ingest(DEV, [bytes.fromhex(h) for h in arg.split()], "dock")
                    docked = (len(emu.bodies), res.ack_seq)
                    reply = str(res.ack_seq)
                else:
                    raise AssertionError(f"unexpected line from the device: {line!r}")
                proc.stdin.write(reply.encode() + b"\n")
                proc.stdin.flush()
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            emu.stop()
            os.close(master)
            os.close(slave)
        metrics = srv.metrics.as_dict()
    assert "Traceback" not in err.decode(), err.decode()
    words = line.split()
    assert (words[0], words[1], words[3]) == ("DONE", "0", "0"), line  # none pending, none quarantined
    written = [int(w) for w in words[4:]]
    assert int(words[2]) == written[-1]  # the watermark reached the last record

    # exactly once, with the content the device wrote
    got = store.records(DEV)
    assert [r.seq for r in got] == written
    assert [r.item_id for r in got] == ["RR%08d5GB" % i for i in range(64)]
    assert store.conflicts(DEV) == []
    assert store.ack_seq(DEV) == written[-1]
    skipped = [(written[35] + 1, written[36] - 1)]
    # the reboot's lease gap, declared by the device
    assert written[36] > written[35] + 1 and store.absent(DEV) == skipped

    # both paths delivered, and the day really was rough
    with sqlite3.connect(store.path) as db:
        sources = dict(db.execute("SELECT source, count(*) FROM records GROUP BY source").fetchall())
    assert sources["dock"] > 0 and sources["cellular"] > 0 and sum(sources.values()) == 64
    assert covered.count(False) >= 5 and covered.count(True) >= 5
    # the uploader met every class of failure: no coverage, network, broken context, stuck modem,
    # and answers it could not verify (truncated, corrupted)
    assert {"no_coverage", "network", "context", "modem", "unverified_answer_(HTTP_200)"} <= errors, errors
    assert metrics["records"]["duplicate"] > 0  # lost acknowledgements made the device resend
    assert metrics["rejections"] == {}

    # nothing went over the air after the dock acknowledged it
    assert docked is not None
    later = [Batch(b) for b in emu.bodies[docked[0]:]]
    assert later and all(b.first > docked[1] for b in later)


def test_uploader_acts_on_each_answer(mpy, tmp_path):
    """The uploader against a scripted modem: a bare 200 or another request's acknowledgement moves
    nothing, 413 splits, only a refusal signed for the request quarantines (an unsigned 400, a
    proxy's 407, a 429 or a refusal signed under another key retry the same records, like 401 and
    network trouble), a broken context is re-activated and a stuck modem power-cycled."""
    out = mpy(f"""
        import asyncio
        from firmware import journal, modem, record, upload_wire, uploader
        from firmware.sign import Signer
        from host_tools.upload_server_wire import Batch, encode_ack
        DEV = "HH-1"
        KEY = bytes(range(32))

        class Scripted:
            def __init__(self, answers):
                self.answers = answers
                self.log = []
            async def post(self, url, body):
                b = Batch(bytes(body))
                a = self.answers.pop(0)
                self.log.append("%d-%d" % (b.first, b.last))
                if isinstance(a, Exception):
                    raise a
                if isinstance(a, tuple) and a[0] == "ack":  # ("ack", highest contiguous seq held)
                    return 200, encode_ack(Signer(KEY), DEV, b.counter, a[1])
                if isinstance(a, tuple):  # ("refused" or "forged", HTTP status): a refusal, signed
                    by = Signer(KEY if a[0] == "refused" else bytes(32))
                    return a[1], encode_ack(by, DEV, b.counter, 0, status=upload_wire.ACK_REFUSED)
                if a == "stale-ack":  # a genuine acknowledgement, but for an earlier request
                    return 200, encode_ack(Signer(KEY), DEV, b.counter - 1, b.last)
                return a, b'{{"error": "x"}}'
            async def context(self, reactivate=False):
                self.log.append("ctx")
            async def power_cycle(self):
                self.log.append("cycle")

        j = journal.Journal({str(tmp_path / "j")!r})
        for i in range(12):
            j.append(record.Record(device_id=DEV, item_id="I%d" % i))
        m = Scripted([200, "stale-ack", 413, ("ack", 2), modem.Transient("x"), 401, ("ack", 6), 400, 407,
                      429, ("forged", 400), ("refused", 400), modem.ContextBroken("dns"),
                      modem.ModemState("hung"), modem.NoCoverage("gap"), ("ack", 6)])
        up = uploader.Uploader(j, m, DEV, KEY, "http://h", state_dir={str(tmp_path / "u")!r}, batch=4)
        for _ in range(16):
            asyncio.run(up.step())
            print(j.watermark, up.last_error)
        print(asyncio.run(up.step()), len(m.log))      # 7-10 wait for the dock: nothing to send
        j.append(record.Record(device_id=DEV, item_id="big"))
        m.answers += [413, ("refused", 413)]           # one record, still too large: unsigned, signed
        asyncio.run(up.step())
        asyncio.run(up.step())
        print(" ".join(m.log))
        print(open({str(tmp_path / "u" / "quarantine")!r}).read().replace("\\n", ";"), j.pending())
    """)
    lines = out.strip().split("\n")
    assert [ln.split(" ", 1)[0] for ln in lines[:16]] == [
        "0", "0", "0", "2", "2", "2", "6", "6", "6", "6", "6", "6", "6", "6", "6", "6"]
    assert [ln.split(" ", 1)[1] if " " in ln else "" for ln in lines[:16]] == [
        "unverified answer (HTTP 200)", "unverified answer (HTTP 200)", "unverified answer (HTTP 200)", "",
        "network: x", "signature refused", "", "server answered 400", "server answered 407",
        "server answered 429", "server answered 400", "batch 7-10 refused (HTTP 400)", "context: dns",
        "modem: hung", "no coverage", ""]
    assert lines[16] == "-1 18"
    assert lines[17] == ("1-4 1-4 1-4 1-2 3-6 3-6 3-6 7-10 7-10 7-10 7-10 7-10 11-12 ctx 11-12 cycle 11-12 "
                         "11-12 13-13 13-13")
    assert lines[18] == "7 10 400;13 13 413; 7"  # held for the dock: 7-10, 11-12 (above them), 13
