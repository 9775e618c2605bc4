"""The heap a route, the fence engine and the delivery state take, on the 64-bit unix port and on
the 32-bit WebAssembly port (sim/wasm32.py): the same steps on both, the live heap read after a
collection between steps. Bench keys peak_heap_bytes_route_1000_32bit and heap_64bit_vs_32bit.

A day of N stops: the route package (an in-memory file on the 32-bit port), the NMEA parser, a
journal on the VM's own filesystem (VfsPosix on both: the WebAssembly port has no littlefs) and
delivery.Delivery; then, a batch of stops per step, one fix at each door and every parcel scanned.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from host_tools import route_compile
from sim import app_heap, mpy, town, wasm32

KEY = bytes(range(64, 96))
_BATCH = 100  # stops per step

_MODULES = ("import gc, os\n"
            "from firmware import delivery, geofence, journal, nmea, record, route_package, scan_code\n")
_SETUP = """
j = journal.Journal({journal!r})
route = route_package.RoutePackage({pkg!r}, {key!r})
g = nmea.NMEA()
flow = delivery.Delivery(route, geofence, scan_code.parse, g, j, "HH-HEAP", lambda: 1764230400)
plan = open({plan!r}, "rb")
scans = 0
"""
_BATCH_STEP = """
doors = 0
while doors < {batch}:
    raw = plan.readline()
    if not raw:
        break
    data = raw[2:].rstrip(b"\\r\\n")
    if raw[0] == 70:  # F: an NMEA sentence
        if g.parse(data) == 1:
            doors += 1
    else:  # S: a scan
        p = flow.scan(data)
        assert p.kind == 1, (p.title, p.detail)  # recorded
        scans += 1
"""
_REPORT = """
import binascii, hashlib
h = hashlib.sha256()
buf = bytearray(journal.FRAME_MAX)
for seq, mv in j.records(1, buf):
    h.update(mv)
print(binascii.hexlify(h.digest()).decode(), scans, j.last_seq, route.stop_count)
"""


def _steps(pkg: str, plan: str, journal: str, stops: int) -> list[str]:
    steps = [_MODULES, _SETUP.format(pkg=pkg, key=KEY, plan=plan, journal=journal)]
    steps += [_BATCH_STEP.format(batch=_BATCH)] * ((stops + _BATCH - 1) // _BATCH + 1)
    return steps + [_REPORT]


def _unix(steps: list[str], heap: str) -> tuple[str, list[int]]:
    """The same steps in one unix-port process, a collection and a reading after each."""
    probe = "gc.collect()\nprint('HEAP', gc.mem_alloc())\n"
    out = mpy.run("".join(s + probe for s in steps), heap=heap)
    lines = out.splitlines()
    live = [int(line.split()[1]) for line in lines if line.startswith("HEAP ")]
    return "\n".join(line for line in lines if not line.startswith("HEAP ")), live


def measure(stops: int = 1000) -> dict[str, Any]:
    """Live heap on both VMs: `modules` after the imports, `state` the most the route, the fence
    engine and the delivery state took above that over the day (bytes); `journal_sha256` what the
    day wrote, record by record (the two VMs must write the same)."""
    fc = town.town(seed=11, stops=stops, area="north")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pkg = d / "route.pkg"
        pkg.write_bytes(route_compile.compile_geojson(fc, key=KEY).package)
        plan = d / "plan.txt"
        plan.write_bytes(app_heap._plan(fc))
        out: dict[str, Any] = {}
        # the 32-bit VM reads the package and plan from copies in its in-memory filesystem, and
        # keeps its journal there; the unix port uses the host's, the journal in the temp folder
        for bits, (text, live) in (
            (32, wasm32.run_steps(_steps(str(pkg), str(plan), "/journal", stops), heap="256K")),
            (64, _unix(_steps(str(pkg), str(plan), str(d / "journal"), stops), "1M")),
        ):
            digest, *numbers = text.split()[-4:]
            scans, records, count = (int(x) for x in numbers)
            if not (scans == records and count == stops):
                raise RuntimeError(f"{bits}-bit day went wrong: {text[-500:]}")
            out[f"journal_sha256_{bits}"] = digest
            out[f"modules_{bits}"] = live[0]
            out[f"state_{bits}"] = max(live[1:]) - live[0]
            out[f"scans_{bits}"] = scans
        return out
