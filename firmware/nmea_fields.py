"""NMEA 0183 field readers: a number, an angle, a time of day or a date read straight from a
sentence's bytes into a small int, allocating nothing (firmware/nmea.py locates the fields). Each
returns EMPTY for an empty field and BAD for one it does not accept; every result stays below 2**30.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

EMPTY = const(-1073741823)  # field absent or empty
BAD = const(-1073741822)  # field present but not a number we accept


def decimal(buf, s, e, places, rounded=1):
    """Decimal field [s, e) as an int scaled by 10**places; extra decimals rounded as decimal
    arithmetic rounds (to nearest, ties to even), or cut off when not `rounded` (times of day)."""
    if s >= e:
        return EMPTY
    neg = 0
    if buf[s] == 45:  # '-'
        neg = 1
        s += 1
        if s >= e:
            return BAD
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
                return BAD
            frac = 0
            continue
        c -= 48
        if c < 0 or c > 9:
            return BAD
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
            return BAD
    if frac < 0:
        frac = 0
    if frac > places:  # decimals were dropped
        frac = places
        if rounded and (first > 5 or (first == 5 and (more or v & 1))):
            v += 1  # at most 10**9 < 2**30
    if digits == 0 or digits + places - frac > 9:  # keeps |v| < 10**9 < 2**30
        return BAD
    while frac < places:
        v *= 10
        frac += 1
    return -v if neg else v


def angle(buf, s, e, maxdeg):
    """(d)ddmm.mmmm... as micro-degrees, unsigned, rounded exactly as decimal arithmetic rounds
    (to nearest, ties to even) whatever the number of decimals: only ints below 2**30."""
    if s >= e:
        return EMPTY
    ip = 0
    n = 0
    while s < e and buf[s] != 46:
        c = buf[s] - 48
        if c < 0 or c > 9 or n >= 5:
            return BAD
        ip = ip * 10 + c
        n += 1
        s += 1
    if n < 3:
        return BAD
    frac = 0  # the first 6 decimals of the minutes
    k = 0
    more = 0  # 1 when a decimal past the 6th is not zero
    if s < e:
        s += 1  # the point
        while s < e:
            c = buf[s] - 48
            if c < 0 or c > 9:
                return BAD
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
        return BAD
    a = mins * 1000000 + frac  # millionths of a minute (< 6e7), 60 of them per micro-degree
    q = a // 60
    r = a - q * 60  # with `more`, the remainder is r plus a fraction in (0, 1)
    if r > 30 or (r == 30 and (more or q & 1)):
        q += 1
    v = deg * 1000000 + q
    if v > maxdeg * 1000000:
        return BAD
    return v


def _d2(buf, s):
    a = buf[s] - 48
    b = buf[s + 1] - 48
    if a < 0 or a > 9 or b < 0 or b > 9:
        return -1
    return a * 10 + b


def time_of_day(buf, s, e):
    """hhmmss[.sss] as milliseconds of the day."""
    if s >= e:
        return EMPTY
    if e - s < 6:
        return BAD
    h = _d2(buf, s)
    m = _d2(buf, s + 2)
    sec = _d2(buf, s + 4)
    if h < 0 or m < 0 or sec < 0 or h > 23 or m > 59 or sec > 60:
        return BAD
    ms = 0
    if e - s > 6:
        f = decimal(buf, s + 6, e, 3, 0)  # ".sss": the point and up to three decimals, cut off
        if f < 0 or f >= 1000:
            return BAD
        ms = f
    return ((h * 60 + m) * 60 + sec) * 1000 + ms


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (ints only)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def date(buf, s, e):
    """ddmmyy as days since 1970 (yy < 80 is 20yy: GNSS receivers predate no such date)."""
    if s >= e:
        return EMPTY
    if e - s != 6:
        return BAD
    d = _d2(buf, s)
    m = _d2(buf, s + 2)
    y = _d2(buf, s + 4)
    if d < 1 or d > 31 or m < 1 or m > 12 or y < 0:
        return BAD
    return days_from_civil(y + (2000 if y < 80 else 1900), m, d)


def mode_quality(c):
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


def hex_digit(c):
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20  # either case
    if 97 <= c <= 102:
        return c - 87
    return -1
