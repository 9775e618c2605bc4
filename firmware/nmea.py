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

# sentence type codes returned by parse(); NAMES[code] is the type's name
RMC = const(1)
GGA = const(2)
GNS = const(3)
GSA = const(4)
GLL = const(5)
GSV = const(6)
ZDA = const(7)
NAMES = ("", "RMC", "GGA", "GNS", "GSA", "GLL", "GSV", "ZDA")

# NMEA 0183 caps a sentence at 82 characters including "$" and CR LF: 80 before the terminator
MAX_SENTENCE = const(80)
_BUF = const(96)  # line assembly buffer; longer lines are dropped as malformed
_MAXF = const(24)  # fields kept per sentence (GSA, the widest, has 19)

_EMPTY = const(-1073741823)  # field absent or empty
_BAD = const(-1073741822)  # field present but not a number we accept

_DAY_MS = const(86400000)
_HALF_DAY_MS = const(43200000)

# the three type letters packed into one int, compared without building a string
_T_RMC = const(0x524D43)
_T_GGA = const(0x474741)
_T_GNS = const(0x474E53)
_T_GSA = const(0x475341)
_T_GLL = const(0x474C4C)
_T_GSV = const(0x475356)
_T_ZDA = const(0x5A4441)

_TALKERS = const(8)  # constellations whose GSV counts are kept (GP GL GA GB/BD GQ GI ...)


def _dec(buf, s, e, places, rounded=1):
    """Decimal field [s, e) as an int scaled by 10**places; extra decimals rounded as decimal
    arithmetic rounds (to nearest, ties to even), or cut off when not `rounded` (times of day)."""
    if s >= e:
        return _EMPTY
    neg = 0
    if buf[s] == 45:  # '-'
        neg = 1
        s += 1
        if s >= e:
            return _BAD
    v = 0
    digits = 0
    frac = -1  # decimals read so far; -1 before the point
    first = 0  # the first decimal past `places`
    more = 0  # 1 when a later one is not zero
    while s < e:
        c = buf[s]
        s += 1
        if c == 46:  # '.'
            if frac >= 0:
                return _BAD
            frac = 0
            continue
        c -= 48
        if c < 0 or c > 9:
            return _BAD
        if frac >= 0:
            if frac >= places:
                if frac == places:
                    first = c
                    frac += 1
                elif c:
                    more = 1
                continue
            frac += 1
        digits += 1
        v = v * 10 + c
        if digits > 9:
            return _BAD
    if frac < 0:
        frac = 0
    if frac > places:  # decimals were dropped
        frac = places
        if rounded and (first > 5 or (first == 5 and (more or v & 1))):
            v += 1  # at most 10**9 < 2**30
    if digits == 0 or digits + places - frac > 9:  # keeps |v| < 10**9 < 2**30
        return _BAD
    while frac < places:
        v *= 10
        frac += 1
    return -v if neg else v


def _angle(buf, s, e, maxdeg):
    """(d)ddmm.mmmm... as micro-degrees, unsigned, rounded exactly as decimal arithmetic rounds
    (to nearest, ties to even) whatever the number of decimals: only ints below 2**30."""
    if s >= e:
        return _EMPTY
    ip = 0
    n = 0
    while s < e and buf[s] != 46:
        c = buf[s] - 48
        if c < 0 or c > 9 or n >= 5:
            return _BAD
        ip = ip * 10 + c
        n += 1
        s += 1
    if n < 3:
        return _BAD
    frac = 0  # the first 6 decimals of the minutes
    k = 0
    more = 0  # 1 when a decimal past the 6th is not zero
    if s < e:
        s += 1  # the point
        while s < e:
            c = buf[s] - 48
            if c < 0 or c > 9:
                return _BAD
            if k < 6:
                frac = frac * 10 + c
                k += 1
            elif c:
                more = 1
            s += 1
    while k < 6:
        frac *= 10
        k += 1
    deg = ip // 100
    mins = ip % 100
    if mins >= 60:
        return _BAD
    a = mins * 1000000 + frac  # millionths of a minute (< 6e7), 60 of them per micro-degree
    q = a // 60
    r = a - q * 60  # with `more`, the remainder is r plus a fraction in (0, 1)
    if r > 30 or (r == 30 and (more or q & 1)):
        q += 1
    v = deg * 1000000 + q
    if v > maxdeg * 1000000:
        return _BAD
    return v


def _d2(buf, s):
    a = buf[s] - 48
    b = buf[s + 1] - 48
    if a < 0 or a > 9 or b < 0 or b > 9:
        return -1
    return a * 10 + b


def _tod(buf, s, e):
    """hhmmss[.sss] as milliseconds of the day."""
    if s >= e:
        return _EMPTY
    if e - s < 6:
        return _BAD
    h = _d2(buf, s)
    m = _d2(buf, s + 2)
    sec = _d2(buf, s + 4)
    if h < 0 or m < 0 or sec < 0 or h > 23 or m > 59 or sec > 60:
        return _BAD
    ms = 0
    if e - s > 6:
        f = _dec(buf, s + 6, e, 3, 0)  # ".sss": the point and up to three decimals, cut off
        if f < 0 or f >= 1000:
            return _BAD
        ms = f
    return ((h * 60 + m) * 60 + sec) * 1000 + ms


def _days(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (ints only)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def civil(days):
    """(year, month, day) of a day count since 1970-01-01 (allocates a tuple: not for hot paths)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (1 if m <= 2 else 0), m, d)


def _date(buf, s, e):
    """ddmmyy as days since 1970 (yy < 80 is 20yy: GNSS receivers predate no such date)."""
    if s >= e:
        return _EMPTY
    if e - s != 6:
        return _BAD
    d = _d2(buf, s)
    m = _d2(buf, s + 2)
    y = _d2(buf, s + 4)
    if d < 1 or d > 31 or m < 1 or m > 12 or y < 0:
        return _BAD
    return _days(y + (2000 if y < 80 else 1900), m, d)


def _mode_quality(c):
    """FAA mode indicator letter to the GGA quality scale (N and unknown letters: no fix)."""
    if c == 65:  # A autonomous
        return 1
    if c == 68:  # D differential
        return 2
    if c == 80:  # P precise
        return 3
    if c == 82:  # R RTK fixed
        return 4
    if c == 70:  # F RTK float
        return 5
    if c == 69:  # E estimated (dead reckoning)
        return 6
    if c == 77:  # M manual input
        return 7
    if c == 83:  # S simulator
        return 8
    return 0


def _hex(c):
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20  # either case
    if 97 <= c <= 102:
        return c - 87
    return -1


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
        self._gsv_talker = bytearray(2 * _TALKERS)  # two letters per slot; zero = free
        self._gsv_view = bytearray(_TALKERS)
        self._gsv_tracked = bytearray(_TALKERS)  # committed at a cycle's last message
        self._gsv_acc = bytearray(_TALKERS)  # counted over the cycle so far

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

    def iso(self):
        """ISO 8601 UTC ("2024-03-05T12:35:19Z", milliseconds when non-zero), None without a date."""
        if self.days < 0 or self.ms < 0:
            return None
        y, mo, d = civil(self.days)
        s = self.ms // 1000
        t = "%04d-%02d-%02dT%02d:%02d:%02d" % (y, mo, d, s // 3600, s // 60 % 60, s % 60)
        if self.ms % 1000:
            t += ".%03d" % (self.ms % 1000)
        return t + "Z"

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
        hi = _hex(buf[n - 2])
        lo = _hex(buf[n - 1])
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
            code = RMC if nf >= 10 and self._rmc(buf, f) else 0
        elif t == _T_GGA:
            code = GGA if nf >= 9 and self._gga(buf, f) else 0
        elif t == _T_GNS:
            code = GNS if nf >= 9 and self._gns(buf, f) else 0
        elif t == _T_GSA:
            code = GSA if nf >= 18 and self._gsa(buf, f) else 0
        elif t == _T_GLL:
            code = GLL if nf >= 7 and self._gll(buf, f) else 0
        elif t == _T_GSV:
            code = GSV if nf >= 4 and self._gsv(buf, f, t0, t1) else 0
        elif t == _T_ZDA:
            code = ZDA if nf >= 5 and self._zda(buf, f) else 0
        else:
            self.unsupported += 1
            return 0
        if code:
            self.good += 1
        else:
            self.malformed += 1
        return code

    # ---- per-type field handling: read everything into locals, then commit, so a malformed
    # sentence leaves the state untouched

    def _pos(self, buf, f, k):
        """Latitude at field k, longitude at k+2: checks them; 1 = present, 0 = empty, -1 = bad."""
        lat = _angle(buf, f[k], f[k + 1] - 1, 90)
        lon = _angle(buf, f[k + 2], f[k + 3] - 1, 180)
        if lat == _EMPTY and lon == _EMPTY:
            return 0
        if lat < 0 or lon < 0 or f[k + 2] - f[k + 1] != 2 or f[k + 4] - f[k + 3] != 2:
            return -1
        ns = buf[f[k + 1]]
        ew = buf[f[k + 3]]
        if (ns != 78 and ns != 83) or (ew != 69 and ew != 87):
            return -1
        return 1

    def _commit_pos(self, buf, f, k):
        lat = _angle(buf, f[k], f[k + 1] - 1, 90)
        lon = _angle(buf, f[k + 2], f[k + 3] - 1, 180)
        self.lat_e6 = -lat if buf[f[k + 1]] == 83 else lat
        self.lon_e6 = -lon if buf[f[k + 3]] == 87 else lon

    def _time(self, tod):
        if tod < 0:
            return
        # a time-only sentence after midnight comes before the RMC that brings the new date
        if self.days >= 0 and self.ms >= 0 and tod < self.ms - _HALF_DAY_MS:
            self.days += 1
        self.ms = tod

    def _fix(self, code):
        self.valid = 1
        self.fixes += 1
        self.fix_ms = ticks_ms()
        self.fix_days = self.days  # small ints: the hot path allocates nothing
        self.fix_tod = self.ms
        self.sentence = code
        if self.on_fix is not None:
            self.on_fix(self)

    def _rmc(self, buf, f):
        tod = _tod(buf, f[1], f[2] - 1)
        days = _date(buf, f[9], f[10] - 1)
        kn = _dec(buf, f[7], f[8] - 1, 2)
        crs = _dec(buf, f[8], f[9] - 1, 2)
        pos = self._pos(buf, f, 3)
        if tod == _BAD or days == _BAD or kn == _BAD or crs == _BAD or pos < 0:
            return False
        if kn > 500000 or crs > 36000 or (kn < 0 and kn != _EMPTY) or (crs < 0 and crs != _EMPTY):
            return False
        status = buf[f[2]] if f[3] - f[2] == 2 else 0
        mode = buf[f[12]] if f[13] - f[12] == 2 else 0
        if days >= 0 and tod >= 0:
            self.days = days
            self.ms = tod
        else:
            self._time(tod)
        if status != 65 or pos == 0 or (mode and _mode_quality(mode) == 0):
            self.valid = 0
            self.quality = 0
            return True
        self._commit_pos(buf, f, 3)
        if kn >= 0:
            self.speed_kn100 = kn
            self.speed_cms = (kn * 1852 + 1800) // 3600
        if crs >= 0:
            self.course = crs
        if mode:
            self.quality = _mode_quality(mode)
        elif self.quality == 0:
            self.quality = 1  # NMEA 2.0 RMC: no mode field, status A is all we know
        self._fix(RMC)
        return True

    def _common(self, buf, f, kpos, kq, code):
        """GGA and GNS share layout from the position on: quality/mode, sats, hdop, altitude."""
        tod = _tod(buf, f[1], f[2] - 1)
        pos = self._pos(buf, f, kpos)
        sats = _dec(buf, f[kq + 1], f[kq + 2] - 1, 0)
        hdop = _dec(buf, f[kq + 2], f[kq + 3] - 1, 2)
        alt = _dec(buf, f[kq + 3], f[kq + 4] - 1, 1)
        if tod == _BAD or pos < 0 or sats == _BAD or hdop == _BAD or alt == _BAD:
            return False
        if sats > 999 or (sats < 0 and sats != _EMPTY) or (hdop < 0 and hdop != _EMPTY):
            return False
        if code == GGA:
            q = _dec(buf, f[kq], f[kq + 1] - 1, 0)
            if q == _BAD or q > 9 or (q < 0 and q != _EMPTY):
                return False
            if q < 0:
                q = 0
        else:  # GNS: one mode letter per constellation; the best of them
            q = 0
            i = f[kq]
            e = f[kq + 1] - 1
            while i < e:
                m = _mode_quality(buf[i])
                if m > q:
                    q = m
                i += 1
        self._time(tod)
        if sats >= 0:
            self.sats = sats
        if hdop >= 0:
            self.hdop = hdop
        if q == 0 or pos == 0:
            self.valid = 0
            self.quality = 0
            return True
        if alt != _EMPTY:
            self.alt_dm = alt
        self._commit_pos(buf, f, kpos)
        self.quality = q
        self._fix(code)
        return True

    def _gga(self, buf, f):
        return self._common(buf, f, 2, 6, GGA)

    def _gns(self, buf, f):
        return self._common(buf, f, 2, 6, GNS)

    def _gsa(self, buf, f):
        mode = _dec(buf, f[2], f[3] - 1, 0)
        pdop = _dec(buf, f[15], f[16] - 1, 2)
        hdop = _dec(buf, f[16], f[17] - 1, 2)
        vdop = _dec(buf, f[17], f[18] - 1, 2)
        if mode == _BAD or pdop == _BAD or hdop == _BAD or vdop == _BAD or mode > 3:
            return False
        if (pdop < 0 and pdop != _EMPTY) or (hdop < 0 and hdop != _EMPTY) or (vdop < 0 and vdop != _EMPTY):
            return False
        if mode >= 0:
            self.fix_mode = mode
        if pdop >= 0:
            self.pdop = pdop
        if hdop >= 0:
            self.hdop = hdop
        if vdop >= 0:
            self.vdop = vdop
        return True

    def _gll(self, buf, f):
        pos = self._pos(buf, f, 1)
        tod = _tod(buf, f[5], f[6] - 1)
        if pos < 0 or tod == _BAD:
            return False
        status = buf[f[6]] if f[7] - f[6] == 2 else 0
        mode = buf[f[7]] if f[8] - f[7] == 2 else 0
        self._time(tod)
        if status != 65 or pos == 0 or (mode and _mode_quality(mode) == 0):
            self.valid = 0
            self.quality = 0
            return True
        self._commit_pos(buf, f, 1)
        if mode:
            self.quality = _mode_quality(mode)
        elif self.quality == 0:
            self.quality = 1
        self._fix(GLL)
        return True

    def _gsv(self, buf, f, t0, t1):
        total = _dec(buf, f[1], f[2] - 1, 0)
        num = _dec(buf, f[2], f[3] - 1, 0)
        view = _dec(buf, f[3], f[4] - 1, 0)
        if total < 1 or total > 9 or num < 1 or num > total or view == _BAD or view > 255:
            return False
        snr = 0  # satellites in this message heard with a signal-to-noise ratio above 0
        k = 4
        while k < 20:  # four (prn, elevation, azimuth, snr) groups at most; absent ones read empty
            j = _dec(buf, f[k + 3], f[k + 4] - 1, 0)
            if j == _BAD or j > 99:
                return False
            if j > 0:  # 00 or empty: in view, not tracked
                snr += 1
            k += 4
        slot = self._slot(t0, t1)
        if view >= 0:
            self._gsv_view[slot] = view
        acc = snr if num == 1 else self._gsv_acc[slot] + snr
        self._gsv_acc[slot] = acc if acc < 256 else 255
        if num == total:
            self._gsv_tracked[slot] = self._gsv_acc[slot]
        v = 0
        tr = 0
        i = 0
        while i < _TALKERS:
            v += self._gsv_view[i]
            tr += self._gsv_tracked[i]
            i += 1
        self.in_view = v
        self.tracked = tr
        return True

    def _slot(self, t0, t1):
        """The GSV slot of a talker: its own, else the first free one, else the last."""
        tk = self._gsv_talker
        i = 0
        while i < _TALKERS:
            a = tk[2 * i]
            if a == 0 or (a == t0 and tk[2 * i + 1] == t1):
                tk[2 * i] = t0
                tk[2 * i + 1] = t1
                return i
            i += 1
        tk[2 * _TALKERS - 2] = t0
        tk[2 * _TALKERS - 1] = t1
        return _TALKERS - 1

    def _zda(self, buf, f):
        tod = _tod(buf, f[1], f[2] - 1)
        d = _dec(buf, f[2], f[3] - 1, 0)
        m = _dec(buf, f[3], f[4] - 1, 0)
        y = _dec(buf, f[4], f[5] - 1, 0)
        if tod == _BAD or d == _BAD or m == _BAD or y == _BAD:
            return False
        days = _EMPTY
        if d != _EMPTY or m != _EMPTY or y != _EMPTY:
            if d < 1 or d > 31 or m < 1 or m > 12 or y < 1980 or y > 2199:
                return False
            days = _days(y, m, d)
        if days >= 0 and tod >= 0:
            self.days = days
            self.ms = tod
        else:
            self._time(tod)
        return True
