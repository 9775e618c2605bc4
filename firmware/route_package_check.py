"""The proof a route package passes before route_package.RoutePackage serves it (spec:
docs/route-package.md): header and per-section CRC32, the HMAC-SHA256 trailer under the device's
key, then its structure. RoutePackage imports this for an open and lets it go after: the checks
and their messages are needed once per package, not all day. Any failure raises PackageError with
a message for the carrier's screen."""

import binascii
import hashlib
import struct

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from firmware import sign
from firmware.route_package import (
    GRID_HEAD,
    HEADER,
    HEADER_LEN,
    ITEM_ENTRY,
    ITEM_LEN,
    MAGIC,
    MAX_FENCE_WORDS,
    SECTION,
    SECTION_LEN,
    TAGS,
    TRAILER_LEN,
    VERSION,
    PackageError,
)

_CHUNK = const(256)


def verify(f, key):
    """CRCs and signature of the package file f: (package hash, size, header tuple, section table
    {tag: (offset, length)}), the last two for RoutePackage._setup."""
    size = f.seek(0, 2)
    if size < HEADER_LEN + TRAILER_LEN:
        raise PackageError("route package truncated (%d bytes)" % size)
    f.seek(0)
    head = f.read(HEADER_LEN)
    h = struct.unpack(HEADER, head)
    if h[0] != MAGIC:
        raise PackageError("not a route package (bad magic)")
    if h[1] != VERSION:
        raise PackageError("route package version %d not supported (want %d)" % (h[1], VERSION))
    nsec = h[2]
    hlen = h[3]
    if hlen != HEADER_LEN + nsec * SECTION_LEN or hlen + TRAILER_LEN > size:
        raise PackageError("route package truncated or header corrupt")
    table = f.read(hlen - HEADER_LEN)
    if binascii.crc32(table, binascii.crc32(head[:60])) & 0xFFFFFFFF != h[14]:
        raise PackageError("route package header CRC mismatch (corrupt)")
    body_end = size - TRAILER_LEN
    buf = bytearray(_CHUNK)
    secs = {}
    for k in range(nsec):
        tag, off, ln, crc = struct.unpack_from(SECTION, table, k * SECTION_LEN)
        name = tag.decode()
        if off < hlen or off + ln > body_end:
            raise PackageError("route package truncated: section %s out of bounds" % name)
        if _crc(f, buf, off, ln) != crc:
            raise PackageError("route package section %s CRC mismatch (corrupt)" % name)
        secs[tag] = (off, ln)
    for tag in TAGS:
        if tag not in secs:
            raise PackageError("route package lacks section %s" % tag.decode())
    # HMAC over everything before the trailer, and sha256 of the whole file for records
    signer = sign.Signer(key)
    inner = signer.begin()
    whole = hashlib.sha256()
    mv = memoryview(buf)
    f.seek(0)
    pos = 0
    while pos < size:
        n = f.readinto(buf)
        if not n:
            raise PackageError("route package truncated while reading")
        if pos < body_end:
            inner.update(mv[: min(n, body_end - pos)])
        whole.update(mv[:n])
        pos += n
    f.seek(body_end)
    tag = f.read(TRAILER_LEN)
    if not sign.equal(signer.finish(inner), tag):
        raise PackageError("route package signature invalid: tampered, or signed for another device")
    return whole.digest()[:8], size, h, secs


def _crc(f, buf, off, ln):
    f.seek(off)
    crc = 0
    mv = memoryview(buf)
    while ln > 0:
        n = f.readinto(buf)
        if not n:
            raise PackageError("route package truncated while reading")
        if n > ln:
            n = ln
        crc = binascii.crc32(mv[:n], crc)
        ln -= n
    return crc & 0xFFFFFFFF


def header(pkg, h, secs):
    """The header's counts against the sections' sizes, and the grid's head: before _setup sizes
    any buffer by them."""
    if secs[b"STOP"][1] != h[4] * 28:
        raise PackageError("route package stop directory size mismatch")
    if secs[b"ITEM"][1] != h[12] * ITEM_LEN:
        raise PackageError("route package item index size mismatch")
    words = h[5]
    if not 4 <= words <= MAX_FENCE_WORDS or words * 2 > secs[b"GEOM"][1]:
        raise PackageError("route package fence size %d out of range" % words)
    goff, glen = secs[b"GRID"]
    if glen < 16:
        raise PackageError("route package grid corrupt")
    f = pkg.file
    f.seek(goff)
    cell, nx, ny = struct.unpack(GRID_HEAD, f.read(16))[2:]
    if cell <= 0 or nx * ny == 0 or 16 + 4 * (nx * ny + 1) > glen:
        raise PackageError("route package grid corrupt")


def structure(pkg, secs):
    """Every directory entry, fence, stop record, grid list and item entry lies inside its section
    and names stops that exist, so the geofence engine and the lookups never index past what they
    read (a package signed with the right key may still have been built wrong)."""
    goff, glen = secs[b"GRID"]
    _stops(pkg, secs[b"GEOM"], secs[b"RECS"][0])
    _grid(pkg, goff + glen)
    _items(pkg)


def _stops(pkg, geom, roff):
    """Every directory entry's box, fence and record lie inside their sections; every fence's ring
    counts add up to its words; every record's texts end inside RECS and are UTF-8."""
    goff, glen = geom
    rend = pkg.recs_end
    geo = pkg.geo
    box = pkg.box
    f = pkg.file
    for i in range(pkg.stop_count):
        f.seek(pkg.dir_off + 28 * i)
        f.readinto(box)
        words = box[5]
        if box[2] < box[0] or box[3] < box[1] or words < 1 or words > len(geo) \
                or box[4] < goff or box[4] & 1 or box[4] + 2 * words > goff + glen \
                or not roff <= box[6] < rend:
            raise PackageError("route package stop %d entry out of bounds" % i)
        f.seek(box[4])
        pkg.readn(geo, words + words)
        nrings = geo[0]
        used = 1 + nrings
        r = 0
        while r < nrings and used <= words:
            n = geo[1 + r] if 1 + r < words else 0
            if n < 3:
                raise PackageError("route package stop %d fence corrupt" % i)
            used += n + n
            r += 1
        if nrings < 1 or used != words:
            raise PackageError("route package stop %d fence corrupt" % i)
        pkg._stop_at(i, box[6], rend)


def _grid(pkg, end):
    """Cell starts ascend and stay inside the list; every list entry names a stop."""
    cells = pkg.nx * pkg.ny
    total = (end - pkg.list_off) // 2
    buf = pkg.pair
    f = pkg.file
    last = 0
    for c in range(cells + 1):
        f.seek(pkg.starts_off + 4 * c)
        pkg.readn(buf, 4)
        start = buf[0]
        if start < last or start > total:
            raise PackageError("route package grid corrupt")
        last = start
    lst = pkg.lst
    pos = 0
    while pos < last:
        n = min(last - pos, len(lst))
        f.seek(pkg.list_off + 2 * pos)
        pkg.readn(lst, n + n)
        for q in range(n):
            if lst[q] >= pkg.stop_count:
                raise PackageError("route package grid names stop %d of %d" % (lst[q], pkg.stop_count))
        pos += n


def _items(pkg):
    f = pkg.file
    f.seek(pkg.item_off)
    prev = 0
    for _ in range(pkg.item_count):
        crc, idx = struct.unpack(ITEM_ENTRY, f.read(ITEM_LEN))
        if idx >= pkg.stop_count or crc < prev:
            raise PackageError("route package item index corrupt")
        prev = crc
