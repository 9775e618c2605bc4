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
_LEAD = const(4)  # Encoder: the raw frame starts here in the wire buffer (> the 3 code bytes stuffing adds)

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
PUT_REPLY = "<IB"  # bytes of /data/route/incoming.pkg held, 1 if this chunk was out of order
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


# CRC-32 (IEEE, reflected) of each byte value, 4 bytes little-endian per entry: a bytes constant, so
# the table stays in the module's bytecode (ROM on a board) and every lookup is a small int, on a
# 32-bit MCU too (where a 32-bit int would be a heap object).
_CRC_TABLE = (
    b"\x00\x00\x00\x00\x96\x30\x07\x77\x2c\x61\x0e\xee\xba\x51\x09\x99\x19\xc4\x6d\x07\x8f\xf4\x6a\x70"
    b"\x35\xa5\x63\xe9\xa3\x95\x64\x9e\x32\x88\xdb\x0e\xa4\xb8\xdc\x79\x1e\xe9\xd5\xe0\x88\xd9\xd2\x97"
    b"\x2b\x4c\xb6\x09\xbd\x7c\xb1\x7e\x07\x2d\xb8\xe7\x91\x1d\xbf\x90\x64\x10\xb7\x1d\xf2\x20\xb0\x6a"
    b"\x48\x71\xb9\xf3\xde\x41\xbe\x84\x7d\xd4\xda\x1a\xeb\xe4\xdd\x6d\x51\xb5\xd4\xf4\xc7\x85\xd3\x83"
    b"\x56\x98\x6c\x13\xc0\xa8\x6b\x64\x7a\xf9\x62\xfd\xec\xc9\x65\x8a\x4f\x5c\x01\x14\xd9\x6c\x06\x63"
    b"\x63\x3d\x0f\xfa\xf5\x0d\x08\x8d\xc8\x20\x6e\x3b\x5e\x10\x69\x4c\xe4\x41\x60\xd5\x72\x71\x67\xa2"
    b"\xd1\xe4\x03\x3c\x47\xd4\x04\x4b\xfd\x85\x0d\xd2\x6b\xb5\x0a\xa5\xfa\xa8\xb5\x35\x6c\x98\xb2\x42"
    b"\xd6\xc9\xbb\xdb\x40\xf9\xbc\xac\xe3\x6c\xd8\x32\x75\x5c\xdf\x45\xcf\x0d\xd6\xdc\x59\x3d\xd1\xab"
    b"\xac\x30\xd9\x26\x3a\x00\xde\x51\x80\x51\xd7\xc8\x16\x61\xd0\xbf\xb5\xf4\xb4\x21\x23\xc4\xb3\x56"
    b"\x99\x95\xba\xcf\x0f\xa5\xbd\xb8\x9e\xb8\x02\x28\x08\x88\x05\x5f\xb2\xd9\x0c\xc6\x24\xe9\x0b\xb1"
    b"\x87\x7c\x6f\x2f\x11\x4c\x68\x58\xab\x1d\x61\xc1\x3d\x2d\x66\xb6\x90\x41\xdc\x76\x06\x71\xdb\x01"
    b"\xbc\x20\xd2\x98\x2a\x10\xd5\xef\x89\x85\xb1\x71\x1f\xb5\xb6\x06\xa5\xe4\xbf\x9f\x33\xd4\xb8\xe8"
    b"\xa2\xc9\x07\x78\x34\xf9\x00\x0f\x8e\xa8\x09\x96\x18\x98\x0e\xe1\xbb\x0d\x6a\x7f\x2d\x3d\x6d\x08"
    b"\x97\x6c\x64\x91\x01\x5c\x63\xe6\xf4\x51\x6b\x6b\x62\x61\x6c\x1c\xd8\x30\x65\x85\x4e\x00\x62\xf2"
    b"\xed\x95\x06\x6c\x7b\xa5\x01\x1b\xc1\xf4\x08\x82\x57\xc4\x0f\xf5\xc6\xd9\xb0\x65\x50\xe9\xb7\x12"
    b"\xea\xb8\xbe\x8b\x7c\x88\xb9\xfc\xdf\x1d\xdd\x62\x49\x2d\xda\x15\xf3\x7c\xd3\x8c\x65\x4c\xd4\xfb"
    b"\x58\x61\xb2\x4d\xce\x51\xb5\x3a\x74\x00\xbc\xa3\xe2\x30\xbb\xd4\x41\xa5\xdf\x4a\xd7\x95\xd8\x3d"
    b"\x6d\xc4\xd1\xa4\xfb\xf4\xd6\xd3\x6a\xe9\x69\x43\xfc\xd9\x6e\x34\x46\x88\x67\xad\xd0\xb8\x60\xda"
    b"\x73\x2d\x04\x44\xe5\x1d\x03\x33\x5f\x4c\x0a\xaa\xc9\x7c\x0d\xdd\x3c\x71\x05\x50\xaa\x41\x02\x27"
    b"\x10\x10\x0b\xbe\x86\x20\x0c\xc9\x25\xb5\x68\x57\xb3\x85\x6f\x20\x09\xd4\x66\xb9\x9f\xe4\x61\xce"
    b"\x0e\xf9\xde\x5e\x98\xc9\xd9\x29\x22\x98\xd0\xb0\xb4\xa8\xd7\xc7\x17\x3d\xb3\x59\x81\x0d\xb4\x2e"
    b"\x3b\x5c\xbd\xb7\xad\x6c\xba\xc0\x20\x83\xb8\xed\xb6\xb3\xbf\x9a\x0c\xe2\xb6\x03\x9a\xd2\xb1\x74"
    b"\x39\x47\xd5\xea\xaf\x77\xd2\x9d\x15\x26\xdb\x04\x83\x16\xdc\x73\x12\x0b\x63\xe3\x84\x3b\x64\x94"
    b"\x3e\x6a\x6d\x0d\xa8\x5a\x6a\x7a\x0b\xcf\x0e\xe4\x9d\xff\x09\x93\x27\xae\x00\x0a\xb1\x9e\x07\x7d"
    b"\x44\x93\x0f\xf0\xd2\xa3\x08\x87\x68\xf2\x01\x1e\xfe\xc2\x06\x69\x5d\x57\x62\xf7\xcb\x67\x65\x80"
    b"\x71\x36\x6c\x19\xe7\x06\x6b\x6e\x76\x1b\xd4\xfe\xe0\x2b\xd3\x89\x5a\x7a\xda\x10\xcc\x4a\xdd\x67"
    b"\x6f\xdf\xb9\xf9\xf9\xef\xbe\x8e\x43\xbe\xb7\x17\xd5\x8e\xb0\x60\xe8\xa3\xd6\xd6\x7e\x93\xd1\xa1"
    b"\xc4\xc2\xd8\x38\x52\xf2\xdf\x4f\xf1\x67\xbb\xd1\x67\x57\xbc\xa6\xdd\x06\xb5\x3f\x4b\x36\xb2\x48"
    b"\xda\x2b\x0d\xd8\x4c\x1b\x0a\xaf\xf6\x4a\x03\x36\x60\x7a\x04\x41\xc3\xef\x60\xdf\x55\xdf\x67\xa8"
    b"\xef\x8e\x6e\x31\x79\xbe\x69\x46\x8c\xb3\x61\xcb\x1a\x83\x66\xbc\xa0\xd2\x6f\x25\x36\xe2\x68\x52"
    b"\x95\x77\x0c\xcc\x03\x47\x0b\xbb\xb9\x16\x02\x22\x2f\x26\x05\x55\xbe\x3b\xba\xc5\x28\x0b\xbd\xb2"
    b"\x92\x5a\xb4\x2b\x04\x6a\xb3\x5c\xa7\xff\xd7\xc2\x31\xcf\xd0\xb5\x8b\x9e\xd9\x2c\x1d\xae\xde\x5b"
    b"\xb0\xc2\x64\x9b\x26\xf2\x63\xec\x9c\xa3\x6a\x75\x0a\x93\x6d\x02\xa9\x06\x09\x9c\x3f\x36\x0e\xeb"
    b"\x85\x67\x07\x72\x13\x57\x00\x05\x82\x4a\xbf\x95\x14\x7a\xb8\xe2\xae\x2b\xb1\x7b\x38\x1b\xb6\x0c"
    b"\x9b\x8e\xd2\x92\x0d\xbe\xd5\xe5\xb7\xef\xdc\x7c\x21\xdf\xdb\x0b\xd4\xd2\xd3\x86\x42\xe2\xd4\xf1"
    b"\xf8\xb3\xdd\x68\x6e\x83\xda\x1f\xcd\x16\xbe\x81\x5b\x26\xb9\xf6\xe1\x77\xb0\x6f\x77\x47\xb7\x18"
    b"\xe6\x5a\x08\x88\x70\x6a\x0f\xff\xca\x3b\x06\x66\x5c\x0b\x01\x11\xff\x9e\x65\x8f\x69\xae\x62\xf8"
    b"\xd3\xff\x6b\x61\x45\xcf\x6c\x16\x78\xe2\x0a\xa0\xee\xd2\x0d\xd7\x54\x83\x04\x4e\xc2\xb3\x03\x39"
    b"\x61\x26\x67\xa7\xf7\x16\x60\xd0\x4d\x47\x69\x49\xdb\x77\x6e\x3e\x4a\x6a\xd1\xae\xdc\x5a\xd6\xd9"
    b"\x66\x0b\xdf\x40\xf0\x3b\xd8\x37\x53\xae\xbc\xa9\xc5\x9e\xbb\xde\x7f\xcf\xb2\x47\xe9\xff\xb5\x30"
    b"\x1c\xf2\xbd\xbd\x8a\xc2\xba\xca\x30\x93\xb3\x53\xa6\xa3\xb4\x24\x05\x36\xd0\xba\x93\x06\xd7\xcd"
    b"\x29\x57\xde\x54\xbf\x67\xd9\x23\x2e\x7a\x66\xb3\xb8\x4a\x61\xc4\x02\x1b\x68\x5d\x94\x2b\x6f\x2a"
    b"\x37\xbe\x0b\xb4\xa1\x8e\x0c\xc3\x1b\xdf\x05\x5a\x8d\xef\x02\x2d"
)


def crc_ok(buf, n):
    """True if the CRC32 in buf[n-4:n] (LE) matches buf[:n-4]. Allocates nothing."""
    m = n - 4
    if not _MPY:
        return binascii.crc32(memoryview(buf)[:m]) & 0xFFFFFFFF == struct.unpack_from("<I", buf, m)[0]
    t = _CRC_TABLE
    lo = 0xFFFF
    hi = 0xFFFF
    i = 0
    while i < m:
        x = ((lo ^ buf[i]) & 0xFF) << 2
        lo = (((lo >> 8) | ((hi & 0xFF) << 8)) ^ t[x] ^ t[x + 1] << 8) & 0xFFFF
        hi = (hi >> 8) ^ t[x + 2] ^ t[x + 3] << 8
        i += 1
    return (lo ^ 0xFFFF) == buf[m] | buf[m + 1] << 8 and (hi ^ 0xFFFF) == buf[m + 2] | buf[m + 3] << 8


class Decoder:
    """Collects wire bytes up to each zero delimiter and unstuffs the frame in place.

    After `feed` returns with `ready` set: `type`, `seq`, `ack` and the payload in
    buf[HEAD:HEAD + plen]. Bad frames (CRC, stuffing, length) are counted in `bad` and dropped.
    """

    def __init__(self, buf=None):
        self.buf = bytearray(MAX_WIRE) if buf is None else buf  # buf: MAX_WIRE bytes lent
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
    """Builds one frame at a time: write the payload into `payload` (a view after the header),
    then `frame(type, seq, ack, plen)` returns the wire bytes as a view of `out`.

    One buffer: the frame is built _LEAD bytes into `out` and stuffed in place, towards its start.
    Stuffing writes at most one byte ahead per 254 read (at most 3 in a frame of MAX_FRAME), so
    the writer never reaches a byte it has yet to read."""

    def __init__(self, buf=None):
        self.out = bytearray(MAX_WIRE) if buf is None else buf  # buf: MAX_WIRE bytes lent
        self._out = memoryview(self.out)
        self._raw = self._out[_LEAD:]
        self.payload = self._out[_LEAD + HEAD:_LEAD + HEAD + MAX_PAYLOAD]

    def frame(self, ftype, seq, ack, plen):
        if plen > MAX_PAYLOAD:
            raise ValueError("payload too long")
        out = self.out
        out[_LEAD] = ftype
        out[_LEAD + 1] = seq & 0xFF
        out[_LEAD + 2] = ack & 0xFF
        m = _LEAD + HEAD + plen
        struct.pack_into("<I", out, m, binascii.crc32(self._raw[:m - _LEAD]) & 0xFFFFFFFF)
        return self._out[:stuff(self._raw, m + 4 - _LEAD, out)]


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
