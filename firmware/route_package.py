"""Device-side reader of the route package (spec: docs/route-package.md).

Opening a package proves it first (firmware/route_package_check.py, imported for the open and let
go after): header and per-section CRC32, then the HMAC-SHA256 trailer under the device's key, all
streamed through one small buffer. Then its structure: every directory entry, fence, stop record,
grid list and item entry must lie inside its section and name stops that exist, so the geofence
engine and the lookups can never index past what they read (a package signed with the right key
may still have been built wrong). Any failure raises PackageError with a message for the
carrier's screen, so the caller keeps the previous route. After that the package
is served from the file by seek + readinto into buffers allocated once here: the route never sits
in RAM, whatever its size.
"""

import array
import binascii
import struct
import sys

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_StructError = getattr(struct, "error", ValueError)  # MicroPython's struct raises ValueError

MAGIC = b"RPKG"
VERSION = const(1)
HEADER = "<4sBBHHH16sIiiIII8sI"
HEADER_LEN = const(64)
SECTION = "<4sIII"  # tag, offset, length, crc32
SECTION_LEN = const(16)
TRAILER_LEN = const(32)  # HMAC-SHA256
DIR_ENTRY = "<iiiiiii"  # x0 y0 x1 y1 geom_off geom_words rec_off
GRID_HEAD = "<iiiHH"  # x0 y0 cell nx ny
ITEM_ENTRY = "<IH"  # crc32(item id), stop index; sorted by (crc, stop)
ITEM_LEN = const(6)
TAGS = (b"STOP", b"RECS", b"GEOM", b"GRID", b"ITEM", b"RSNS")

# reason kinds (RSNS section)
K_ATTEMPT = const(1)  # EMH: why the item was not delivered
K_ACTION = const(2)  # EMH: what was done with it / how it was delivered
K_OVERRIDE = const(3)  # why the carrier confirmed a delivery the fence did not

_MARKS = const(32)  # fences one lookup tests, listed to clear their bits (more: clear all)
MAX_FENCE_WORDS = const(4096)  # int16 words of the largest fence: 8 KiB of RAM, ~2,000 vertices
_MPY = sys.implementation.name == "micropython"


class PackageError(ValueError):
    pass


class Stop:
    def __init__(self, index, stop_id, seq, address, items):
        self.index = index
        self.stop_id = stop_id
        self.seq = seq
        self.address = address
        self.items = items
        self.item_count = len(items)


class Reasons:
    """A sequence of (code, label) for the carrier to pick from: the entries of one kind (0: all)
    of a package's reason table. Only their indices are held; a label is read when asked for."""

    def __init__(self, pkg, kind):
        self._pkg = pkg
        self._idx = bytes(k for k in range(len(pkg._reason_kind)) if not kind or pkg._reason_kind[k] == kind)

    def __len__(self):
        return len(self._idx)

    def __getitem__(self, i):
        k = self._idx[i]  # IndexError past the end, as a tuple's
        pkg = self._pkg
        f = pkg.file
        f.seek(pkg._reason_at[k] + 2)
        n = f.read(1)[0]
        return pkg._reason_code[k], f.read(n).decode()


class RoutePackage:
    def __init__(self, path, key):
        try:
            self.file = open(path, "rb")
        except OSError:
            raise PackageError("route package %s cannot be opened" % path) from None
        try:
            # the proof, loaded for an open and let go after: its checks and their messages would
            # otherwise hold RAM all day for a package proved once
            from firmware import route_package_check as check

            self.package_hash, self.size, h, secs = check.verify(self.file, key)
            check.header(self, h, secs)
            self._setup(h, secs)
            check.structure(self, secs)
        except PackageError:
            self.file.close()
            raise
        except MemoryError:
            self.file.close()
            raise PackageError("route package needs more memory than this device has") from None
        except (ValueError, IndexError, KeyError, UnicodeError, OSError, _StructError):
            self.file.close()
            raise PackageError("route package is malformed") from None
        finally:
            sys.modules.pop("firmware.route_package_check", None)
            pkg = sys.modules.get("firmware")
            if pkg is not None and hasattr(pkg, "route_package_check"):
                delattr(pkg, "route_package_check")

    # -- serving --------------------------------------------------------------------------------
    def _setup(self, h, secs):
        self.stop_count = h[4]
        self.route_id = h[6].rstrip(b"\0").decode()
        self.service_date = h[7]
        self.origin_lat_e6 = h[8]
        self.origin_lon_e6 = h[9]
        self.kx = h[10]
        self.ky = h[11]
        self.item_count = h[12]
        self.dir_off = secs[b"STOP"][0]
        self.item_off = secs[b"ITEM"][0]
        words = h[5]  # route_package_check.header has bounded it, and the grid's head
        f = self.file
        goff = secs[b"GRID"][0]
        f.seek(goff)
        self.gx0, self.gy0, self.cell, self.nx, self.ny = struct.unpack(GRID_HEAD, f.read(16))
        self.starts_off = goff + 16
        self.list_off = self.starts_off + 4 * (self.nx * self.ny + 1)
        # buffers the geofence engine reuses for every fix
        self.geo = array.array("h", bytes(2 * max(words, 4)))
        self.box = array.array("i", bytes(28))
        self.pair = array.array("i", bytes(8))
        self.lst = array.array("H", bytes(64))
        self.seen = bytearray((self.stop_count + 7) // 8)  # a bit per fence the lookup tested
        self.marks = array.array("H", bytes(2 * _MARKS))  # which, to clear only those next time
        self.nmarks = 0
        self.cand = -1
        self.near_dist = 0
        self.near_in = False
        roff, rlen = secs[b"RECS"]
        self.recs_end = roff + rlen
        self._reasons(*secs[b"RSNS"])

    def readn(self, buf, nbytes):
        """Read nbytes at the file position into the start of buf, without allocating on the VM."""
        if _MPY:
            return self.file.readinto(buf, nbytes)
        return self.file.readinto(memoryview(buf).cast("B")[:nbytes])

    def _reasons(self, off, ln):
        """Check the reason table (the RSNS section at off, ln bytes) and note where each entry
        starts, its code and its kind. The labels stay on flash: `reasons(kind)` reads one when the
        screen shows it."""
        f = self.file
        f.seek(off)
        data = f.read(ln)
        n = data[0]
        at = array.array("I", bytes(4 * n))
        codes = bytearray(n)
        kinds = bytearray(n)
        p = 1
        for k in range(n):
            tl = data[p + 2]
            if p + 3 + tl > ln:
                raise IndexError("reason label past its section")
            bytes(data[p + 3: p + 3 + tl]).decode()  # UTF-8, or the package is refused now
            at[k] = off + p
            codes[k] = data[p]
            kinds[k] = data[p + 1]
            p += 3 + tl
        self._reason_at = at
        self._reason_code = codes
        self._reason_kind = kinds

    def reasons(self, kind):
        """The package's (code, label) reasons of one kind, in its order, read from flash by index."""
        return Reasons(self, kind)

    @property
    def reason_codes(self):
        return [Reasons(self, 0)[k] for k in range(len(self._reason_code))]

    @property
    def reason_kinds(self):
        return {self._reason_code[k]: self._reason_kind[k] for k in range(len(self._reason_code))}

    def _entry(self, i):
        if not 0 <= i < self.stop_count:
            raise IndexError("stop index %d out of range" % i)
        f = self.file
        f.seek(self.dir_off + 28 * i)
        return struct.unpack(DIR_ENTRY, f.read(28))

    def bbox(self, i):
        return self._entry(i)[:4]

    def stop(self, i):
        """The stop at index i (walking order): Stop(index, stop_id, seq, address, items)."""
        return self._stop_at(i, self._entry(i)[6], self.recs_end)

    def stop_id_into(self, i, buf):
        """Copy stop i's id into buf (256 bytes hold any); returns its length. Allocates nothing
        on the VM, so a caller that names stops fix after fix grows no cache of strings."""
        if not 0 <= i < self.stop_count:
            raise IndexError("stop index %d out of range" % i)
        f = self.file
        box = self.box
        f.seek(self.dir_off + 28 * i)
        f.readinto(box)
        f.seek(box[6] + 4)  # past seq and item count
        self.readn(buf, 1)
        n = buf[0]
        self.readn(buf, n)
        return n

    def _stop_at(self, i, off, end):
        f = self.file
        f.seek(off)
        head = f.read(4)
        if len(head) != 4 or off + 4 > end:
            raise PackageError("route package stop %d record out of bounds" % i)
        seq, nitems = struct.unpack("<HH", head)
        pos = off + 4
        texts = []
        for _ in range(2 + nitems):
            n = f.read(1)
            if not n or pos + 1 + n[0] > end:
                raise PackageError("route package stop %d record out of bounds" % i)
            try:
                texts.append(f.read(n[0]).decode())
            except UnicodeError:
                raise PackageError("route package stop %d text is not UTF-8" % i) from None
            pos += 1 + n[0]
        return Stop(i, texts[0], seq, texts[1], texts[2:])

    def find_item(self, item_id):
        """Index of the stop that lists item_id, or -1: binary search of the item index by seek."""
        b = item_id.encode() if isinstance(item_id, str) else item_id
        want = binascii.crc32(b) & 0xFFFFFFFF
        f = self.file
        lo = 0
        hi = self.item_count
        while lo < hi:
            mid = (lo + hi) // 2
            f.seek(self.item_off + ITEM_LEN * mid)
            if struct.unpack(ITEM_ENTRY, f.read(ITEM_LEN))[0] < want:
                lo = mid + 1
            else:
                hi = mid
        s = b.decode()
        while lo < self.item_count:
            f.seek(self.item_off + ITEM_LEN * lo)
            crc, idx = struct.unpack(ITEM_ENTRY, f.read(ITEM_LEN))
            if crc != want:
                break
            if s in self.stop(idx).items:  # crc32 collisions are told apart by the stop's own list
                return idx
            lo += 1
        return -1

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
