"""The virtual handheld's own figures: its emulated dock link against the 115200-baud limit, mpremote
`fs cp` over a console paced like that link (the reference the dock protocol is measured against),
boot time to the REPL, and the heap the boot shim itself takes from the firmware's budget."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

from sim.client import Device

LINK = 11520.0  # 115200 8N1, bytes/s
MPREMOTE = str(Path(sys.executable).parent / "mpremote")


def _dock_rate(dev: Device, n: int = 46080) -> float:
    rx = os.open(dev.info["uart"]["dock"], os.O_RDWR | os.O_NOCTTY)
    tx = os.open(dev.dock, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(rx)
    tty.setraw(tx)
    data = os.urandom(n)

    def writer() -> None:
        for i in range(0, n, 1024):
            os.write(tx, data[i:i + 1024])

    try:
        t0 = time.monotonic()
        threading.Thread(target=writer, daemon=True).start()
        got = 0
        while got < n:
            got += len(os.read(rx, 4096))
        return n / (time.monotonic() - t0)
    finally:
        os.close(rx)
        os.close(tx)


def _mpremote(dev: Device, *args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([MPREMOTE, "connect", dev.console, *args], check=True, capture_output=True, timeout=120)
    return time.monotonic() - t0


def run(report) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        t0 = time.monotonic()
        with Device.start(Path(tmp) / "a.img", workdir=Path(tmp) / "a") as dev:
            dev.wait_idle()
            report("sim_boot_blank_to_repl_s", time.monotonic() - t0, "s", "process start, mkfs, mount, REPL")
            rate = _dock_rate(dev)
            report("sim_dock_link_fraction", rate / LINK, "", f"{rate:.0f} B/s through the dock pump")
            out = subprocess.run([MPREMOTE, "connect", dev.console, "exec",
                                  "import gc, vfs; gc.collect(); print(gc.mem_alloc() - (len(vfs.rom_ioctl"
                                  "(2, 0)) if hasattr(vfs, 'rom_ioctl') else 0))"],  # not the ROMFS partition
                                 capture_output=True, text=True, timeout=60).stdout
            report("sim_shim_heap_bytes", float(out.split()[-1]), "B",
                   "heap used at the idle REPL: shim, flash emulation, littlefs mount (not the ROMFS "
                   "partition, which stands for memory-mapped flash)")
            soft = _mpremote(dev, "exec", "pass")
            report("sim_mpremote_soft_reset_exec_s", soft, "s", "mpremote exec with its auto soft reset")
        blob = Path(tmp) / "blob.bin"
        blob.write_bytes(os.urandom(16384))
        with Device.start(Path(tmp) / "b.img", workdir=Path(tmp) / "b", console_baud=115200) as dev:
            dev.wait_idle()
            dt = _mpremote(dev, "fs", "cp", str(blob), ":blob.bin")
            report("sim_mpremote_cp_link_fraction", 16384 / dt / LINK, "",
                   f"{16384 / dt:.0f} B/s: mpremote fs cp of 16 KiB over a console paced at 115200 baud")
