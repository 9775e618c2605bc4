"""Depot flash: 4 virtual handhelds flashed in parallel versus one after another (blank images)."""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from host_tools import flash

N = 4


def _flash(devices, image, keys, parallel: bool) -> float:
    targets = [(d.console, f"B-{i}") for i, d in enumerate(devices)]
    t0 = time.monotonic()
    if parallel:
        results = flash.flash_many(targets, "sim", keys.get)
    else:
        results = [flash.flash_one(p, d, image, keys[d]) for p, d in targets]
    dt = time.monotonic() - t0
    bad = [r for r in results if not r.ok or r.skipped]
    if bad:
        raise RuntimeError(f"flash failed: {[(r.device_id, r.status, r.message) for r in bad]}")
    return dt


def run(report) -> None:
    from sim.client import Device

    image = flash.build("sim")  # as `depot flash` builds it: a ROMFS image on the sim board's partition
    keys = {f"B-{i}": bytes([i]) * 32 for i in range(N)}
    rom = image.romfs or b""
    size = sum(len(d) for _, d in image.with_identity("B-0", keys["B-0"], rom=bool(rom))) + len(rom)
    times = {}
    for parallel in (False, True):
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            devices = [stack.enter_context(Device.start(Path(tmp) / f"{i}.img")) for i in range(N)]
            times[parallel] = _flash(devices, image, keys, parallel)
    report("flash_4_sequential_s", times[False], "s", f"{N} blank virtual devices, {size} bytes each "
           f"({len(rom)} of them the ROMFS image)")
    report("flash_4_parallel_s", times[True], "s", "one thread per device")
    report("flash_parallel_speedup", times[False] / times[True], "x", "sequential / parallel")
    report("flash_bytes_per_s_sequential", size * N / times[False], "B/s", "raw-paste, unthrottled pty")
