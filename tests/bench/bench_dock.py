"""Dock sync throughput: the firmware's dock session on the real `micropython` behind a pty, a relay
standing for the cable, `sync_device` on the host. Two links: a 115200 baud UART (11,520 bytes/s)
and USB CDC (about 1 MB/s; here the relay unpaced, as fast as the ptys go).

dock_sync_link_fraction: record payload bytes per second for 10,000 records at 115200, over 11,520,
with the dock authentication on (HELLO/AUTH, a 16-byte session MAC per record frame; issue 13 asks
>= 0.90).
dock_sync_vs_mpremote: that rate over the rate of `mpremote fs cp` moving a file to a MicroPython
REPL on the same throttled relay (a 64 KiB file: mpremote's rate does not depend on the size, and
the full 10,000-record volume would take minutes).
dock_sync_unpaced_records_per_s: 10,000 records over the unpaced relay, hello to the last reply
(authentication, the store's commits, the ACK and the device's reclaiming included).
dock_sync_unpaced_vs_mpremote: the sync's payload rate over that of `mpremote fs cp` copying the
same bytes (the records as the store holds them) to a MicroPython REPL on the same pty, same run.
dock_sync_device_us_per_record: CPU time of the device's process over the unpaced sync, per record
(the unix port on this machine: a board's MCU is tens of times slower, so this is what decides
whether it keeps up with USB).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.store import Store
from host_tools.sync import SyncReport, sync_device
from sim import mpy
from tests.dockharness import Device, Relay

LINK = 11520.0
RECORDS = 10_000
MPREMOTE_BYTES = 64 * 1024


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sync(tmp: Path, relay: Relay, store: Store) -> tuple[SyncReport, float]:
    """Sync RECORDS records from a fresh device on `relay`; (report, device CPU seconds)."""
    key = store.enrol("BENCH1")
    dev = Device(tmp, relay.dev_path, "BENCH1", key, records=RECORDS, seg_max=4096)
    try:
        cpu0 = _cpu_s(dev.proc.pid)
        rep = sync_device(relay.host_path, store)
        cpu = _cpu_s(dev.proc.pid) - cpu0
    finally:
        dev.stop()
    if not rep.ok or rep.stored != RECORDS:
        raise RuntimeError(f"bench sync failed: {rep.error} ({rep.stored} stored)")
    return rep, cpu


def dock_rate(tmp: Path) -> tuple[float, int, float]:
    relay = Relay(rate=LINK)
    relay.start()
    try:
        rep, _ = _sync(tmp, relay, Store(tmp / "depot.sqlite3"))
    finally:
        relay.close()
    return rep.payload_bytes / rep.seconds, rep.payload_bytes, rep.seconds


def mpremote_rate(tmp: Path, relay: Relay, data: bytes) -> float:
    """Bytes/s of `mpremote fs cp` writing `data` to a micropython REPL on the relay's device pty."""
    slave = os.open(relay.dev_path, os.O_RDWR | os.O_NOCTTY)
    repl = subprocess.Popen([mpy.micropython_exe(), "-X", "heapsize=256K"], stdin=slave, stdout=slave,
                            stderr=slave, cwd=tmp, env=mpy.mpy_env())
    src = tmp / "blob.bin"
    src.write_bytes(data)
    exe = Path(sys.executable).parent / "mpremote"
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        subprocess.run([str(exe), "connect", relay.host_path, "resume", "fs", "cp", str(src), ":copy.bin"],
                       check=True, capture_output=True, timeout=300)
        dt = time.monotonic() - t0
        if (tmp / "copy.bin").read_bytes() != data:
            raise RuntimeError("mpremote copy differs")
    finally:
        repl.kill()
        repl.wait()
        os.close(slave)
    return len(data) / dt


def paced_mpremote_rate(tmp: Path) -> float:
    relay = Relay(rate=LINK)
    relay.start()
    try:
        return mpremote_rate(tmp, relay, os.urandom(MPREMOTE_BYTES))
    finally:
        relay.close()


def unpaced(report) -> None:
    """The USB figures: one unpaced relay carries the dock sync, then mpremote with the same bytes."""
    with tempfile.TemporaryDirectory() as a:
        tmp = Path(a)
        relay = Relay(rate=None)
        relay.start()
        try:
            store = Store(tmp / "depot.sqlite3")
            rep, cpu = _sync(tmp, relay, store)
            kbps = rep.payload_bytes / rep.seconds / 1e3
            report("dock_sync_unpaced_records_per_s", rep.stored / rep.seconds, "rec/s",
                   f"{RECORDS} records ({rep.payload_bytes} B, {kbps:.0f} kB/s payload) in "
                   f"{rep.seconds:.2f} s over an unpaced pty")
            report("dock_sync_device_us_per_record", cpu * 1e6 / rep.stored, "us",
                   f"device process CPU {cpu:.2f} s over the sync (unix port)")
            data = b"".join(store.payloads("BENCH1"))
            mp_dir = tmp / "mpremote"
            mp_dir.mkdir()
            try:
                mp = mpremote_rate(mp_dir, relay, data)
            except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
                report("dock_sync_unpaced_vs_mpremote", float("nan"), "", f"mpremote run failed: {exc}")
                return
        finally:
            relay.close()
    rate = rep.payload_bytes / rep.seconds
    report("dock_sync_unpaced_vs_mpremote", rate / mp, "x",
           f"mpremote fs cp of the same {len(data)} B at {mp / 1e3:.0f} kB/s on the same unpaced pty")


def run(report) -> None:
    with tempfile.TemporaryDirectory() as a:
        rate, nbytes, secs = dock_rate(Path(a))
    report("dock_sync_link_fraction", rate / LINK, "",
           f"{rate:.0f} B/s payload, {RECORDS} records ({nbytes} B) in {secs:.1f} s over a pty "
           f"throttled to {LINK:.0f} B/s")
    report("dock_sync_payload_bytes_per_s", rate, "B/s", "")
    try:
        with tempfile.TemporaryDirectory() as b:
            mp = paced_mpremote_rate(Path(b))
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        report("dock_sync_vs_mpremote", float("nan"), "", f"mpremote run failed: {exc}")
    else:
        report("dock_sync_vs_mpremote", rate / mp, "x",
               f"mpremote fs cp {MPREMOTE_BYTES} B at {mp:.0f} B/s ({mp / LINK:.0%} of link) to a "
               "micropython REPL on the same throttled pty")
    unpaced(report)


if __name__ == "__main__":  # this area alone: python -m tests.bench.bench_dock [unpaced]
    def _print(name: str, value: float, unit: str = "", note: str = "") -> None:
        print(f"  {name:<34} {value:>14.4g} {unit:<10} {note}", flush=True)

    if sys.argv[1:] == ["unpaced"]:
        unpaced(_print)
    else:
        run(_print)
