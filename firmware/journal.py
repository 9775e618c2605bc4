"""The delivery journal: append-only, power-loss safe, on littlefs. Layout: docs/journal.md.

A record is confirmed (beep) only after `append` returned, and by then it is on flash: the frame is
written and the segment file flushed (littlefs commits a file sync atomically). Frames carry a
length and a CRC32 so a torn or rotted tail is recognised at boot and dropped, keeping all before it.
Segments are small files because littlefs copies a file's last block on every sync of an append.
Sequence numbers come from a persisted lease, so none is handed out twice, even across a power cut
that swallowed the record that had it.
"""

import array
import binascii
import os
import struct

from firmware import record

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

SEG_MAX = const(512)  # bytes per segment before rotation; bench_journal.py measures 256..4096
LEASE = const(128)  # seqs reserved per state write: <1% of appends pay for one (bench p95)
_ENOSPC = const(28)
_HDR = const(2)  # u16 payload length
_TRL = const(4)  # u32 CRC32 over length + payload
FRAME_MAX = _HDR + record.MAX_LEN + _TRL
_SUFFIX = ".seg"
_SEG_COST = const(2)  # blocks a new segment may take: its data block plus metadata growth
_RECHECK = const(8)  # segments between statvfs walks while far from the reserve
_SEGS_MAX = const(1024)  # segment table entries preallocated at most (2 KiB); past that it doubles
_SPAN = const(0xFFFF)  # a u16 table entry: first seq less the table's base


def _table(n, wide):
    """A segment table of n zeroed entries: u32 when wide, else u16."""
    return array.array("I", bytes(4 * n)) if wide else array.array("H", bytes(2 * n))


class JournalError(Exception):
    pass


class JournalFull(JournalError):
    """No room for another record: refuse the scan, tell the carrier, keep everything held."""


def _crc(mv, n):
    # CRC covers the length field too, so a flipped length cannot pass as a shorter frame.
    return binascii.crc32(mv[_HDR: _HDR + n], binascii.crc32(mv[:_HDR])) & 0xFFFFFFFF


def _read_frame(f, buf):
    """Read one frame into `buf`; return its payload length, 0 at a clean end, -1 if torn/corrupt."""
    mv = memoryview(buf)
    got = f.readinto(mv[:_HDR])
    if not got:
        return 0
    if got < _HDR:
        return -1
    n = buf[0] | buf[1] << 8
    if n < record.HEAD_LEN or n > record.MAX_LEN:
        return -1
    if f.readinto(mv[_HDR: _HDR + n + _TRL]) != n + _TRL:
        return -1
    if struct.unpack_from("<I", buf, _HDR + n)[0] != _crc(mv, n):
        return -1
    return n


def _read_state(root):
    """(watermark, lease) from `root`/state, or (0, 0) when it is missing or fails its CRC."""
    try:
        with open(root + "/state", "rb") as f:
            b = f.read(12)
        wm, lease, crc = struct.unpack("<III", b)
        if binascii.crc32(b[:8]) & 0xFFFFFFFF == crc:
            return wm, lease
    except (OSError, ValueError):
        pass
    return 0, 0


def peek(root):
    """(records above the watermark, watermark, highest seq held) read without recovering or
    writing anything: what `depot flash` asks a device before it refuses to flash over unsynced
    records. Reads frames as recovery does, stopping where recovery would drop a torn tail."""
    try:
        names = sorted(os.listdir(root))  # %010d names: text order is seq order
    except OSError:
        return 0, 0, 0
    wm = _read_state(root)[0]
    buf = bytearray(FRAME_MAX)
    mv = memoryview(buf)
    pending = last = 0
    for name in names:
        if not name.endswith(_SUFFIX):
            continue
        with open(root + "/" + name, "rb") as f:
            while True:
                n = _read_frame(f, buf)
                seq = record.seq_of(mv[_HDR: _HDR + n]) if n > 0 else 0
                if seq <= last:
                    break  # the end, a torn frame, or garbage
                last = seq
                if seq > wm:
                    pending += 1
    return pending, wm, last


class Journal:
    def __init__(self, root, seg_max=SEG_MAX, low_blocks=0, full_blocks=0):
        """Open (recover) the journal under `root` on a mounted littlefs.

        low_blocks / full_blocks: free-block thresholds for "low" and "full" (0: from the chip size,
        see _thresholds; full_blocks=-1 keeps no reserve, for tests of littlefs's own ENOSPC).
        """
        self.root = root
        self.seg_max = seg_max
        self._low = low_blocks
        self._reserve = full_blocks
        # The one frame buffer: appends, recovery, and the uploader's and dock's reads (records()),
        # which each step consumes before it awaits anything, so no view of it outlives the step.
        self.frame = bytearray(FRAME_MAX)
        self._f = None  # open segment being appended to
        self._size = 0
        self._rotate = True  # next append opens a new segment
        self._full = False
        self._space = "ok"
        self._low_cached = 0
        self._free = 0  # free blocks at the last statvfs, less _SEG_COST per segment opened since
        self.no_space = False  # littlefs said ENOSPC: full until an acknowledgement frees blocks
        self.needs_remount = False  # ... and its RAM state may be mid-commit: remount, reopen()
        self.torn = 0  # frames dropped at boot (diagnostics)
        try:
            os.mkdir(root)
        except OSError:
            pass  # exists
        self._open()

    def _open(self):
        # (0, 0) without a state: _recover's records decide next_seq
        self.watermark, self._lease = _read_state(self.root)
        self._segs, self._nseg = self._list_segments()  # first seq of each segment less _base, ascending
        self.last_seq = 0
        self._pending = 0
        self._recover()
        if self._lease == 0:
            # State lost (never seen on littlefs, whose rename is atomic): skip a lease's worth so a
            # seq swallowed by a cut after the last durable record is not handed out again.
            self._lease = self.last_seq + 1 + LEASE if self._nseg else 1
        # Above every seq ever handed out: the lease covers those whose record a cut swallowed.
        self.next_seq = max(self._lease, self.last_seq + 1)
        self._reclaim()
        self._check_space()

    # --- public API ---

    def append(self, rec):
        """Give `rec` the next sequence number and make it durable; return the seq."""
        if self._full:
            raise JournalFull("flash full: dock to upload")
        seq = self.next_seq
        try:
            if seq >= self._lease:
                self._save_state(self.watermark, seq + LEASE)
            self.next_seq = seq + 1  # consumed now, whatever happens to the write
            rec.seq = seq
            buf = self.frame
            mv = memoryview(buf)
            n = rec.encode_into(mv[_HDR:])
            buf[0] = n & 0xFF
            buf[1] = n >> 8
            struct.pack_into("<I", buf, _HDR + n, _crc(mv, n))
            size = _HDR + n + _TRL
            if self._rotate or self._size + size > self.seg_max:
                self._open_segment(seq)
            f = self._f
            if f is None:
                raise JournalError("no open segment")
            f.write(mv[:size])
            f.flush()
        except OSError as e:
            self._abandon_segment()
            if e.errno == _ENOSPC:
                self.no_space = self.needs_remount = self._full = True
                self._space = "full"
                raise JournalFull("out of flash space: dock to upload")  # noqa: B904 (MicroPython warns on chaining)
            raise JournalError("journal write failed: %s" % e)  # noqa: B904
        except MemoryError:
            self._abandon_segment()
            raise JournalError("out of memory: record not written")  # noqa: B904
        self._size += size
        self.last_seq = seq
        self._pending += 1
        return seq

    def pending(self):
        """Records held above the watermark (not yet acknowledged by the host)."""
        return self._pending

    def acknowledge(self, seq):
        """The host stored every record up to `seq`: persist the watermark, reclaim segments."""
        seq = min(seq, self.next_seq - 1)  # never pre-acknowledge records not yet written
        if seq <= self.watermark:
            return
        old = self.watermark
        try:
            self._save_state(seq, self._lease)
        except OSError as e:
            raise JournalError("watermark not saved: %s" % e)  # noqa: B904
        if seq >= self.last_seq:
            self._pending = 0  # a sync took everything: no need to read the journal to count it
        else:
            # Count only the newly acknowledged frames (they are about to go), not all that remain.
            self._pending -= self._count(old + 1, seq)
        self._reclaim()
        self.no_space = False  # blocks were freed: statvfs decides again
        self._check_space()

    def records(self, from_seq, buf):
        """Yield (seq, memoryview of the encoded record in `buf`) for each held seq >= from_seq.

        `buf` must hold FRAME_MAX bytes; each view is valid until the next step, and until the next
        append when `buf` is the journal's own `frame` (readers that copy each record out before
        they await anything share it: one buffer, not one per reader). A seq between
        two yielded ones that is missing was never durable and never will be (see docs/journal.md).
        A caller stopping early calls the iterator's close(), so the segment it reads is closed now.
        """
        mv = memoryview(buf)
        i = 0
        while i < self._nseg:
            if i + 1 < self._nseg and self._first(i + 1) <= from_seq:
                i += 1  # every record in it is below from_seq
                continue
            try:
                f = open(self._path(self._first(i)), "rb")
            except OSError:
                i += 1  # reclaimed meanwhile
                continue
            try:
                while True:
                    n = _read_frame(f, buf)
                    if n <= 0:
                        break
                    seq = record.seq_of(mv[_HDR: _HDR + n])
                    if seq >= from_seq:
                        yield seq, mv[_HDR: _HDR + n]
            finally:
                f.close()
            i += 1

    def space(self):
        return self._space

    def close(self):
        self._abandon_segment()

    def reopen(self):
        """Recover again from flash, as at boot, into this same object (the dock and the uploader
        hold it): after the filesystem was remounted, which closed every file."""
        self._abandon_segment()
        self.needs_remount = False
        self._open()

    # --- internals ---

    def _path(self, first):
        return "%s/%010d%s" % (self.root, first, _SUFFIX)

    def _first(self, i):
        """The first seq of held segment i (the table holds it less _base, in 16 bits)."""
        return self._base + self._segs[i]

    def _list_segments(self):
        # A day of appends must not grow the table on a fragmented heap: it is an array sized at
        # boot for one segment per block of the chip, the most littlefs holds unless segments are
        # inline (then _open_segment doubles it). Entries are u16 offsets from _base, the first
        # seq of the oldest segment held (reset as segments are reclaimed): half the heap of u32
        # seqs. The held segments spanning more than 65,535 seqs widens it to u32 (_store).
        found = []
        for name in os.listdir(self.root):
            if name.endswith(_SUFFIX):
                try:
                    found.append(int(name[: -len(_SUFFIX)]))
                except ValueError:
                    pass
        found.sort()
        try:
            blocks = os.statvfs(self.root)[2]
        except OSError:
            blocks = 64
        self._base = found[0] if found else 0
        self._wide = bool(found) and found[-1] - self._base > _SPAN
        segs = _table(max(2 * len(found), min(blocks, _SEGS_MAX), 16), self._wide)
        for i, first in enumerate(found):
            segs[i] = first - self._base
        return segs, len(found)

    def _drop(self, i, k):
        """Remove k entries of the segment table from index i. From index 0 (reclaim), the first
        one left becomes the base, so offsets stay as small as the seqs held span."""
        segs = self._segs
        n = self._nseg - k
        shift = segs[k] if i == 0 and n > 0 else 0
        while i < n:
            segs[i] = segs[i + k] - shift
            i += 1
        self._nseg = n
        self._base = self._base + shift if n else 0

    def _save_state(self, watermark, lease):
        """Persist both, then take them: a failed write leaves the state as it was on flash."""
        # New file, then rename over the old: littlefs renames atomically, so a cut leaves one of the two.
        b = struct.pack("<II", watermark, lease)
        tmp = self.root + "/state.tmp"
        with open(tmp, "wb") as f:
            f.write(b)
            f.write(struct.pack("<I", binascii.crc32(b) & 0xFFFFFFFF))
        os.rename(tmp, self.root + "/state")
        self.watermark = watermark
        self._lease = lease

    def _recover(self):
        buf = self.frame
        mv = memoryview(buf)
        last = 0
        i = 0
        while i < self._nseg:
            first = self._first(i)
            good = 0
            with open(self._path(first), "rb") as f:
                while True:
                    n = _read_frame(f, buf)
                    if n == 0:
                        break
                    seq = record.seq_of(mv[_HDR: _HDR + n]) if n > 0 else 0
                    if n < 0 or seq <= last:
                        # Torn tail (or garbage): keep what came before, never append after it.
                        self.torn += 1
                        break
                    last = seq
                    good += 1
                    if seq > self.watermark:
                        self._pending += 1
            if good == 0:
                os.remove(self._path(first))  # created, then the cut came before its first frame
                self._drop(i, 1)
                continue
            i += 1
        self.last_seq = last
        self._rotate = True  # always start a fresh segment after boot: the old tail may be torn

    def _count(self, from_seq, upto):
        n = 0
        it = self.records(from_seq, self.frame)
        for seq, _ in it:
            if seq > upto:
                break
            n += 1
        it.close()
        return n

    def _reclaim(self):
        n = self._nseg
        # A segment is all <= watermark when the next one starts at or below watermark + 1
        # (or, for the last one, when the last record written is acknowledged).
        k = 0
        while k < n:
            end = self._first(k + 1) - 1 if k + 1 < n else self.last_seq
            if end > self.watermark:
                break
            if k + 1 == n:
                self._abandon_segment()
            try:
                os.remove(self._path(self._first(k)))
            except OSError:
                pass
            k += 1
        if k:
            self._drop(0, k)

    def _open_segment(self, first):
        self._abandon_segment()
        n = self._nseg
        if not n:
            self._base = first
        self._store(n, first - self._base)
        self._f = open(self._path(first), "ab")
        self._nseg += 1
        self._size = 0
        self._rotate = False
        # statvfs walks the whole filesystem (ms and growing with the files held): count down a
        # conservative estimate and walk only when it nears the thresholds or every _RECHECK segments.
        self._free -= _SEG_COST
        if self._free < self._low_cached + _RECHECK * _SEG_COST or self._nseg % _RECHECK == 0:
            self._check_space()

    def _store(self, i, offset):
        """Set table entry i, growing the table first when it is full (inline segments outnumber
        the blocks: double it) or when the offset does not fit 16 bits (widen it to 32)."""
        segs = self._segs
        n = len(segs)
        widen = offset > _SPAN and not self._wide
        if i == n or widen:
            self._wide = self._wide or widen
            grown = _table(2 * n if i == n else n, self._wide)
            for k in range(self._nseg):
                grown[k] = segs[k]
            self._segs = segs = grown
        segs[i] = offset

    def _abandon_segment(self):
        f = self._f
        self._f = None
        self._rotate = True
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def _thresholds(self, total):
        reserve = self._reserve or max(4, total // 32)
        return reserve, self._low or max(reserve * 2, total // 10)

    def _check_space(self):
        try:
            st = os.statvfs(self.root)
        except OSError:
            return
        free = self._free = st[3]
        reserve, low = self._thresholds(st[2])
        self._low_cached = low
        if free < reserve or self.no_space:
            self._full = True
            self._space = "full"
        else:
            self._full = False
            self._space = "low" if free < low else "ok"
