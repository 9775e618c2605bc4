"""The application's heap over a day with a big route, on the real VM (sim/vm/appday.py):
`peak_heap_bytes_1000_stops` in `make bench`, and the test that the app fits the board's heap."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from mpremote import romfs

from host_tools import flash, route_compile
from host_tools.flash_image import mpy_cross
from sim import certs, gnss, mpy, town

VM = Path(__file__).resolve().parent / "vm"
KEY = bytes(range(64, 96))
_ALLOC_SLACK = 64  # the image's block rounding and its bytearray header


def _bytes(heap: str) -> int:
    return int(heap[:-1]) * 1024 if heap[-1] in "Kk" else int(heap)


def _plan(fc: dict[str, Any], walk: bool = False) -> bytes:
    """One fix at each door (walk: every second of the walk from the last door to it, as a
    receiver sends them), then every parcel of the stop scanned (S10 as Code 128, SSCC as GS1)."""
    out = []
    last = None
    for t, f in enumerate(fc["features"]):
        here = town.door(f)
        legs = [last, here] if walk and last is not None else [here]
        seconds = gnss.Walk(legs, seed=t, duration_s=None if len(legs) > 1 else 1,
                            conditions=gnss.Conditions(noise_m=0.0))
        for _, sentences in (seconds if len(legs) > 1 else [next(iter(seconds))]):
            out += [b"F " + s.encode() for s in sentences]
        last = here
        for item in f["properties"]["items"]:
            out.append(b"S " + ((b"]C100" if item.isdigit() else b"]C0") + item.encode()))
    return b"\n".join(out) + b"\n"


def _romfs(lib: Path) -> bytes:
    """The modules in `lib` as a ROMFS image, built by mpremote as `mpremote romfs deploy` would."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree it packs
        return bytes(romfs.make_romfs(str(lib), mpy_cross=False))


def flash_virtual_handheld(workdir: Path, board: str = "sim") -> Path:
    """Flash a blank virtual handheld with `depot flash --romfs` (real mpremote over its console
    pty) and stop it; the ROMFS partition file it was left with."""
    from host_tools import cli
    from host_tools.store import Store
    from sim.client import Device

    store = workdir / "depot.sqlite3"
    Store(store).enrol("HH-HEAP")
    with Device.start(workdir / "hh.img", board=board) as dev:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["--store", str(store), "flash", "--port", dev.console, "--device-id", "HH-HEAP",
                           "--board", board, "--romfs"])
        if rc != 0:
            raise mpy.MicroPythonError(f"depot flash --romfs failed on the virtual handheld ({rc})")
        partition = Path(dev.info["romfs"])
    return partition


def _harness(d: Path, partition: Path) -> Path:
    """The day's driver and the simulator's hardware as their own ROMFS image (sim/vm/flashedday.py).
    Zeros after the image (VfsRom reads only the image's own length) bring it and the partition to
    whole _POOL_STEPs of the GC, so the heap above them can be exactly the board's (_heap_above)."""
    src = d / "harness"
    src.mkdir()
    for mod in ("flashdev", "simhw", "appdayrun"):
        subprocess.run([mpy_cross(), "-o", str(src / f"{mod}.mpy"), str(VM / f"{mod}.py")], check=True)
    data = _romfs(src)
    data += bytes(-(mpy.gc_bytes(partition.stat().st_size) + mpy.gc_bytes(len(data))) % _POOL_STEP)
    img = d / "harness.romfs"
    img.write_bytes(data)
    return img


# The unix port's GC heap grows its pool in steps of 4 blocks (one allocation-table byte each), and
# each step costs 129.5 bytes of -X heapsize: 128 of pool, 1 of that table, half a finaliser byte.
_POOL_STEP = 4 * mpy.GC_BLOCK


def _pool(heapsize: int) -> int:
    """The pool -X heapsize=heapsize gives, asked of the VM itself."""
    out = subprocess.run([mpy.micropython_exe(), "-X", f"heapsize={heapsize}", "-c",
                          "import gc; print(gc.mem_alloc() + gc.mem_free())"],
                         capture_output=True, text=True, check=True).stdout
    return int(out)


def _heap_above(heap: int, *regions: Path) -> int:
    """The least -X heapsize whose pool holds the regions (allocated first, in whole GC blocks,
    together a whole number of _POOL_STEPs: _harness pads them) with exactly what -X heapsize=heap
    leaves above them; so the harness's or the firmware's size moves no byte of the app's heap."""
    want = _pool(heap) + mpy.gc_bytes(*(r.stat().st_size for r in regions))
    lo, hi = want * 259 // 256 - 1, want * 259 // 256 + 1024  # 129.5 / 128, and the port's alignment
    while hi - lo > 1:  # the pool never shrinks as the heap grows
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _pool(mid) >= want else (mid, hi)
    return hi


def run(stops: int = 1000, heap: str = "256K", rom: bool = False, irregular: bool = False,
        walk: bool = False, flashed: Path | None = None, https: bool = False) -> dict[str, Any]:
    """Run the day at `-X heapsize=heap`. rom=True: the modules come from a ROMFS image, and the
    VM's heap is `heap` plus the image (its first allocation), so the app has `heap` above it.
    irregular: surveyed-looking footprints (town.town(irregular=True)); walk: every second of the
    walk between doors is fed, not one fix per door. The result's `largest_free_blocks` is the
    largest free block (bytes) after a collection at the start, after the first scan, every 50
    scans and at the end. flashed: the ROMFS partition file `depot flash --romfs` left on a virtual
    handheld (flash_virtual_handheld): the firmware comes from it alone, mounted as the device
    mounts it, and the VM's heap is `heap` plus the partition and the harness image. https: the
    device is configured as `depot flash --server-ca` leaves a field device (an https server and
    the depot's CA certificate, a real one from sim.certs), so the uploader's modem speaks TLS."""
    image = flash.build("sim", romfs=False)  # the firmware as the device holds it: .mpy bytecode
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lib = d / "lib"
        lib.mkdir()
        (lib / "firmware").mkdir()
        for path, data in image.files:
            if path.startswith("/lib/"):
                (lib / path[5:]).write_bytes(data)
        extra: list[str] = []
        vm_heap = heap
        entry = VM / "appday.py"
        if flashed is not None:
            harness = _harness(d, flashed)
            extra = [str(flashed), str(harness)]
            vm_heap = f"{_heap_above(_bytes(heap), flashed, harness)}"
            entry = VM / "flashedday.py"
        elif rom:
            for mod in ("flashdev", "simhw", "appdayrun"):  # the simulator's hardware and the day, in ROM
                subprocess.run([mpy_cross(), "-o", str(lib / f"{mod}.mpy"), str(VM / f"{mod}.py")],
                               check=True)
            img = d / "firmware.romfs"
            img.write_bytes(_romfs(lib))
            extra = [str(img)]
            vm_heap = f"{_bytes(heap) + img.stat().st_size + _ALLOC_SLACK}"
        fc = town.town(seed=11, stops=stops, area="north", irregular=irregular)
        pkg = d / "route.pkg"
        pkg.write_bytes(route_compile.compile_geojson(fc, key=KEY).package)
        plan = d / "plan.txt"
        plan.write_bytes(_plan(fc, walk))
        ports = {"SIM_UART_DOCK": "/dev/null", "SIM_UART_MODEM": "/dev/null"}
        if flashed is not None:  # every stream the app opens, each a FIFO nothing writes: a port
            ports = {}  # with no traffic, so each task waits at its first read as on a quiet device
            for var in ("SIM_UART_GNSS", "SIM_UART_SCANNER", "SIM_KEYS", "SIM_UART_MODEM", "SIM_UART_DOCK"):
                ports[var] = str(d / var.lower())
                os.mkfifo(ports[var])
        if https:
            ca = d / "ca.pem"
            ca.write_bytes(certs.make_ca().pem)
            ports["SIM_DAY_SERVER_CA"] = str(ca)
        env = dict(os.environ, **ports,
                   MICROPYPATH=".frozen" if flashed is not None else f"{lib}:{VM}:.frozen")
        proc = subprocess.run([mpy.micropython_exe(), "-X", f"heapsize={vm_heap}", str(entry),
                               str(d / "flash.img"), str(pkg), str(plan), "HH-HEAP", KEY.hex(), *extra],
                              capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise mpy.MicroPythonError(f"app day failed at {heap}:\n{proc.stdout[-2000:]}\n"
                                       f"{proc.stderr[-2000:]}")
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        figures["largest_free_blocks"] = [int(n) * mpy.GC_BLOCK for n in _MAX_FREE.findall(proc.stdout)]
        return figures


_MAX_FREE = re.compile(r"max free sz: (\d+)")  # micropython.mem_info(), in GC blocks
