"""Cellular upload batches and the server's acknowledgement: the one byte layout both sides use.
Spec: docs/upload-api.md. Runs on MicroPython (device) and CPython (server, tests).

A batch is a signed header followed by length-prefixed encoded records. The header carries the
SHA-256 of the body as sent and the MAC covers every header byte (device id, request counter,
clock, sequence range, count, body length, flags, body hash), so the server can tell a forged
header (bad MAC) from a body altered in transit (MAC good, body hash wrong). The acknowledgement
is signed under the same key and names the request counter, so an old acknowledgement cannot be
replayed to the device.
"""

import hashlib
import struct

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from firmware.sign import MAC_LEN, equal

MAGIC = b"PSUB"
ACK_MAGIC = b"PSAK"
VERSION = const(1)
F_DEFLATE = const(1)  # body is a raw deflate stream of the record list
WBITS = const(10)  # 1 KiB deflate window: small enough for a device to inflate

# magic, version, flags, id length, reserved, counter, device clock, first seq, last seq, count,
# body length
_HEAD = "<4sBBBBIIIIHI"
HEAD_LEN = const(30)
# magic, version, status, id length, reserved, counter, ack seq, stored, duplicates, conflicts
_ACK = "<4sBBBBIIHHH"
ACK_LEN = const(22)
MAX_ID = const(64)
MAX_RECORD = const(255)  # one length byte per record; record.MAX_LEN is 212

ACK_OK = const(0)
ACK_CONFLICT = const(1)  # some records clash with what the server holds; refused and flagged
ACK_REFUSED = const(2)  # the server will never take this batch as sent: the device quarantines it

_BATCH_TAG = b"upload-batch/1"
_ACK_TAG = b"upload-ack/1"


class FormatError(ValueError):
    pass


def header_len(device_id):
    return HEAD_LEN + len(device_id) + 2 * MAC_LEN  # + body SHA-256 + MAC


class BatchWriter:
    """Builds batches in one preallocated buffer: records are copied in as they are read from the
    journal, the header and MAC are written in front once the range is known."""

    def __init__(self, device_id, signer, size=4096):
        self.id = device_id.encode() if isinstance(device_id, str) else device_id
        if len(self.id) > MAX_ID:
            raise FormatError("device id too long")
        self.signer = signer
        self.buf = bytearray(size)
        self.mv = memoryview(self.buf)
        self.hlen = header_len(self.id)
        self.begin()

    def begin(self, first=0):
        """Start a batch covering seqs from `first` (the watermark + 1): any seq from there to the
        last record added that is not in the batch is declared absent (the journal never held
        it: a skipped lease, a torn tail), so the server's acknowledgement may pass it."""
        self.n = self.hlen
        self.count = 0
        self.first = first
        self.last = 0

    def add(self, seq, rec):
        """Append one encoded record; False (nothing written) when it would not fit."""
        ln = len(rec)
        if ln > MAX_RECORD:
            raise FormatError("record too long")
        if self.n + 1 + ln > len(self.buf):
            return False
        self.buf[self.n] = ln
        self.mv[self.n + 1: self.n + 1 + ln] = rec
        self.n += 1 + ln
        if self.count == 0 and (self.first == 0 or self.first > seq):
            self.first = seq
        self.last = seq
        self.count += 1
        return True

    def finish(self, counter, clock):
        """Write header and MAC; return a memoryview of the whole request body."""
        body = self.mv[self.hlen: self.n]
        struct.pack_into(_HEAD, self.buf, 0, MAGIC, VERSION, 0, len(self.id), 0, counter, clock,
                         self.first, self.last, self.count, len(body))
        end = HEAD_LEN + len(self.id)
        self.buf[HEAD_LEN: end] = self.id
        self.buf[end: end + MAC_LEN] = hashlib.sha256(body).digest()
        self.buf[end + MAC_LEN: self.hlen] = self.signer.mac(_BATCH_TAG, self.mv[: end + MAC_LEN])
        return self.mv[: self.n]


def encode_batch(device_id, signer, counter, clock, records, compress=False, first=None):
    """Convenience for hosts and tests: `records` is a list of encoded record bytes in seq
    order; `first` (default: the first record's seq) starts the covered range."""
    body = bytearray()
    for r in records:
        if len(r) > MAX_RECORD:
            raise FormatError("record too long")
        body.append(len(r))
        body += r
    flags = 0
    if compress:
        packed = _deflate(bytes(body))
        if packed is not None and len(packed) < len(body):
            body = bytearray(packed)
            flags = F_DEFLATE
    idb = device_id.encode() if isinstance(device_id, str) else device_id
    if first is None:
        first = _seq(records[0]) if records else 0
    last = _seq(records[-1]) if records else 0
    head = struct.pack(_HEAD, MAGIC, VERSION, flags, len(idb), 0, counter, clock, first, last,
                       len(records), len(body)) + idb + hashlib.sha256(body).digest()
    return head + signer.mac(_BATCH_TAG, head) + bytes(body)


def _seq(rec):
    return struct.unpack_from("<I", rec, 8)[0]  # record.seq_of, without importing record


class Batch:
    """A parsed, not yet verified, batch. `authentic` checks the header MAC, `intact` the body."""

    def __init__(self, data):
        if len(data) < HEAD_LEN:
            raise FormatError("short batch")
        f = struct.unpack_from(_HEAD, data, 0)
        if f[0] != MAGIC or f[1] != VERSION:
            raise FormatError("not a version %d batch" % VERSION)
        self.flags = f[2]
        idl = f[3]
        self.counter = f[5]
        self.clock = f[6]
        self.first = f[7]
        self.last = f[8]
        self.count = f[9]
        self.body_len = f[10]
        mv = memoryview(data)
        self.hlen = HEAD_LEN + idl + 2 * MAC_LEN
        if len(data) < self.hlen:
            raise FormatError("short batch")
        self.device_id = bytes(mv[HEAD_LEN: HEAD_LEN + idl]).decode()
        self.signed = mv[: self.hlen - MAC_LEN]
        self.body_hash = mv[HEAD_LEN + idl: self.hlen - MAC_LEN]
        self.mac = mv[self.hlen - MAC_LEN: self.hlen]
        self.body = mv[self.hlen:]

    def authentic(self, signer):
        """The header (ids, counter, range, body hash) was signed under this key."""
        return signer.verify(self.mac, _BATCH_TAG, self.signed)

    def intact(self):
        """The body is the one the device signed."""
        return len(self.body) == self.body_len and equal(hashlib.sha256(self.body).digest(), self.body_hash)

    def records(self):
        """The encoded records, as a list of bytes; FormatError if the body does not parse.
        A deflated body is inflated with the spec's 1 KiB window and never past the size its
        record count allows (count x 256 bytes), so a small body cannot inflate to megabytes."""
        body = self.body
        if self.flags & F_DEFLATE:
            try:
                body = memoryview(_inflate(bytes(body), self.count * (1 + MAX_RECORD)))
            except FormatError:
                raise
            except Exception:  # zlib.error on CPython, OSError on MicroPython
                raise FormatError("body does not inflate") from None
        elif self.flags:
            raise FormatError("unknown flags")
        out = []
        n = 0
        while n < len(body):
            ln = body[n]
            if n + 1 + ln > len(body):
                raise FormatError("record truncated")
            out.append(bytes(body[n + 1: n + 1 + ln]))
            n += 1 + ln
        if len(out) != self.count:
            raise FormatError("record count mismatch")
        prev = self.first - 1
        for r in out:
            s = _seq(r)
            if s <= prev:
                raise FormatError("records out of order or outside the range")
            prev = s
        if out and prev != self.last:
            raise FormatError("sequence range mismatch")
        return out

    def absent(self, records):
        """Seqs of the covered range the device declares it never held (not in `records`)."""
        if not records:
            return []
        held = set(_seq(r) for r in records)
        return [s for s in range(self.first, self.last + 1) if s not in held]


def encode_ack(signer, device_id, counter, ack_seq, stored=0, duplicates=0, conflicts=0, status=ACK_OK):
    idb = device_id.encode() if isinstance(device_id, str) else device_id
    head = struct.pack(_ACK, ACK_MAGIC, VERSION, status, len(idb), 0, counter, ack_seq,
                       min(stored, 0xFFFF), min(duplicates, 0xFFFF), min(conflicts, 0xFFFF)) + idb
    return head + signer.mac(_ACK_TAG, head)


class Ack:
    def __init__(self, status, counter, ack_seq, stored, duplicates, conflicts):
        self.status = status
        self.counter = counter
        self.ack_seq = ack_seq
        self.stored = stored
        self.duplicates = duplicates
        self.conflicts = conflicts


def parse_ack(data, signer, device_id, counter):
    """The acknowledgement for request `counter`, or None if it is not one the server signed for it
    (bad MAC, another device, another request, truncated): never trust a bare HTTP 200."""
    idb = device_id.encode() if isinstance(device_id, str) else device_id
    if len(data) != ACK_LEN + len(idb) + MAC_LEN:
        return None
    f = struct.unpack_from(_ACK, data, 0)
    if f[0] != ACK_MAGIC or f[1] != VERSION or f[3] != len(idb) or f[5] != counter:
        return None
    mv = memoryview(data)
    if not equal(mv[ACK_LEN: ACK_LEN + len(idb)], idb):
        return None
    end = ACK_LEN + len(idb)
    if not signer.verify(mv[end:], _ACK_TAG, mv[:end]):
        return None
    return Ack(f[2], f[5], f[6], f[7], f[8], f[9])


def _deflate(data):
    try:
        import io

        import deflate  # MicroPython: only builds with compression support can write

        out = io.BytesIO()
        d = deflate.DeflateIO(out, deflate.RAW, WBITS)
        d.write(data)  # type: ignore[attr-defined]
        d.close()
        return out.getvalue()  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        pass
    try:
        import zlib  # type: ignore  # CPython

        c = zlib.compressobj(9, zlib.DEFLATED, -WBITS)  # type: ignore[attr-defined]
        return c.compress(data) + c.flush()
    except ImportError:
        return None


def _inflate(data, limit):
    """Inflate a raw deflate stream of window WBITS; FormatError past `limit` bytes."""
    try:
        import zlib  # type: ignore
    except ImportError:
        zlib = None
    # CPython's zlib; a port may freeze micropython-lib's zlib instead (the WebAssembly one does),
    # which has no decompressobj: deflate is the MicroPython way then
    if zlib is not None and hasattr(zlib, "decompressobj"):
        d = zlib.decompressobj(-WBITS)  # type: ignore[attr-defined]
        out = d.decompress(data, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise FormatError("body inflates past its record count")
        if not d.eof:
            raise FormatError("body does not inflate")
        return out
    import io

    import deflate

    out = deflate.DeflateIO(io.BytesIO(data), deflate.RAW, WBITS).read(limit + 1)
    if len(out) > limit:
        raise FormatError("body inflates past its record count")
    return out


class CounterLease:
    """Request counters that never repeat, across power cuts, without a flash write per request.

    The state file holds the end of the current lease. At start we resume from that end, so the
    counters of a lease interrupted by a power cut are skipped, never reused. The file is replaced
    with write-new + rename (atomic on littlefs) before any counter of a new lease is handed out.
    """

    LIMIT = const(0x3FFFFFFF)  # the largest small int on a 32-bit MCU: no counter goes past it

    def __init__(self, path, lease=16):
        self.path = path
        self.lease = lease
        self.next = self._load()
        self.end = self.next  # nothing leased yet in this boot

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                b = f.read(4)
            if len(b) == 4:
                return min(struct.unpack("<I", b)[0], CounterLease.LIMIT)
        except OSError:
            pass
        return 1

    def skip(self, n):
        """Jump ahead (the server's counter is above ours), never past LIMIT."""
        self.next = min(self.next + n, CounterLease.LIMIT)

    def restart(self):
        """A new key (depot rotate-key, delivered by the dock): the server forgot the old key's
        counters, and requests under the new key cannot be replays of old ones."""
        self.next = 1
        self.end = 0  # the next take() writes a fresh lease before handing out a counter

    def take(self):
        """The next counter, or -1 when they are used up (only a rotated key starts them again:
        a counter of 0xFFFFFFFF must not become a crash or a wrap that replays)."""
        if self.next >= CounterLease.LIMIT:
            return -1
        if self.next >= self.end:
            end = self.next + self.lease
            tmp = self.path + ".new"
            with open(tmp, "wb") as f:
                f.write(struct.pack("<I", end))
            import os

            os.rename(tmp, self.path)
            self.end = end
        c = self.next
        self.next += 1
        return c
