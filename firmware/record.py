"""Delivery record: the one binary layout shared by the journal, the dock sync, cellular upload
and the host store. Spec: docs/records.md. Runs on MicroPython and CPython.

Coordinates are micro-degrees (|v| <= 180e6 < 2**30, a small int on a 32-bit port).
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

VERSION = const(1)

# outcome
DELIVERED = const(1)
ATTEMPTED = const(2)
CORRECTION = const(3)  # names the earlier record in `corrects`

# verdict of the fix against the stop's fence
V_NONE = const(0)  # no fix at all
V_INSIDE = const(1)
V_OUTSIDE = const(2)
V_UNSURE = const(3)

# how the item was matched to the stop
M_ITEM = const(1)  # item listed on this stop
M_OTHER_STOP = const(2)  # item listed on another stop; carrier confirmed this one
M_FENCE = const(3)  # item not on the route; matched by the fence the carrier stood in
M_MANUAL = const(4)  # carrier picked the stop by hand

# flags
F_OVERRIDE = const(1)  # carrier confirmed despite an outside/unsure verdict
F_WRONG_STOP = const(2)  # carrier was warned the item belongs to another stop
F_NO_FIX = const(4)

NO_AGE = const(0xFFFF)

_HEAD = "<BBBBBBHIIIIiiHHI8s"
HEAD_LEN = const(48)
MAX_TEXT = const(40)  # bytes per text field
MAX_LEN = const(HEAD_LEN + 4 * (MAX_TEXT + 1))

class RecordError(ValueError):
    pass


class Record:
    """One final event. Fields are plain ints and str; `encode_into` writes the binary form."""

    def __init__(self, seq=0, outcome=DELIVERED, device_id="", route_id="", package_hash=b"\0" * 8,
                 stop_id="", item_id="", verdict=V_NONE, match=0, reason=0, action=0, flags=0,
                 corrects=0, device_time=0, gnss_time=0, lat_e6=0, lon_e6=0, accuracy_dm=0,
                 fix_age_s=NO_AGE, distance_dm=0):
        self.seq = seq
        self.outcome = outcome
        self.device_id = device_id
        self.route_id = route_id
        self.package_hash = package_hash
        self.stop_id = stop_id
        self.item_id = item_id
        self.verdict = verdict
        self.match = match
        self.reason = reason
        self.action = action
        self.flags = flags
        self.corrects = corrects
        self.device_time = device_time
        self.gnss_time = gnss_time
        self.lat_e6 = lat_e6
        self.lon_e6 = lon_e6
        self.accuracy_dm = accuracy_dm
        self.fix_age_s = fix_age_s
        self.distance_dm = distance_dm

    def encode_into(self, buf):
        """Write the record into `buf` (>= MAX_LEN bytes); return its length."""
        struct.pack_into(_HEAD, buf, 0, VERSION, self.outcome, self.verdict, self.match, self.reason,
                         self.action, self.flags, self.seq, self.corrects, self.device_time,
                         self.gnss_time, self.lat_e6, self.lon_e6, self.accuracy_dm, self.fix_age_s,
                         self.distance_dm, self.package_hash)
        n = HEAD_LEN
        for text in (self.device_id, self.route_id, self.stop_id, self.item_id):
            n = _put_text(buf, n, text)
        return n

    def encode(self):
        buf = bytearray(MAX_LEN)
        return bytes(buf[: self.encode_into(buf)])



def _put_text(buf, n, text):
    b = text.encode() if isinstance(text, str) else text
    if len(b) > MAX_TEXT:
        raise RecordError("text field longer than %d bytes" % MAX_TEXT)
    buf[n] = len(b)
    buf[n + 1: n + 1 + len(b)] = b
    return n + 1 + len(b)


def decode(data):
    """Parse one record from bytes-like `data`; raise RecordError if it is not one."""
    if len(data) < HEAD_LEN + 4 or data[0] != VERSION:
        raise RecordError("not a version %d record" % VERSION)
    f = struct.unpack_from(_HEAD, data, 0)
    texts = []
    n = HEAD_LEN
    for _ in range(4):
        if n >= len(data):
            raise RecordError("record truncated")
        ln = data[n]
        if ln > MAX_TEXT or n + 1 + ln > len(data):
            raise RecordError("record truncated")
        texts.append(bytes(data[n + 1: n + 1 + ln]).decode())
        n += 1 + ln
    if n != len(data):
        raise RecordError("trailing bytes after record")
    return Record(seq=f[7], outcome=f[1], verdict=f[2], match=f[3], reason=f[4], action=f[5], flags=f[6],
                  corrects=f[8], device_time=f[9], gnss_time=f[10], lat_e6=f[11], lon_e6=f[12],
                  accuracy_dm=f[13], fix_age_s=f[14], distance_dm=f[15], package_hash=bytes(f[16]),
                  device_id=texts[0], route_id=texts[1], stop_id=texts[2], item_id=texts[3])


def seq_of(data):
    """The sequence number of an encoded record without decoding the rest."""
    return struct.unpack_from("<I", data, 8)[0]
