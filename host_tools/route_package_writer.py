"""Writer of the route package (spec: docs/route-package.md); the reader is firmware/route_package.py.

Runs on the depot (CPython) and compiles with mpy-cross, so it sticks to modules both have. Input
is plain data: fences are already in the route's local frame (integer decimetres from the origin),
validated and simplified by host_tools/route_compile.py. The package is compiled once and signed
per device: sign(body, key) / resign(package, key).
"""

import binascii
import math
import struct

from firmware import geofence
from firmware import route_package as rp
from firmware import sign as _sign

MAX_EXTENT_DM = 8192  # a fence wider or taller than 819 m is not a building; keeps ints small
MAX_STOPS = 65535
MAX_TEXT = 40  # record.MAX_TEXT: stop and item ids travel in delivery records
DEFAULT_CELL_DM = 400  # 40 m grid cells: a handful of house footprints each
MAX_CELLS = 65536

# (code, kind, label). Attempt reasons and actions follow the spirit of UPU EMSEVT EMH
# (unsuccessful delivery attempt: a reason and the action taken); the codes are this product's.
DEFAULT_REASONS = (
    (1, rp.K_ATTEMPT, "Addressee absent"),
    (2, rp.K_ATTEMPT, "Door locked / no access"),
    (3, rp.K_ATTEMPT, "Refused by addressee"),
    (4, rp.K_ATTEMPT, "Address not found"),
    (5, rp.K_ATTEMPT, "Addressee unknown / moved"),
    (6, rp.K_ATTEMPT, "Item damaged"),
    (7, rp.K_ATTEMPT, "Business closed"),
    (8, rp.K_ATTEMPT, "Unsafe to deliver (dog, weather)"),
    (9, rp.K_ATTEMPT, "Payment / ID required"),
    (20, rp.K_ACTION, "Notice card left"),
    (21, rp.K_ACTION, "Left with neighbour"),
    (22, rp.K_ACTION, "Left in safe place"),
    (23, rp.K_ACTION, "Taken to pick-up point"),
    (24, rp.K_ACTION, "Returned to depot"),
    (40, rp.K_OVERRIDE, "GNSS inaccurate here"),
    (41, rp.K_OVERRIDE, "Entrance away from building"),
    (42, rp.K_OVERRIDE, "Met addressee elsewhere"),
    (43, rp.K_OVERRIDE, "Fence wrong on map"),
)

# 6371008.8 m mean Earth radius: decimetres per micro-degree of latitude, in Q16
_KY = 72873


def scale_q16(lat0_e6):
    """(kx, ky): decimetres per micro-degree of longitude and latitude at the origin, Q16."""
    return int(round(_KY * math.cos(math.radians(lat0_e6 / 1e6)))), _KY


def project(kx, ky, lat0_e6, lon0_e6, lat_e6, lon_e6):
    """Local (x, y) in dm exactly as the device computes it (geofence.local_x/local_y)."""
    return geofence.mul_q16(lon_e6 - lon0_e6, kx), geofence.mul_q16(lat_e6 - lat0_e6, ky)


class PackError(ValueError):
    pass


def _text(s, what, limit=MAX_TEXT):
    b = s.encode()
    if len(b) > limit:
        raise PackError("%s %r too long" % (what, s))
    return bytes([len(b)]) + b


def pack(route_id, service_date, origin_lat_e6, origin_lon_e6, stops, reasons=DEFAULT_REASONS,
         cell_dm=DEFAULT_CELL_DM):
    """Unsigned package body. `stops`: list of dicts in walking order, each with stop_id (str),
    seq (int), address (str), items (list of str) and rings (list of rings, a ring a list of
    (x, y) int dm, not closed; all rings of all parts, read with the even-odd rule)."""
    if len(stops) > MAX_STOPS:
        raise PackError("too many stops")
    kx, ky = scale_q16(origin_lat_e6)
    n = len(stops)
    hlen = rp.HEADER_LEN + len(rp.TAGS) * rp.SECTION_LEN
    boxes = []
    geoms = []
    for s in stops:
        pts = [p for ring in s["rings"] for p in ring]
        if not pts or any(len(r) < 3 for r in s["rings"]):
            raise PackError("stop %s has an empty or degenerate fence" % s["stop_id"])
        x0 = min(p[0] for p in pts)
        y0 = min(p[1] for p in pts)
        x1 = max(p[0] for p in pts)
        y1 = max(p[1] for p in pts)
        if x1 - x0 > MAX_EXTENT_DM or y1 - y0 > MAX_EXTENT_DM:
            raise PackError("stop %s fence larger than %d m" % (s["stop_id"], MAX_EXTENT_DM // 10))
        words = [len(s["rings"])] + [len(r) for r in s["rings"]]
        for ring in s["rings"]:
            for x, y in ring:
                words += [x - x0, y - y0]
        boxes.append((x0, y0, x1, y1))
        geoms.append(struct.pack("<%dh" % len(words), *words))
    max_words = max([len(g) // 2 for g in geoms] or [4])
    # records
    recs = []
    for s in stops:
        r = struct.pack("<HH", s["seq"], len(s["items"])) + _text(s["stop_id"], "stop id")
        r += _text(s["address"], "address", 255)
        for it in s["items"]:
            r += _text(it, "item id")
        recs.append(r)
    # layout: header+table, STOP, RECS, GEOM, GRID, ITEM, RSNS
    dir_off = hlen
    recs_off = dir_off + 28 * n
    geom_off = recs_off + sum(len(r) for r in recs)
    geom_off += geom_off & 1  # int16 words start on an even offset
    grid = _grid(boxes, cell_dm)
    directory = b""
    ro = recs_off
    go = geom_off
    for i in range(n):
        directory += struct.pack(rp.DIR_ENTRY, boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3],
                                 go, len(geoms[i]) // 2, ro)
        ro += len(recs[i])
        go += len(geoms[i])
    items = sorted((binascii.crc32(it.encode()) & 0xFFFFFFFF, i)
                   for i, s in enumerate(stops) for it in s["items"])
    item_sec = b"".join(struct.pack(rp.ITEM_ENTRY, c, i) for c, i in items)
    rs = bytes([len(reasons)])
    for code, kind, label in reasons:
        rs += bytes([code, kind]) + _text(label, "reason label", 255)
    recs_sec = b"".join(recs)
    pad = b"\0" * ((recs_off + len(recs_sec)) & 1)
    sections = [(b"STOP", directory), (b"RECS", recs_sec + pad), (b"GEOM", b"".join(geoms)),
                (b"GRID", grid), (b"ITEM", item_sec), (b"RSNS", rs)]
    table = b""
    off = hlen
    for tag, data in sections:
        table += struct.pack(rp.SECTION, tag, off, len(data), binascii.crc32(data) & 0xFFFFFFFF)
        off += len(data)
    rid = route_id.encode()
    if len(rid) > 16:
        raise PackError("route id %r longer than 16 bytes" % route_id)
    head = struct.pack(rp.HEADER, rp.MAGIC, rp.VERSION, len(sections), hlen, n, max_words,
                       rid, service_date, origin_lat_e6, origin_lon_e6, kx, ky, len(items),
                       b"\0" * 8, 0)[:60]
    crc = binascii.crc32(table, binascii.crc32(head)) & 0xFFFFFFFF
    return head + struct.pack("<I", crc) + table + b"".join(d for _, d in sections)


def _grid(boxes, cell):
    if not boxes:
        return struct.pack(rp.GRID_HEAD, 0, 0, cell, 1, 1) + struct.pack("<II", 0, 0)
    gx0 = min(b[0] for b in boxes)
    gy0 = min(b[1] for b in boxes)
    w = max(b[2] for b in boxes) - gx0 + 1
    h = max(b[3] for b in boxes) - gy0 + 1
    while ((w + cell - 1) // cell) * ((h + cell - 1) // cell) > MAX_CELLS:
        cell *= 2
    nx = (w + cell - 1) // cell
    ny = (h + cell - 1) // cell
    cells = [[] for _ in range(nx * ny)]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        for cy in range((y0 - gy0) // cell, (y1 - gy0) // cell + 1):
            for cx in range((x0 - gx0) // cell, (x1 - gx0) // cell + 1):
                cells[cy * nx + cx].append(i)
    starts = [0]
    for c in cells:
        starts.append(starts[-1] + len(c))
    flat = [i for c in cells for i in c]
    return (struct.pack(rp.GRID_HEAD, gx0, gy0, cell, nx, ny)
            + struct.pack("<%dI" % len(starts), *starts)
            + struct.pack("<%dH" % len(flat), *flat))


def sign(body, key):
    """The package: body followed by HMAC-SHA256(key, body)."""
    if len(key) != _sign.KEY_LEN:
        raise PackError("device key must be %d bytes" % _sign.KEY_LEN)
    return bytes(body) + _sign.hmac_sha256(key, body)


def resign(package, key):
    """The same package signed for another device's key."""
    return sign(memoryview(package)[: len(package) - rp.TRAILER_LEN], key)


def build(route_id, service_date, origin_lat_e6, origin_lon_e6, stops, key, reasons=DEFAULT_REASONS):
    return sign(pack(route_id, service_date, origin_lat_e6, origin_lon_e6, stops, reasons), key)
