"""What each NMEA sentence type says (RMC, GGA, GNS, GSA, GLL, GSV, ZDA), read into the parser's
state (`p`, a firmware/nmea.py NMEA). Each reads every field into locals first and commits only a
sentence that parsed whole, so a malformed one leaves the state untouched; True when accepted.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

from firmware.nmea_fields import BAD, EMPTY, angle, date, days_from_civil, decimal, mode_quality, time_of_day

# sentence type codes (NMEA.parse returns them)
RMC = const(1)
GGA = const(2)
GNS = const(3)
GSA = const(4)
GLL = const(5)
GSV = const(6)
ZDA = const(7)

TALKERS = const(8)  # constellations whose GSV counts are kept (GP GL GA GB/BD GQ GI ...)


def position(buf, f, k):
    """Latitude at field k, longitude at k+2: checks them; 1 = present, 0 = empty, -1 = bad."""
    lat = angle(buf, f[k], f[k + 1] - 1, 90)
    lon = angle(buf, f[k + 2], f[k + 3] - 1, 180)
    if lat == EMPTY and lon == EMPTY:
        return 0
    if lat < 0 or lon < 0 or f[k + 2] - f[k + 1] != 2 or f[k + 4] - f[k + 3] != 2:
        return -1
    ns = buf[f[k + 1]]
    ew = buf[f[k + 3]]
    if (ns != 78 and ns != 83) or (ew != 69 and ew != 87):
        return -1
    return 1


def commit_position(p, buf, f, k):
    lat = angle(buf, f[k], f[k + 1] - 1, 90)
    lon = angle(buf, f[k + 2], f[k + 3] - 1, 180)
    p.lat_e6 = -lat if buf[f[k + 1]] == 83 else lat
    p.lon_e6 = -lon if buf[f[k + 3]] == 87 else lon


def rmc(p, buf, f):
    tod = time_of_day(buf, f[1], f[2] - 1)
    days = date(buf, f[9], f[10] - 1)
    kn = decimal(buf, f[7], f[8] - 1, 2)
    crs = decimal(buf, f[8], f[9] - 1, 2)
    pos = position(buf, f, 3)
    if tod == BAD or days == BAD or kn == BAD or crs == BAD or pos < 0:
        return False
    if kn > 500000 or crs > 36000 or (kn < 0 and kn != EMPTY) or (crs < 0 and crs != EMPTY):
        return False
    status = buf[f[2]] if f[3] - f[2] == 2 else 0
    mode = buf[f[12]] if f[13] - f[12] == 2 else 0
    if days >= 0 and tod >= 0:
        p.days = days
        p.ms = tod
    else:
        p.take_time(tod)
    if status != 65 or pos == 0 or (mode and mode_quality(mode) == 0):
        p.valid = 0
        p.quality = 0
        return True
    commit_position(p, buf, f, 3)
    if kn >= 0:
        p.speed_kn100 = kn
        p.speed_cms = (kn * 1852 + 1800) // 3600
    if crs >= 0:
        p.course = crs
    if mode:
        p.quality = mode_quality(mode)
    elif p.quality == 0:
        p.quality = 1  # NMEA 2.0 RMC: no mode field, status A is all we know
    p.take_fix(RMC)
    return True


def common(p, buf, f, kpos, kq, code):
    """GGA and GNS share layout from the position on: quality/mode, sats, hdop, altitude."""
    tod = time_of_day(buf, f[1], f[2] - 1)
    pos = position(buf, f, kpos)
    sats = decimal(buf, f[kq + 1], f[kq + 2] - 1, 0)
    hdop = decimal(buf, f[kq + 2], f[kq + 3] - 1, 2)
    alt = decimal(buf, f[kq + 3], f[kq + 4] - 1, 1)
    if tod == BAD or pos < 0 or sats == BAD or hdop == BAD or alt == BAD:
        return False
    if sats > 999 or (sats < 0 and sats != EMPTY) or (hdop < 0 and hdop != EMPTY):
        return False
    if code == GGA:
        q = decimal(buf, f[kq], f[kq + 1] - 1, 0)
        if q == BAD or q > 9 or (q < 0 and q != EMPTY):
            return False
        if q < 0:
            q = 0
    else:  # GNS: one mode letter per constellation; the best of them
        q = 0
        i = f[kq]
        e = f[kq + 1] - 1
        while i < e:
            m = mode_quality(buf[i])
            if m > q:
                q = m
            i += 1
    p.take_time(tod)
    if sats >= 0:
        p.sats = sats
    if hdop >= 0:
        p.hdop = hdop
    if q == 0 or pos == 0:
        p.valid = 0
        p.quality = 0
        return True
    if alt != EMPTY:
        p.alt_dm = alt
    commit_position(p, buf, f, kpos)
    p.quality = q
    p.take_fix(code)
    return True


def gsa(p, buf, f):
    mode = decimal(buf, f[2], f[3] - 1, 0)
    pdop = decimal(buf, f[15], f[16] - 1, 2)
    hdop = decimal(buf, f[16], f[17] - 1, 2)
    vdop = decimal(buf, f[17], f[18] - 1, 2)
    if mode == BAD or pdop == BAD or hdop == BAD or vdop == BAD or mode > 3:
        return False
    if (pdop < 0 and pdop != EMPTY) or (hdop < 0 and hdop != EMPTY) or (vdop < 0 and vdop != EMPTY):
        return False
    if mode >= 0:
        p.fix_mode = mode
    if pdop >= 0:
        p.pdop = pdop
    if hdop >= 0:
        p.hdop = hdop
    if vdop >= 0:
        p.vdop = vdop
    return True


def gll(p, buf, f):
    pos = position(buf, f, 1)
    tod = time_of_day(buf, f[5], f[6] - 1)
    if pos < 0 or tod == BAD:
        return False
    status = buf[f[6]] if f[7] - f[6] == 2 else 0
    mode = buf[f[7]] if f[8] - f[7] == 2 else 0
    p.take_time(tod)
    if status != 65 or pos == 0 or (mode and mode_quality(mode) == 0):
        p.valid = 0
        p.quality = 0
        return True
    commit_position(p, buf, f, 1)
    if mode:
        p.quality = mode_quality(mode)
    elif p.quality == 0:
        p.quality = 1
    p.take_fix(GLL)
    return True


def gsv(p, buf, f, t0, t1):
    total = decimal(buf, f[1], f[2] - 1, 0)
    num = decimal(buf, f[2], f[3] - 1, 0)
    view = decimal(buf, f[3], f[4] - 1, 0)
    if total < 1 or total > 9 or num < 1 or num > total or view == BAD or view > 255:
        return False
    snr = 0  # satellites in this message heard with a signal-to-noise ratio above 0
    k = 4
    while k < 20:  # four (prn, elevation, azimuth, snr) groups at most; absent ones read empty
        j = decimal(buf, f[k + 3], f[k + 4] - 1, 0)
        if j == BAD or j > 99:
            return False
        if j > 0:  # 00 or empty: in view, not tracked
            snr += 1
        k += 4
    s = slot(p, t0, t1)
    if view >= 0:
        p.gsv_view[s] = view
    acc = snr if num == 1 else p.gsv_acc[s] + snr
    p.gsv_acc[s] = acc if acc < 256 else 255
    if num == total:
        p.gsv_tracked[s] = p.gsv_acc[s]
    v = 0
    tr = 0
    i = 0
    while i < TALKERS:
        v += p.gsv_view[i]
        tr += p.gsv_tracked[i]
        i += 1
    p.in_view = v
    p.tracked = tr
    return True


def slot(p, t0, t1):
    """The GSV slot of a talker: its own, else the first free one, else the last."""
    tk = p.gsv_talker
    i = 0
    while i < TALKERS:
        a = tk[2 * i]
        if a == 0 or (a == t0 and tk[2 * i + 1] == t1):
            tk[2 * i] = t0
            tk[2 * i + 1] = t1
            return i
        i += 1
    tk[2 * TALKERS - 2] = t0
    tk[2 * TALKERS - 1] = t1
    return TALKERS - 1


def zda(p, buf, f):
    tod = time_of_day(buf, f[1], f[2] - 1)
    d = decimal(buf, f[2], f[3] - 1, 0)
    m = decimal(buf, f[3], f[4] - 1, 0)
    y = decimal(buf, f[4], f[5] - 1, 0)
    if tod == BAD or d == BAD or m == BAD or y == BAD:
        return False
    days = EMPTY
    if d != EMPTY or m != EMPTY or y != EMPTY:
        if d < 1 or d > 31 or m < 1 or m > 12 or y < 1980 or y > 2199:
            return False
        days = days_from_civil(y, m, d)
    if days >= 0 and tod >= 0:
        p.days = days
        p.ms = tod
    else:
        p.take_time(tod)
    return True
