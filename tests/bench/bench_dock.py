"""Dock sync throughput at 115200 baud (11,520 bytes/s): the firmware's dock session on the real
`micropython` behind a pty, a relay throttled to the link rate, `sync_device` on the host.

dock_sync_link_fraction: record payload bytes per second for 10,000 records, over 11,520, with the
dock authentication on (HELLO/AUTH, a 16-byte session MAC per record frame; issue 13 asks >= 0.90).
dock_sync_vs_mpremote: that rate over the rate of `mpremote fs cp` moving a file to a MicroPython
REPL on the same throttled relay (a 64 KiB file: mpremote's rate does not depend on the size, and
the full 10,000-record volume would take minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.store import Store
from host_tools.sync import sync_device
from sim import mpy
from tests.dockharness import Device, Relay

LINK = 11520.0
RECORDS = 10_000
MPREMOTE_BYTES = 64 * 1024


def dock_rate(tmp: Path) -> tuple[float, int, float]:
    store = Store(tmp / "depot.sqlite3")
    key = store.enrol("BENCH1")
    relay = Relay(rate=LINK)
    relay.start()
    dev = Device(tmp, relay.dev_path, "BENCH1", key, records=RECORDS, seg_max=4096)
    try:
        rep = sync_device(relay.host_path, store)
    finally:
        relay.close()
        dev.stop()
    if not rep.ok or rep.stored != RECORDS:
        raise RuntimeError(f"bench sync failed: {rep.error} ({rep.stored} stored)")
    return rep.payload_bytes / rep.seconds, rep.payload_bytes, rep.seconds


def mpremote_rate(tmp: Path) -> float:
    relay = Relay(rate=LINK)
    relay.start()
    slave = os.open(relay.dev_path, os.O_RDWR | os.O_NOCTTY)
    repl = subprocess.Popen([mpy.micropython_exe(), "-X", "heapsize=256K"], stdin=slave, stdout=slave,
                            stderr=slave, cwd=tmp, env=mpy.mpy_env())
    src = tmp / "blob.bin"
    src.write_bytes(os.urandom(MPREMOTE_BYTES))
    exe = Path(sys.executable).parent / "mpremote"
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        subprocess.run([str(exe), "connect", relay.host_path, "resume", "fs", "cp", str(src), ":copy.bin"],
                       check=True, capture_output=True, timeout=300)
        dt = time.monotonic() - t0
        if (tmp / "copy.bin").read_bytes() != src.read_bytes():
            raise RuntimeError("mpremote copy differs")
    finally:
        repl.kill()
        repl.wait()
        os.close(slave)
        relay.close()
    return MPREMOTE_BYTES / dt


def run(report) -> None:
    with tempfile.TemporaryDirectory() as a:
        rate, nbytes, secs = dock_rate(Path(a))
    report("dock_sync_link_fraction", rate / LINK, "",
           f"{rate:.0f} B/s payload, {RECORDS} records ({nbytes} B) in {secs:.1f} s over a pty "
           f"throttled to {LINK:.0f} B/s")
    report("dock_sync_payload_bytes_per_s", rate, "B/s", "")
    try:
        with tempfile.TemporaryDirectory() as b:
            mp = mpremote_rate(Path(b))
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        report("dock_sync_vs_mpremote", float("nan"), "", f"mpremote run failed: {exc}")
        return
    report("dock_sync_vs_mpremote", rate / mp, "x",
           f"mpremote fs cp {MPREMOTE_BYTES} B at {mp:.0f} B/s ({mp / LINK:.0%} of link) to a "
           "micropython REPL on the same throttled pty")
