"""What a device gets (firmware/manifest.py, as `depot flash` builds it) and what the hardware
boundary costs in RAM once imported: the figures issue 16's "what ships" is judged by."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from host_tools import flash
from sim import mpy

_IMPORT_COST = """
import gc
import firmware
gc.collect()
a = gc.mem_alloc()
from firmware import hal
gc.collect()
print(gc.mem_alloc() - a)
"""


def run(report) -> None:
    image = flash.build("sim")
    lib = {p: d for p, d in image.files if p.startswith("/lib/")}
    with tempfile.TemporaryDirectory() as tmp:
        for path, data in lib.items():
            dst = Path(tmp) / path[5:]
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
        env = dict(os.environ, MICROPYPATH=tmp)  # the package only: no simulator module on the path
        out = subprocess.run([mpy.micropython_exe(), "-X", "heapsize=256K", "-c", _IMPORT_COST], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout
    report("device_lib_bytes", sum(len(d) for d in lib.values()), "B",
           f"{len(lib)} files in /lib/firmware, as firmware/manifest.py lists them (.mpy) + board.mpy")
    report("hal_mpy_bytes", len(lib["/lib/firmware/hal.mpy"]), "B", "the hardware boundary, compiled")
    report("hal_import_heap_bytes", int(out.split()[-1]), "B",
           "live heap the hal takes once imported from .mpy (64-bit unix port)")
