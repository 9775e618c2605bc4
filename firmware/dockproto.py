"""Dock link framing and message layouts, shared by the device (MicroPython) and the depot (CPython).
Spec: docs/dock-protocol.md.

A frame on the wire is COBS(type, seq, ack, payload..., crc32 LE) followed by one 0x00 delimiter.
COBS removes every zero from the body, so a receiver that lost bytes resynchronises at the next
zero; the CRC32 catches what noise flipped, and such a frame is simply dropped (the window
retransmits it). Decoding works in place in one preallocated buffer and allocates nothing, so the
dock task can run beside the carrier's scanning without feeding the garbage collector.
"""

import binascii
import struct
import sys

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

MAX_PAYLOAD = const(1000)  # keeps a stuffed frame near 1 KiB
HEAD = const(3)  # type, seq, ack
MAX_FRAME = const(1007)  # HEAD + MAX_PAYLOAD + 4 (CRC)
MAX_WIRE = const(1024)  # stuffed: one code byte per 254 plus the first one, and the delimiter

# requests (host -> device); the device answers with type | 0x80 and ack = the request's seq
HELLO = const(0x01)
SET_CLOCK = const(0x02)
PUT_BEGIN = const(0x03)
PUT_DATA = const(0x04)
PUT_END = const(0x05)
GET_RECORDS = const(0x06)
RECORDS = const(0x07)  # device -> host stream frame; seq = frame number, ack = the GET's seq
PROGRESS = const(0x08)  # host -> device during a stream; seq = the GET's seq; no answer
ACK = const(0x09)
STATUS = const(0x0A)
AUTH = const(0x0B)  # the host's proof of the device key; every request but HELLO waits for it
SET_KEY = const(0x0C)  # a new device key, sealed under the session key (depot rotate-key)
ERROR = const(0x7F)  # device -> host; ack = the failed request's seq
REPLY = const(0x80)

# RECORDS flags
F_LAST = const(1)  # the journal has nothing more from this stream
# PROGRESS flags
F_NAK = const(1)  # a frame went missing: go back to next_frame / next_seq now

# ERROR codes
E_BAD_REQUEST = const(1)
E_UNKNOWN = const(2)
E_ACK_REFUSED = const(3)
E_ROUTE = const(4)
E_IO = const(5)
E_AUTH = const(6)  # the host has not proved the device key in this session (or its proof failed)

# message payload layouts (little endian); strings are a u8 length + UTF-8
NONCE = const(16)  # bytes of each side's fresh session nonce
TAG = const(16)  # bytes of the session MAC at the end of each RECORDS frame
# first_seq last_seq watermark pending free_flash battery route_hash device_nonce
HELLO_FIXED = "<IIIIIB8s16s"
PUT_BEGIN_FIXED = "<I32s"  # total size, sha256 of the package
PUT_DATA_FIXED = "<I"  # offset; data follows
PUT_REPLY = "<IB"  # bytes of /route/incoming.pkg held, 1 if this chunk was out of order
GET_FIXED = "<IBH"  # from_seq, window (frames in flight), payload bytes per frame at most
PROGRESS_FIXED = "<BIBH"  # next_frame, next_seq, flags, payload bytes per frame from now on
ACK_FIXED = "<I32s"  # seq, HMAC-SHA256 under the session key
ACK_REPLY = "<I"  # watermark after the ack
STATUS_FIXED = "<IIIIB"  # pending last_seq watermark free_flash battery
MAX_DATA = const(996)  # PUT_DATA bytes per frame
SET_KEY_FIXED = "<32s32s"  # new key XOR the session's key pad, HMAC of that under the session key
# Domain separation: no MAC made for one purpose (an upload, a route package, another message
# here) can pass for another.
HELLO_TAG = b"DOCKHELLO2"  # device proof: HMAC(key, tag | host nonce | HELLO reply before the proof)
AUTH_TAG = b"DOCKAUTH2"  # host proof: HMAC(key, tag | host nonce | device nonce | device id)
SESSION_TAG = b"DOCKSESS2"  # session key: HMAC(key, tag | host nonce | device nonce)
ACK_TAG = b"DOCKACK2"  # under the session key: tag | device id | seq
REC_TAG = b"DOCKREC2"  # under the session key: tag | GET id | frame number | frame payload
KEY_TAG = b"DOCKKEY2"  # under the session key: the pad (tag) and the MAC (tag | sealed key)

_MPY = sys.implementation.name == "micropython"


def _crc_tables():
    # CRC-32 (IEEE, reflected) split in 16-bit halves: every value stays a small int on a 32-bit
    # MCU, where a 32-bit int would be a heap object.
    import array

    lo = array.array("H", bytes(512))
    hi = array.array("H", bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        lo[i] = c & 0xFFFF
        hi[i] = c >> 16
    return lo, hi


_TLO, _THI = _crc_tables()


def crc_ok(buf, n):
    """True if the CRC32 in buf[n-4:n] (LE) matches buf[:n-4]. Allocates nothing."""
    m = n - 4
    if not _MPY:
        return binascii.crc32(memoryview(buf)[:m]) & 0xFFFFFFFF == struct.unpack_from("<I", buf, m)[0]
    tlo = _TLO
    thi = _THI
    lo = 0xFFFF
    hi = 0xFFFF
    i = 0
    while i < m:
        x = (lo ^ buf[i]) & 0xFF
        lo = (((lo >> 8) | ((hi & 0xFF) << 8)) ^ tlo[x]) & 0xFFFF
        hi = (hi >> 8) ^ thi[x]
        i += 1
    return (lo ^ 0xFFFF) == buf[m] | buf[m + 1] << 8 and (hi ^ 0xFFFF) == buf[m + 2] | buf[m + 3] << 8


class Decoder:
    """Collects wire bytes up to each zero delimiter and unstuffs the frame in place.

    After `feed` returns with `ready` set: `type`, `seq`, `ack` and the payload in
    buf[HEAD:HEAD + plen]. Bad frames (CRC, stuffing, length) are counted in `bad` and dropped.
    """

    def __init__(self):
        self.buf = bytearray(MAX_WIRE)
        self.n = 0
        self.over = False
        self.ready = False
        self.type = 0
        self.seq = 0
        self.ack = 0
        self.plen = 0
        self.good = 0
        self.bad = 0

    def feed(self, data, pos, end):
        """Consume data[pos:end] up to and including the next delimiter; return the new pos."""
        self.ready = False
        buf = self.buf
        cap = MAX_WIRE
        n = self.n
        while pos < end:
            b = data[pos]
            pos += 1
            if b == 0:
                self.n = n
                self._finish()
                return pos
            if n < cap:
                buf[n] = b
                n += 1
            else:
                self.over = True
        self.n = n
        return pos

    def _finish(self):
        n = self.n
        over = self.over
        self.n = 0
        self.over = False
        if n == 0:
            return  # empty frame: a bare delimiter used to flush the line
        if over:
            self.bad += 1
            return
        buf = self.buf
        r = 0
        w = 0
        while r < n:
            code = buf[r]
            r += 1
            stop = r + code - 1
            if stop > n:
                self.bad += 1
                return
            while r < stop:
                buf[w] = buf[r]
                w += 1
                r += 1
            if code < 0xFF and r < n:
                buf[w] = 0
                w += 1
        if w < HEAD + 4 or w > MAX_FRAME or not crc_ok(buf, w):
            self.bad += 1
            return
        self.type = buf[0]
        self.seq = buf[1]
        self.ack = buf[2]
        self.plen = w - HEAD - 4
        self.good += 1
        self.ready = True


class Encoder:
    """Builds one frame at a time: write the payload into `payload` (a view of `raw` after the
    header), then `frame(type, seq, ack, plen)` returns the wire bytes as a view of `out`."""

    def __init__(self):
        self.raw = bytearray(MAX_FRAME)
        self.out = bytearray(MAX_WIRE)
        self._raw = memoryview(self.raw)
        self._out = memoryview(self.out)
        self.payload = self._raw[HEAD:HEAD + MAX_PAYLOAD]

    def frame(self, ftype, seq, ack, plen):
        if plen > MAX_PAYLOAD:
            raise ValueError("payload too long")
        raw = self.raw
        raw[0] = ftype
        raw[1] = seq & 0xFF
        raw[2] = ack & 0xFF
        m = HEAD + plen
        struct.pack_into("<I", raw, m, binascii.crc32(self._raw[:m]) & 0xFFFFFFFF)
        return self._out[:stuff(raw, m + 4, self.out)]


def stuff(src, n, out):
    """COBS-encode src[:n] into out and append the 0x00 delimiter; return the bytes written."""
    code_at = 0
    w = 1
    code = 1
    i = 0
    while i < n:
        b = src[i]
        i += 1
        if b == 0:
            out[code_at] = code
            code_at = w
            w += 1
            code = 1
            continue
        out[w] = b
        w += 1
        code += 1
        if code == 0xFF:
            out[code_at] = code
            code_at = w
            w += 1
            code = 1
    out[code_at] = code
    out[w] = 0
    return w + 1


def put_str(buf, off, s):
    b = s.encode() if isinstance(s, str) else s
    n = len(b)
    if n > 255:
        raise ValueError("string too long")
    buf[off] = n
    buf[off + 1: off + 1 + n] = b
    return off + 1 + n


def get_str(buf, off):
    """(str, next offset); raises ValueError on a truncated field."""
    n = buf[off]
    if off + 1 + n > len(buf):
        raise ValueError("truncated string")
    return bytes(buf[off + 1: off + 1 + n]).decode(), off + 1 + n


def id_field(device_id):
    d = device_id.encode() if isinstance(device_id, str) else device_id
    return bytes((len(d),)) + d


def auth_message(host_nonce, device_nonce, device_id):
    """The bytes the host's proof of the key covers."""
    return AUTH_TAG + bytes(host_nonce) + bytes(device_nonce) + id_field(device_id)


def session_key(signer, host_nonce, device_nonce):
    """The key every MAC of one session uses: bound to both sides' fresh nonces, so nothing
    recorded in one session (an ACK, a record frame) verifies in another."""
    return signer.mac(SESSION_TAG, host_nonce, device_nonce)


def ack_message(device_id, seq):
    """The bytes an ACK's HMAC (under the session key) covers: tag, device id, sequence number."""
    return ACK_TAG + id_field(device_id) + struct.pack("<I", seq)
