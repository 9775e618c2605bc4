"""Cellular upload batches and the server's acknowledgement: the byte layout both sides use, and
the device's half of it (BatchWriter, parse_ack, CounterLease). Spec: docs/upload-api.md. The
depot's half (reading batches, writing acknowledgements) is host_tools/upload_server_wire.py, so
a handheld does not hold it in RAM.

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
HEAD = "<4sBBBBIIIIHI"
HEAD_LEN = const(30)
# magic, version, status, id length, reserved, counter, ack seq, stored, duplicates, conflicts
ACK = "<4sBBBBIIHHH"
ACK_LEN = const(22)
MAX_ID = const(64)
MAX_RECORD = const(255)  # one length byte per record; record.MAX_LEN is 212

ACK_OK = const(0)
ACK_CONFLICT = const(1)  # some records clash with what the server holds; refused and flagged
ACK_REFUSED = const(2)  # the server will never take this batch as sent: the device quarantines it

BATCH_TAG = b"upload-batch/1"
ACK_TAG = b"upload-ack/1"


class FormatError(ValueError):
    pass


def header_len(device_id):
    return HEAD_LEN + len(device_id) + 2 * MAC_LEN  # + body SHA-256 + MAC


class BatchWriter:
    """Builds batches in one preallocated buffer: records are copied in as they are read from the
    journal, the header and MAC are written in front once the range is known."""

    def __init__(self, device_id, signer, size=4096, buf=None):
        self.id = device_id.encode() if isinstance(device_id, str) else device_id
        if len(self.id) > MAX_ID:
            raise FormatError("device id too long")
        self.signer = signer
        self.buf = bytearray(size) if buf is None else buf  # buf: lent by the caller
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
        struct.pack_into(HEAD, self.buf, 0, MAGIC, VERSION, 0, len(self.id), 0, counter, clock,
                         self.first, self.last, self.count, len(body))
        end = HEAD_LEN + len(self.id)
        self.buf[HEAD_LEN: end] = self.id
        self.buf[end: end + MAC_LEN] = hashlib.sha256(body).digest()
        self.buf[end + MAC_LEN: self.hlen] = self.signer.mac(BATCH_TAG, self.mv[: end + MAC_LEN])
        return self.mv[: self.n]


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
    f = struct.unpack_from(ACK, data, 0)
    if f[0] != ACK_MAGIC or f[1] != VERSION or f[3] != len(idb) or f[5] != counter:
        return None
    mv = memoryview(data)
    if not equal(mv[ACK_LEN: ACK_LEN + len(idb)], idb):
        return None
    end = ACK_LEN + len(idb)
    if not signer.verify(mv[end:], ACK_TAG, mv[:end]):
        return None
    return Ack(f[2], f[5], f[6], f[7], f[8], f[9])


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
