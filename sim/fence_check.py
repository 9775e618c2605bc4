"""`python -m sim fence-check ROUTE.pkg POINTS.csv [--key KEYFILE]`: the firmware's geofence engine,
run on the real `micropython`, against a list of points.

Input lines are `lat,lon[,hdop]` (decimal degrees; hdop defaults to 1.0; blank lines and `#`
comments skipped). Output is a header line, then one CSV line per point,
`stop_id,contains,distance_m,verdict`, for the fence containing the point or else the nearest
one; distance_m is 0 inside, as shapely measures it.
The VM opens the package and the points file from the host filesystem itself.

Nothing the VM allocates outlives the point it judges: stop ids are copied into one preallocated
buffer per answer (RoutePackage.stop_id_into) rather than remembered, since a cache of names grown
point after point, interleaved with each line's garbage, shreds the heap until a big route's run
dies with MemoryError while most of the heap is free.
"""

from __future__ import annotations

from pathlib import Path

from sim import mpy

# Runs inside the VM. Degrees are parsed as decimal text straight to micro-degrees: the device
# never needs floats for positions, and single-precision ports would lose the 6th decimal.
VM_SCRIPT = """
import binascii, sys
from firmware import geofence, route_package
from host_tools.record_dict import VERDICTS  # the host's labels: the VM's path has the repository

def e6(s):
    s = s.strip()
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    whole, _, frac = s.partition(".")
    frac = (frac + "0000000")[:7]
    v = int(whole or "0") * 1000000 + int(frac[:6]) + (1 if int(frac[6]) >= 5 else 0)
    return -v if neg else v

def x10(s):
    whole, _, frac = s.strip().partition(".")
    return int(whole or "0") * 10 + int((frac + "0")[0])

def main(pkg_path, csv_path, key_hex):
    try:
        pkg = route_package.RoutePackage(pkg_path, binascii.unhexlify(key_hex))
    except route_package.PackageError as e:
        print("ERROR:", e)
        return
    sid = bytearray(256)
    out = sys.stdout.buffer
    with open(csv_path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(",")
            try:
                lat = e6(parts[0])
                lon = e6(parts[1])
            except (ValueError, IndexError):
                continue  # a header line or a malformed one
            hdop = x10(parts[2]) if len(parts) > 2 and parts[2].strip() else 10
            i, inside, d = geofence.locate(pkg, lat, lon)
            if i < 0:
                print(",0,,unsure")
                continue
            v, _ = geofence.verdict(pkg, i, lat, lon, hdop, 0)
            out.write(memoryview(sid)[:pkg.stop_id_into(i, sid)])
            print(",%d,%d.%d,%s" % (1 if inside else 0, d // 10, d % 10, VERDICTS[v]))
    pkg.close()

main(%r, %r, %r)
"""


HEADER = "stop_id,contains,distance_m,verdict"  # the first line printed: the columns


class FenceCheckError(RuntimeError):
    pass


def fence_check(package: str | Path, points: str | Path, key: bytes = bytes(32),
                heap: str = mpy.DEFAULT_HEAP) -> list[str]:
    """Run the check on the VM; return the output CSV lines. Raises FenceCheckError on a bad package."""
    code = VM_SCRIPT.replace("main(%r, %r, %r)", "main(%r, %r, %r)" % (
        str(Path(package).resolve()), str(Path(points).resolve()), key.hex()))
    out = mpy.run(code, heap=heap).splitlines()
    if out and out[0].startswith("ERROR:"):
        raise FenceCheckError(out[0][7:])
    return out
