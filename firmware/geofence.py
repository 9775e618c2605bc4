"""Geofence engine: point-in-fence and distance to the fence edge, in the route's local frame.

Coordinates are integer decimetres east (x) and north (y) of the route origin (equirectangular
projection around it, see docs/route-package.md). Everything here is integer arithmetic with every
intermediate below 2**30, so the per-fix test allocates nothing on a 32-bit port either: floats and
big ints are heap objects there. Fences are read from the package file into the package's
preallocated buffers (route_package.RoutePackage), one fence at a time.

Containment is the even-odd rule over all rings of a fence, which is exact for valid polygons with
holes and for multipolygons whose parts do not overlap (the compiler guarantees both).
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from firmware import record

BIG = const(0x3FFFFFFF)  # "no fence found" distance; still a small int
FAR = const(4096)  # dm: beyond this, a fence's distance is its bounding-box distance (a lower bound)
_CLIP = const(16383)  # bounding-box gaps are clipped here so their squares stay small ints
DIR_SIZE = const(28)  # bytes per stop directory entry: x0 y0 x1 y1 geom_off geom_words rec_off

# Accuracy: the fix's horizontal accuracy radius is HDOP x UERE. 5 m is a typical single-frequency
# consumer receiver's user equivalent range error (1-sigma ~ 3-5 m); HDOP x 5 m is then a ~95%
# radius for HDOP near 1, and grows as the satellite geometry degrades.
UERE_DM = const(50)
MARGIN_DM = const(50)  # "inside" also within 5 m of the fence: carriers stand at doors, not in rooms
MAX_AGE_S = const(10)
MAX_HDOP_X10 = const(50)  # HDOP above 5.0 is too poor to judge by


def isqrt(n):
    """floor(sqrt(n)) for 0 <= n < 2**30, by Newton's method from an overestimate."""
    if n < 2:
        return n
    if n < 256:
        x = 16
    elif n < 65536:
        x = 256
    elif n < 16777216:
        x = 4096
    else:
        x = 32768
    y = (x + n // x) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x


def _root(n):
    # sqrt rounded to the nearest integer, for point-to-vertex distances
    x = isqrt(n)
    if n - x * x > x:
        x += 1
    return x


def mul_q16(d, k):
    """d * k / 65536, rounded, for |d| < 2**24 and 0 <= k < 2**17, without any product reaching 2**30."""
    neg = d < 0
    if neg:
        d = -d
    # d*k = (hi*4096 + lo)*k; one rounding at the end, so host and device agree to the dm
    r = ((d >> 12) * k + (((d & 4095) * k + 32768) >> 12)) >> 4
    return -r if neg else r


def local_x(pkg, lon_e6):
    return mul_q16(lon_e6 - pkg.origin_lon_e6, pkg.kx)


def local_y(pkg, lat_e6):
    return mul_q16(lat_e6 - pkg.origin_lat_e6, pkg.ky)


def _test(pkg, i, px, py, best):
    """Distance in dm from (px, py) to fence i, -1 when inside; BIG when it cannot beat `best`."""
    f = pkg.file
    box = pkg.box
    f.seek(pkg.dir_off + i * DIR_SIZE)
    f.readinto(box)
    x0 = box[0]
    y0 = box[1]
    gx = x0 - px if px < x0 else (px - box[2] if px > box[2] else 0)
    gy = y0 - py if py < y0 else (py - box[3] if py > box[3] else 0)
    lb = gx if gx > gy else gy
    if lb >= best:
        return BIG
    if lb > FAR:
        # far away: the bounding box is a good enough (lower-bound) answer and keeps ints small
        gx = gx if gx < _CLIP else _CLIP
        gy = gy if gy < _CLIP else _CLIP
        return _root(gx * gx + gy * gy)
    words = box[5]
    geo = pkg.geo
    if words > len(geo):
        words = len(geo)
    f.seek(box[4])
    pkg.readn(geo, words + words)
    # the point relative to the fence's own origin: vertices are small non-negative offsets
    rx = px - x0
    ry = py - y0
    nrings = geo[0]
    # pass 1: even-odd crossing count of a ray towards +x
    inside = False
    v = 1 + nrings
    r = 0
    while r < nrings:
        n = geo[1 + r]
        end = v + n + n
        bx = geo[end - 2] - rx
        by = geo[end - 1] - ry
        while v < end:
            ax = geo[v] - rx
            ay = geo[v + 1] - ry
            if (ay > 0) != (by > 0):
                c = ax * by - ay * bx
                if by > ay:
                    if c > 0:
                        inside = not inside
                elif c < 0:
                    inside = not inside
            bx = ax
            by = ay
            v += 2
        r += 1
    if inside:
        return -1
    # pass 2: distance to the nearest edge; edges that cannot beat `best` are never measured
    d = best
    v = 1 + nrings
    r = 0
    while r < nrings:
        n = geo[1 + r]
        end = v + n + n
        bx = geo[end - 2] - rx
        by = geo[end - 1] - ry
        while v < end:
            ax = geo[v] - rx
            ay = geo[v + 1] - ry
            # skip edges whose bounding box is already farther than the best edge
            lo = ax if ax < bx else bx
            hi = bx if ax < bx else ax
            g = lo if lo > 0 else (-hi if hi < 0 else 0)
            lo = ay if ay < by else by
            hi = by if ay < by else ay
            h = lo if lo > 0 else (-hi if hi < 0 else 0)
            if (g if g > h else h) < d:
                e = _seg(ax, ay, bx, by)
                if e < d:
                    d = e
            bx = ax
            by = ay
            v += 2
        r += 1
    return d


def _seg(ax, ay, bx, by):
    # distance from the origin to segment a-b, rounded to the dm
    ex = bx - ax
    ey = by - ay
    dot = -(ax * ex + ay * ey)
    den = ex * ex + ey * ey
    if dot <= 0 or den == 0:
        return _root(ax * ax + ay * ay)
    if dot >= den:
        return _root(bx * bx + by * by)
    cross = ax * ey - ay * ex
    if cross < 0:
        cross = -cross
    # |cross| / sqrt(den), with sqrt(den) scaled by 2**s to keep 14+ significant bits
    s = 0
    while den < 67108864:
        den <<= 2
        s += 1
    ln = isqrt(den)
    q = cross // ln
    rem = cross - q * ln
    return (q << s) + ((rem << s) + (ln >> 1)) // ln


def nearest(pkg, x, y):
    """Index of the fence containing (x, y), else of the nearest one (-1 if the route is empty).

    Uses the package's uniform grid: cells are searched in growing square rings around the fix
    until no unsearched cell can hold a fence closer than the best so far. The distance (dm, 0 when
    inside) goes to pkg.near_dist and containment to pkg.near_in. Allocates nothing.
    """
    # forget the fences the last lookup tested: their bytes of the bit set, or all of it when they
    # were more than the list of them holds (a fix far outside the route)
    seen = pkg.seen
    marks = pkg.marks
    k = pkg.nmarks
    i = 0
    if k > len(marks):
        k = len(seen)
        while i < k:
            seen[i] = 0
            i += 1
    else:
        while i < k:
            seen[marks[i] >> 3] = 0
            i += 1
    pkg.nmarks = 0
    cell = pkg.cell
    nx = pkg.nx
    ny = pkg.ny
    ox = x - pkg.gx0
    oy = y - pkg.gy0
    cx = ox // cell
    cy = oy // cell
    # how far the fix is inside its own cell's border: rings beyond k are at least k*cell + this
    m = ox - cx * cell
    t = cell - m
    if t < m:
        m = t
    t = oy - cy * cell
    if t < m:
        m = t
    t = cell - (oy - cy * cell)
    if t < m:
        m = t
    best = BIG
    besti = -1
    # rings before the first one that touches the grid are empty: start there
    k = -cx if cx < 0 else (cx - nx + 1 if cx >= nx else 0)
    t = -cy if cy < 0 else (cy - ny + 1 if cy >= ny else 0)
    if t > k:
        k = t
    # enough rings to cover the whole grid
    kmax = cx if cx > 0 else -cx
    t = nx - 1 - cx
    t = t if t > 0 else -t
    if t > kmax:
        kmax = t
    t = cy if cy > 0 else -cy
    if t > kmax:
        kmax = t
    t = ny - 1 - cy
    t = t if t > 0 else -t
    if t > kmax:
        kmax = t
    while k <= kmax:
        # ring k, clipped to the grid: full rows at its top and bottom, two cells per row between
        j = cy - k if cy - k > 0 else 0
        jend = cy + k if cy + k < ny - 1 else ny - 1
        while j <= jend:
            if j == cy - k or j == cy + k:
                i = cx - k if cx - k > 0 else 0
                iend = cx + k if cx + k < nx - 1 else nx - 1
                step = 1
            else:
                i = cx - k
                iend = cx + k
                step = k + k
            while i <= iend:
                if 0 <= i < nx:
                    d = _cell(pkg, j * nx + i, x, y, best)
                    if d < best:
                        best = d
                        besti = pkg.cand
                        if d < 0:
                            pkg.near_dist = 0
                            pkg.near_in = True
                            return besti
                if step == 0:
                    break
                i += step
            j += 1
        if best <= k * cell + m:
            break
        k += 1
    pkg.near_dist = best
    pkg.near_in = False
    return besti


def _cell(pkg, c, x, y, best):
    # test the fences listed in grid cell c; best candidate index in pkg.cand
    f = pkg.file
    pair = pkg.pair
    f.seek(pkg.starts_off + 4 * c)
    f.readinto(pair)
    pos = pair[0]
    end = pair[1]
    lst = pkg.lst
    seen = pkg.seen
    found = BIG
    while pos < end:
        n = end - pos
        if n > len(lst):
            n = len(lst)
        f.seek(pkg.list_off + 2 * pos)
        pkg.readn(lst, n + n)
        q = 0
        while q < n:
            i = lst[q]
            q += 1
            bit = 1 << (i & 7)
            if seen[i >> 3] & bit:
                continue
            seen[i >> 3] |= bit
            k = pkg.nmarks
            if k < len(pkg.marks):
                pkg.marks[k] = i
            pkg.nmarks = k + 1
            d = _test(pkg, i, x, y, best if best < found else found)
            if d < found:
                found = d
                pkg.cand = i
                if d < 0:
                    return d
        pos += n
        # reading the next chunk moved the file: lst holds it, seen[] guards repeats
    return found


def nearest_linear(pkg, x, y):
    """Same answer as nearest(), by testing every fence in turn: the benchmark's reference."""
    best = BIG
    besti = -1
    i = 0
    n = pkg.stop_count
    while i < n:
        d = _test(pkg, i, x, y, best)
        if d < best:
            best = d
            besti = i
            if d < 0:
                pkg.near_dist = 0
                pkg.near_in = True
                return i
        i += 1
    pkg.near_dist = best
    pkg.near_in = False
    return besti


def distance(pkg, i, x, y):
    """Distance in dm from (x, y) to fence i (0 inside) and whether it contains the point."""
    d = _test(pkg, i, x, y, BIG)
    if d < 0:
        return 0, True
    return d, False


def locate(pkg, lat_e6, lon_e6):
    """(stop index containing the fix or nearest to it, contains, distance_dm)."""
    i = nearest(pkg, local_x(pkg, lon_e6), local_y(pkg, lat_e6))
    return i, pkg.near_in, pkg.near_dist


def accuracy_dm(hdop_x10):
    return hdop_x10 * UERE_DM // 10


def verdict(pkg, stop_index, lat_e6, lon_e6, hdop_x10, age_s, margin_dm=MARGIN_DM,
            max_age_s=MAX_AGE_S, max_hdop_x10=MAX_HDOP_X10):
    """Judge a fix against one stop's fence: (record.V_INSIDE | V_OUTSIDE | V_UNSURE, distance_dm).

    lat_e6/lon_e6 None (or hdop_x10 <= 0) means no fix. A stale or poor fix is `unsure` whatever
    its distance; the distance is still given when there is a position. Inside the fence or within
    `margin_dm` of it is `inside`; farther than margin + accuracy radius is `outside`.
    """
    if lat_e6 is None or lon_e6 is None:
        return record.V_UNSURE, 0
    d, _ = distance(pkg, stop_index, local_x(pkg, lon_e6), local_y(pkg, lat_e6))
    if hdop_x10 <= 0 or hdop_x10 > max_hdop_x10 or age_s < 0 or age_s > max_age_s:
        return record.V_UNSURE, d
    if d <= margin_dm:
        return record.V_INSIDE, d
    if d > margin_dm + accuracy_dm(hdop_x10):
        return record.V_OUTSIDE, d
    return record.V_UNSURE, d
