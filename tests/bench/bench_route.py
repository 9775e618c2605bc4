"""Route package and geofence figures, measured on the real `micropython`.

- route_compile_s_1000_stops, route_package_bytes_per_stop: the depot compiler (CPython + shapely).
- fence lookup per fix at 100 / 1,000 / 5,000 stops, grid index vs a linear scan of every fence,
  and the ratios fence_lookup_1000_vs_100 and fence_lookup_1000_vs_linear.
- peak_heap_bytes_route_1000: the largest live heap (gc.mem_alloc after gc.collect) while opening a
  1,000-stop package and judging fixes with it under -X heapsize=256K; the same run is repeated
  under -X heapsize=128K (the goal) and must complete.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from host_tools import route_compile
from sim import mpy, town

KEY = bytes(range(32))

# Fixes near random fences (within 30 m of their boxes), from a fixed LCG so every run and every
# variant judges the same fixes. Times are per fix, in microseconds.
LOOKUP = """
import time
from firmware import geofence, route_package
pkg = route_package.RoutePackage(%(path)r, %(key)r)
seed = 12345
def rnd(n):
    global seed
    seed = (seed * 1103515245 + 12345) & 0x3FFFFFFF
    return (seed >> 8) %% n
fixes = []
for _ in range(%(n)d):
    x0, y0, x1, y1 = pkg.bbox(rnd(pkg.stop_count))
    fixes.append((x0 - 300 + rnd(x1 - x0 + 600), y0 - 300 + rnd(y1 - y0 + 600)))
def timed(fn, pts):
    t = time.ticks_us()
    for x, y in pts:
        fn(pkg, x, y)
    return time.ticks_diff(time.ticks_us(), t) / len(pts)
timed(geofence.nearest, fixes[:10])
print(timed(geofence.nearest, fixes), timed(geofence.nearest_linear, fixes[:%(nlin)d]))
"""

HEAP = """
import gc
from firmware import geofence, route_package
gc.collect()
peak = gc.mem_alloc()
def sample():
    global peak
    gc.collect()
    peak = max(peak, gc.mem_alloc())
pkg = route_package.RoutePackage(%(path)r, %(key)r)
sample()
n = 0
for i in range(0, pkg.stop_count, 2):
    x0, y0, x1, y1 = pkg.bbox(i)
    lat = pkg.origin_lat_e6 + (y0 + y1) * 65536 // (2 * pkg.ky)
    lon = pkg.origin_lon_e6 + (x0 + x1 + 120) * 65536 // (2 * pkg.kx)
    j, inside, d = geofence.locate(pkg, lat, lon)
    geofence.verdict(pkg, i, lat, lon, 12, 1)
    s = pkg.stop(j)
    pkg.find_item(s.items[0])
    n += 1
    if n %% 50 == 0:
        sample()
sample()
print(peak, n)
"""


def run(report) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench_route_"))
    pkgs = {}
    for n in (100, 1000, 5000):
        fc = town.town(seed=4, stops=n, area="north")
        t0 = time.perf_counter()
        res = route_compile.compile_geojson(fc, key=KEY)
        dt = time.perf_counter() - t0
        p = tmp / f"r{n}.pkg"
        p.write_bytes(res.package)
        pkgs[n] = p
        if n == 1000:
            report("route_compile_s_1000_stops", dt, "s", "GeoJSON -> signed package, shapely 2.2")
            report("route_package_bytes_per_stop", len(res.package) / n, "B", f"{len(res.package)} B total")

    per_fix = {}
    for n, p in pkgs.items():
        out = mpy.run(LOOKUP % {"path": str(p), "key": KEY, "n": 400, "nlin": 400 if n < 5000 else 60})
        idx, lin = (float(v) for v in out.split())
        per_fix[n] = (idx, lin)
        report(f"fence_lookup_us_{n}", idx, "us/fix", "grid index, real micropython")
        report(f"fence_lookup_linear_us_{n}", lin, "us/fix", "every fence (bbox-pruned)")
    report("fence_lookup_1000_vs_100", per_fix[1000][0] / per_fix[100][0], "x",
           "indexed; 1.0 = independent of route size")
    report("fence_lookup_1000_vs_linear", per_fix[1000][0] / per_fix[1000][1], "x",
           "indexed / linear at 1,000 stops")
    report("fence_lookup_5000_vs_linear", per_fix[5000][0] / per_fix[5000][1], "x",
           "indexed / linear at 5,000 stops")

    out = mpy.run(HEAP % {"path": str(pkgs[1000]), "key": KEY}, heap="256K")
    peak, judged = (int(v) for v in out.split())
    mpy.run(HEAP % {"path": str(pkgs[1000]), "key": KEY}, heap="128K")  # the goal heap: must not fail
    report("peak_heap_bytes_route_1000", peak, "B",
           f"live heap, open + {judged} fixes judged; also runs under -X heapsize=128K")
