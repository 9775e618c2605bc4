"""Streaming NMEA 0183 parser: RMC, GGA, GNS, GSA, GLL, GSV and ZDA from any two-letter talker
(GP, GN, GL, GA, GB, BD, GQ, GI, IN, ...; as pynmea2 reads them; `$P...` is proprietary and skipped).

Fed whole lines (`parse(buf, n)`) or raw UART bytes (`feed(buf, n)`, `feed_byte(b)`), it updates the
fix state in place. The hot path allocates nothing: fields are located by offsets kept in a
preallocated bytearray and numbers are read straight from the bytes into small ints, so a 1 Hz
receiver never churns the heap the journal and the screen need. Nothing in here raises on bad input;
garbage only moves the counters.

Units: lat_e6/lon_e6 micro-degrees; hdop/pdop/vdop x100; speed_kn100 knots x100; speed_cms cm/s;
course x100 degrees; alt_dm decimetres; utc as `days` since 1970-01-01 plus `ms` of the day.
Positions are rounded to the nearest micro-degree as decimal arithmetic rounds (ties to even), for
any number of decimals in the minutes. GSV gives `in_view` and `tracked` (satellites heard, SNR
above 0) summed over the talkers (constellations) heard; ZDA gives the date and time.

This module holds the byte stream, the framing (checksum, field offsets, type) and the fix state;
firmware/nmea_fields.py reads numbers from the fields, firmware/nmea_sentences.py what each type
says, firmware/nmea_text.py the state as text (not imported by the app).
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

try:
    from time import ticks_diff, ticks_ms  # type: ignore[attr-defined]
except ImportError:  # CPython: same contract, a wrapping millisecond counter
    import time as _t

    def ticks_ms():
        return int(_t.monotonic() * 1000) & 0x3FFFFFFF  # pyright: ignore[reportAttributeAccessIssue]

    def ticks_diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

from firmware import nmea_sentences as sentences
from firmware.nmea_fields import hex_digit
from firmware.nmea_sentences import GGA, GLL, GNS, GSA, GSV, RMC, ZDA  # noqa: F401  (codes parse() returns)

# NMEA 0183 caps a sentence at 82 characters including "$" and CR LF: 80 before the terminator
MAX_SENTENCE = const(80)
_BUF = const(96)  # line assembly buffer; longer lines are dropped as malformed
_MAXF = const(24)  # fields kept per sentence (GSA, the widest, has 19)

_HALF_DAY_MS = const(43200000)

# the three type letters packed into one int, compared without building a string
_T_RMC = const(0x524D43)
_T_GGA = const(0x474741)
_T_GNS = const(0x474E53)
_T_GSA = const(0x475341)
_T_GLL = const(0x474C4C)
_T_GSV = const(0x475356)
_T_ZDA = const(0x5A4441)


class NMEA:
    """Fix state plus counters. `on_fix(parser)` (optional) runs after each accepted fix."""

    def __init__(self, on_fix=None):
        self.on_fix = on_fix
        self._f = bytearray(_MAXF + 1)  # start offset of each field
        self._line = bytearray(_BUF)
        self._n = 0  # bytes assembled by feed()
        self._drop = 0  # 1 while discarding an overlong line
        # counters
        self.good = 0
        self.bad_checksum = 0
        self.malformed = 0
        self.unsupported = 0
        self.fixes = 0
        # fix state
        self.valid = 0
        self.lat_e6 = 0
        self.lon_e6 = 0
        self.quality = 0
        self.sats = 0
        self.hdop = 0  # x100; 0 = unknown
        self.pdop = 0
        self.vdop = 0
        self.fix_mode = 0  # GSA: 1 no fix, 2 2D, 3 3D
        self.alt_dm = 0
        self.speed_kn100 = 0
        self.speed_cms = 0
        self.course = 0  # x100 degrees
        self.days = -1  # UTC date as days since 1970; -1 until an RMC brings it
        self.ms = -1  # UTC milliseconds of the day; -1 until known
        self.fix_ms = 0  # ticks_ms() of the last accepted fix
        self.fix_days = -1  # UTC of that fix (its sentence's time), as days and ms; -1 unknown
        self.fix_tod = -1
        self.sentence = 0  # type code of the sentence that produced the last fix
        # satellites in view (GSV), for the screen: sums over the talkers heard
        self.in_view = 0
        self.tracked = 0  # of those, the ones heard (SNR above 0) in each talker's last full cycle
        self.gsv_talker = bytearray(2 * sentences.TALKERS)  # two letters per slot; zero = free
        self.gsv_view = bytearray(sentences.TALKERS)
        self.gsv_tracked = bytearray(sentences.TALKERS)  # committed at a cycle's last message
        self.gsv_acc = bytearray(sentences.TALKERS)  # counted over the cycle so far

    # ---- derived values (may allocate: call outside hot paths)

    def unix(self):
        """UTC of the last sentence's time in unix seconds, or -1 while the date is unknown."""
        if self.days < 0 or self.ms < 0:
            return -1
        return self.days * 86400 + self.ms // 1000

    def fix_unix(self):
        """UTC of the last accepted fix in unix seconds (a time-only sentence since, such as ZDA or
        an RMC without a fix, does not move it), or -1 while unknown."""
        if self.fix_days < 0 or self.fix_tod < 0:
            return -1
        return self.fix_days * 86400 + self.fix_tod // 1000

    def age_ms(self, now=None):
        """Milliseconds since the last accepted fix; -1 if there never was one."""
        if not self.fixes:
            return -1
        return ticks_diff(ticks_ms() if now is None else now, self.fix_ms)

    # ---- byte stream

    def feed_byte(self, b):
        """One UART byte. Returns what parse() returned when it completed a line, else 0."""
        if b == 10 or b == 13:
            n = self._n
            self._n = 0
            if self._drop:
                self._drop = 0
                return 0
            if n:
                return self.parse(self._line, n)
            return 0
        if b == 36:  # '$' starts a sentence whatever came before (resync after noise)
            if self._n or self._drop:
                self.malformed += 1  # the cut-off fragment
            self._drop = 0
            self._line[0] = b
            self._n = 1
            return 0
        if self._drop:
            return 0
        n = self._n
        if n >= MAX_SENTENCE:
            self._drop = 1
            self._n = 0
            self.malformed += 1
            return 0
        self._line[n] = b
        self._n = n + 1
        return 0

    def feed(self, buf, n=-1):
        """The first n bytes of buf (e.g. after uart.readinto(buf)). Returns accepted fixes."""
        if n < 0:
            n = len(buf)
        before = self.fixes
        i = 0
        while i < n:
            self.feed_byte(buf[i])
            i += 1
        return self.fixes - before

    # ---- one sentence

    def parse(self, buf, n=-1):
        """One sentence in buf[0:n] (a trailing CR/LF is allowed). Returns its type code when it
        was accepted (RMC, GGA, ...), 0 otherwise (see the counters)."""
        if n < 0:
            n = len(buf)
        while n > 0 and (buf[n - 1] == 10 or buf[n - 1] == 13):
            n -= 1
        if n == 0:
            return 0  # blank line: nothing sent, nothing to count
        if n > MAX_SENTENCE or n < 10 or buf[0] != 36 or buf[n - 3] != 42:
            self.malformed += 1
            return 0
        star = n - 3
        hi = hex_digit(buf[n - 2])
        lo = hex_digit(buf[n - 1])
        if hi < 0 or lo < 0:
            self.malformed += 1
            return 0
        f = self._f
        f[0] = 1
        nf = 1
        cs = 0
        junk = 0
        i = 1
        while i < star:
            c = buf[i]
            cs ^= c
            if c == 44:  # ','
                if nf >= _MAXF:
                    junk = 1
                else:
                    f[nf] = i + 1
                    nf += 1
            elif c < 32 or c > 126 or c == 36 or c == 42:
                junk = 1
            i += 1
        if cs != (hi << 4) | lo:
            self.bad_checksum += 1
            return 0
        if junk or (f[1] - 1 if nf > 1 else star) != 6:  # the address is exactly "$ttsss"
            self.malformed += 1
            return 0
        # fields past the last one read as empty
        i = nf
        while i <= _MAXF:
            f[i] = star + 1
            i += 1
        t0 = buf[1]
        t1 = buf[2]
        if t0 < 65 or t0 > 90 or t1 < 65 or t1 > 90 or t0 == 80:  # A-Z A-Z; P: proprietary
            self.unsupported += 1
            return 0
        t = (buf[3] << 16) | (buf[4] << 8) | buf[5]
        if t == _T_RMC:
            code = RMC if nf >= 10 and sentences.rmc(self, buf, f) else 0
        elif t == _T_GGA:
            code = GGA if nf >= 9 and sentences.common(self, buf, f, 2, 6, GGA) else 0
        elif t == _T_GNS:
            code = GNS if nf >= 9 and sentences.common(self, buf, f, 2, 6, GNS) else 0
        elif t == _T_GSA:
            code = GSA if nf >= 18 and sentences.gsa(self, buf, f) else 0
        elif t == _T_GLL:
            code = GLL if nf >= 7 and sentences.gll(self, buf, f) else 0
        elif t == _T_GSV:
            code = GSV if nf >= 4 and sentences.gsv(self, buf, f, t0, t1) else 0
        elif t == _T_ZDA:
            code = ZDA if nf >= 5 and sentences.zda(self, buf, f) else 0
        else:
            self.unsupported += 1
            return 0
        if code:
            self.good += 1
        else:
            self.malformed += 1
        return code

    # ---- state changes the sentence readers (firmware/nmea_sentences.py) make

    def take_time(self, tod):
        if tod < 0:
            return
        # a time-only sentence after midnight comes before the RMC that brings the new date
        if self.days >= 0 and self.ms >= 0 and tod < self.ms - _HALF_DAY_MS:
            self.days += 1
        self.ms = tod

    def take_fix(self, code):
        self.valid = 1
        self.fixes += 1
        self.fix_ms = ticks_ms()
        self.fix_days = self.days  # small ints: the hot path allocates nothing
        self.fix_tod = self.ms
        self.sentence = code
        if self.on_fix is not None:
            self.on_fix(self)
