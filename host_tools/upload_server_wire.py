"""The depot's half of the upload wire (spec: docs/upload-api.md): reads and checks a batch, writes
the acknowledgement; `encode_batch` builds a device's batch on the host (tests, load generators).
The layout and the device's half are firmware/upload_wire.py. Kept MicroPython-compatible (the VM
fuzz makes acknowledgements with it), but never shipped: a handheld never reads a batch.
"""

import hashlib
import struct

from firmware.sign import MAC_LEN, equal
from firmware.upload_wire import (
    ACK,
    ACK_MAGIC,
    ACK_OK,
    ACK_TAG,
    BATCH_TAG,
    F_DEFLATE,
    HEAD,
    HEAD_LEN,
    MAGIC,
    MAX_RECORD,
    VERSION,
    WBITS,
    FormatError,
)


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
    head = struct.pack(HEAD, MAGIC, VERSION, flags, len(idb), 0, counter, clock, first, last,
                       len(records), len(body)) + idb + hashlib.sha256(body).digest()
    return head + signer.mac(BATCH_TAG, head) + bytes(body)


def _seq(rec):
    return struct.unpack_from("<I", rec, 8)[0]  # record.seq_of, without importing record


class Batch:
    """A parsed, not yet verified, batch. `authentic` checks the header MAC, `intact` the body."""

    def __init__(self, data):
        if len(data) < HEAD_LEN:
            raise FormatError("short batch")
        f = struct.unpack_from(HEAD, data, 0)
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
        return signer.verify(self.mac, BATCH_TAG, self.signed)

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
    head = struct.pack(ACK, ACK_MAGIC, VERSION, status, len(idb), 0, counter, ack_seq,
                       min(stored, 0xFFFF), min(duplicates, 0xFFFF), min(conflicts, 0xFFFF)) + idb
    return head + signer.mac(ACK_TAG, head)


def _deflate(data):
    try:
        import io

        import deflate  # type: ignore  # MicroPython: only builds with compression support can write

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

    import deflate  # type: ignore  # MicroPython

    out = deflate.DeflateIO(io.BytesIO(data), deflate.RAW, WBITS).read(limit + 1)
    if len(out) > limit:
        raise FormatError("body inflates past its record count")
    return out
