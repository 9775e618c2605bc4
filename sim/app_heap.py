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
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mpremote import romfs

from host_tools import boards, flash, route_compile
from host_tools.flash_image import mpy_cross
from host_tools.server import BackgroundServer
from host_tools.store import Store
from sim import certs, gnss, mpy, town
from sim.links import DockLink, Pty
from sim.modem_emulator import ModemEmulator

VM = Path(__file__).resolve().parent / "vm"
KEY = bytes(range(64, 96))
DEVICE = "HH-HEAP"
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
    Store(store).enrol(DEVICE)
    with Device.start(workdir / "hh.img", board=board) as dev:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["--store", str(store), "flash", "--port", dev.console, "--device-id", DEVICE,
                           "--board", board, "--romfs"])
        if rc != 0:
            raise mpy.MicroPythonError(f"depot flash --romfs failed on the virtual handheld ({rc})")
        partition = Path(dev.info["romfs"])
    return partition


def _harness(d: Path, partition: Path, uploads: bool = False) -> Path:
    """The day's driver and the simulator's hardware as their own ROMFS image (sim/vm/flashedday.py);
    with uploads, the in-flight sampler too (sim/vm/dayuploads.py). Zeros after the image (VfsRom
    reads only the image's own length) bring it and the partition to whole _POOL_STEPs of the GC,
    so the heap above them can be exactly the board's (_heap_above)."""
    src = d / "harness"
    src.mkdir()
    for mod in ("flashdev", "simhw", "appdayrun", *(("dayuploads",) if uploads else ())):
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


def _compiled_bytes(script: Path) -> int:
    """The heap a script's compiled code holds while it runs (the VM compiles the entry script
    from source, and its code stays alive until the day ends)."""
    probe = ("import gc\ns = open(%r).read()\ngc.collect()\na = gc.mem_alloc()\n"
             "c = compile(s, 'entry', 'exec')\ngc.collect()\nprint(gc.mem_alloc() - a)") % str(script)
    out = subprocess.run([mpy.micropython_exe(), "-c", probe], capture_output=True, text=True, check=True)
    return int(out.stdout)


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


class _Depot:
    """The depot's end of uploads in flight (run(uploads=True)): a CA of the run's own and the
    ingest server with real TLS under it, over a Store in the run's folder where the device is
    enrolled (its key signs the route and the device's config), and the board's modem emulator on
    the host end of a pty the device opens as its modem UART. The device keeps the https day's
    server_url (https://127.0.0.1:1, so its config is byte for byte the parked day's): the modem
    resolves it to the server's port, whose certificate names 127.0.0.1. dock: the device is docked
    too, its dock UART an unpaced dock link (USB CDC) where the depot syncs it again and again
    (`depot sync`'s sync_device, the route not pushed) while the day runs."""

    def __init__(self, d: Path, board: str = "sim", dock: bool = False):
        self.ca = certs.make_ca("Depot CA (heap day)")
        (d / "tls").mkdir()
        self.tls = certs.server_files(self.ca, d / "tls", "depot", hosts=("127.0.0.1", "localhost"))
        self.path = d / "depot.sqlite3"
        self.store = Store(self.path)
        self.key = self.store.enrol(DEVICE)
        self.dialect = boards.load(board)["modem"]["dialect"]
        self.handshakes: list[int] = []
        self.posts = 0
        self.dock = dock
        self.syncs: list[Any] = []  # each dock sync's SyncReport

    @contextlib.contextmanager
    def running(self) -> Iterator[dict[str, str]]:
        """The server and the modem while the device runs; the device's environment."""
        cert, key = self.tls
        with BackgroundServer(str(self.path), tls_cert=cert, tls_key=key) as server:
            link = Pty()
            modem = ModemEmulator(link.master, link.master, self.dialect, server_url=server.url).start()
            env = {"SIM_UART_MODEM": link.path}
            dock, done = DockLink(0), threading.Event()
            syncing = threading.Thread(target=self._syncs, args=(dock.host.path, done), daemon=True)
            if self.dock:
                env.update(SIM_UART_DOCK=dock.device.path, SIM_DAY_DOCK="1")
                syncing.start()
            try:
                yield env
            finally:
                done.set()
                dock.close()  # a sync in progress fails at once instead of waiting out its retries
                if self.dock:
                    syncing.join(timeout=30)
                modem.stop()
                link.close()
                self.handshakes, self.posts = list(modem.tls_handshakes), modem.posts

    def _syncs(self, port: str, done: threading.Event) -> None:
        from host_tools.sync import sync_device

        store = Store(self.path)  # the thread's own connection
        while not done.is_set():
            self.syncs.append(sync_device(port, store, push_route=False))
            done.wait(0.2)

    def acknowledged(self, records: int) -> dict[str, Any]:
        """What reached the store: every record of the day (seq 1..records) exactly once, or the
        run fails."""
        seqs = [r.seq for r in self.store.records(DEVICE)]
        if sorted(seqs) != list(range(1, records + 1)):
            dup = len(seqs) - len(set(seqs))
            missing = sorted(set(range(1, records + 1)) - set(seqs))
            raise mpy.MicroPythonError(f"the store holds {len(seqs)} records of {records} "
                                       f"({dup} duplicated, missing {missing[:10]})")
        out = {"records_acknowledged": len(seqs), "store_ack_seq": self.store.ack_seq(DEVICE),
               "posts": self.posts, "tls_handshakes": len(self.handshakes),
               "tls_handshake_bytes": sum(self.handshakes)}
        if self.dock:
            out.update(dock_syncs=sum(1 for r in self.syncs if r.ok),
                       dock_syncs_failed=sum(1 for r in self.syncs if not r.ok),
                       dock_records=sum(r.stored for r in self.syncs))
        return out


def run(stops: int = 1000, heap: str = "256K", rom: bool = False, irregular: bool = False,
        walk: bool = False, flashed: Path | None = None, https: bool = False,
        uploads: bool = False, dock: bool = False) -> dict[str, Any]:
    """Run the day at `-X heapsize=heap`. rom=True: the modules come from a ROMFS image, and the
    VM's heap is `heap` plus the image (its first allocation), so the app has `heap` above it.
    irregular: surveyed-looking footprints (town.town(irregular=True)); walk: every second of the
    walk between doors is fed, not one fix per door. The result's `largest_free_blocks` is the
    largest free block (bytes) after a collection at the start, after the first scan, every 50
    scans and at the end. flashed: the ROMFS partition file `depot flash --romfs` left on a virtual
    handheld (flash_virtual_handheld): the firmware comes from it alone, mounted as the device
    mounts it, and the VM's heap is `heap` plus the partition and the harness image. https: the
    device is configured as `depot flash --server-ca` leaves a field device (an https server and
    the depot's CA certificate, a real one from sim.certs), so the uploader's modem speaks TLS.

    uploads (flashed only; implies https): the uploader really uploads. A depot ingest server with
    real TLS and the board's modem emulator on the device's modem pty (_Depot); after every 50
    scans and at the end the device runs its event loop until the depot has acknowledged every
    record so far, collecting and sampling the free heap at every turn of the loop
    (sim/vm/dayuploads.py). Adds `least_free_parked`, `least_free_uploading` (least_free is the
    lower), `records_acknowledged` (checked: each record in the store exactly once), `posts` and
    `tls_handshakes` (the modem emulator's count), and `harness_extra_bytes`: the heap the sampler
    and its bigger entry script (sim/vm/flasheduploads.py) hold beyond the parked day's harness,
    counted against the app in the figures above (add it to compare them with the parked day's).
    `low_point`: where the least free while uploading was seen (the drain, the post's driver then
    loaded, the modem's last line, the firmware's modules loaded).
    dock (implies uploads): the device is docked all day, the depot syncing it over an unpaced dock
    link again and again, so dock sessions are in flight (and the uploader stands down while
    docked); adds `dock_syncs`, `dock_syncs_failed` and `dock_records`."""
    uploads = uploads or dock
    if uploads and flashed is None:
        raise ValueError("uploads run on a flashed virtual handheld (flashed=...)")
    https = https or uploads
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
            harness = _harness(d, flashed, uploads)
            extra = [str(flashed), str(harness)]
            vm_heap = f"{_heap_above(_bytes(heap), flashed, harness)}"
            entry = VM / ("flasheduploads.py" if uploads else "flashedday.py")
        elif rom:
            for mod in ("flashdev", "simhw", "appdayrun"):  # the simulator's hardware and the day, in ROM
                subprocess.run([mpy_cross(), "-o", str(lib / f"{mod}.mpy"), str(VM / f"{mod}.py")],
                               check=True)
            img = d / "firmware.romfs"
            img.write_bytes(_romfs(lib))
            extra = [str(img)]
            vm_heap = f"{_bytes(heap) + img.stat().st_size + _ALLOC_SLACK}"
        depot = _Depot(d, dock=dock) if uploads else None
        key = depot.key if depot else KEY
        fc = town.town(seed=11, stops=stops, area="north", irregular=irregular)
        pkg = d / "route.pkg"
        pkg.write_bytes(route_compile.compile_geojson(fc, key=key).package)
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
            ca.write_bytes((depot.ca if depot else certs.make_ca()).pem)
            ports["SIM_DAY_SERVER_CA"] = str(ca)
        with contextlib.ExitStack() as stack:
            if depot is not None:  # the modem UART (and with dock, the dock's) becomes a pty
                ports.update(stack.enter_context(depot.running()))
            env = dict(os.environ, **ports,
                       MICROPYPATH=".frozen" if flashed is not None else f"{lib}:{VM}:.frozen")
            proc = subprocess.run([mpy.micropython_exe(), "-X", f"heapsize={vm_heap}", str(entry),
                                   str(d / "flash.img"), str(pkg), str(plan), DEVICE, key.hex(), *extra],
                                  capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise mpy.MicroPythonError(f"app day failed at {heap}:\n{proc.stdout[-2000:]}\n"
                                       f"{proc.stderr[-2000:]}")
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        figures["largest_free_blocks"] = [int(n) * mpy.GC_BLOCK for n in _MAX_FREE.findall(proc.stdout)]
        if depot is not None:  # sim/vm/dayuploads.py's line after the last drain
            inflight = json.loads(_UPLOADS.findall(proc.stdout)[-1])
            inflight["low_point"] = json.loads(_LOW.findall(proc.stdout)[-1])
            figures.update(inflight, least_free_parked=figures["least_free"],
                           least_free=min(figures["least_free"], inflight["least_free_uploading"]),
                           harness_extra_bytes=inflight["sampler_bytes"] + _compiled_bytes(entry)
                           - _compiled_bytes(VM / "flashedday.py"))
            figures.update(depot.acknowledged(figures["records"]))
        return figures


_MAX_FREE = re.compile(r"max free sz: (\d+)")  # micropython.mem_info(), in GC blocks
_UPLOADS = re.compile(r"^uploads (\{.*\})$", re.M)
_LOW = re.compile(r"^low (\{.*\})$", re.M)
