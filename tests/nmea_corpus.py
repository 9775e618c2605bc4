"""A corpus of NMEA 0183 in the styles receivers really emit, for judging firmware/nmea.py against
pynmea2 (the independent oracle).

The sentences are generated here (seeded, so every run sees the same bytes), one stream per receiver
style: talkers (GP GN GL GA GB BD GQ GI, and IN from an integrated navigation unit), 2 to 8 decimals
in the minutes, times with 0, 2 or 3 decimals, NMEA 2.0 (no mode letter) to 4.11 (navigational
status, system id), empty and missing trailing fields, lowercase checksums, fixes lost and regained,
both hemispheres, the antimeridian and the equator. `agreement()` is the figure the bench reports.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pynmea2  # pyright: ignore[reportMissingImports]


@dataclass(frozen=True)
class Receiver:
    name: str
    talker: str  # of RMC, GGA, GSA, ZDA
    decimals: int  # in the minutes of latitude and longitude
    time_decimals: int  # 0: hhmmss
    version: str  # "2.0": no mode letter; "2.3": mode; "4.1": mode + navigational status
    gsv_talkers: tuple[str, ...] = ()
    zda: bool = False
    lower_checksum: bool = False
    bare_trailing: bool = False  # GGA without the differential fields, RMC without variation
    start: tuple[float, float] = (48.1173, 11.5167)


RECEIVERS = (
    Receiver("multi-GNSS module, NMEA 4.1", "GN", 5, 2, "4.1", ("GP", "GL", "GA", "GB"), zda=True),
    Receiver("GPS chipset, 4 decimals, ms times", "GP", 4, 3, "2.3", ("GP",), start=(37.4219, -122.0841)),
    Receiver("older handheld, NMEA 2.0", "GP", 4, 0, "2.0", ("GP",), start=(-33.8568, 151.2153)),
    Receiver("survey receiver, 7 decimals", "GN", 7, 2, "2.3", ("GP", "GL"), zda=True,
             start=(51.5007, -0.1246)),
    Receiver("integrated navigation unit", "IN", 5, 0, "2.3", (), zda=True, bare_trailing=True,
             start=(44.0690, 12.5655)),
    Receiver("BeiDou module", "BD", 5, 3, "2.3", ("BD",), start=(22.5431, 114.0579)),
    Receiver("BeiDou, NMEA 4.11 talker", "GB", 6, 2, "4.1", ("GB",), start=(39.9042, 116.4074)),
    Receiver("Galileo only", "GA", 5, 2, "4.1", ("GA",), start=(-22.9068, -43.1729)),
    Receiver("GLONASS only", "GL", 4, 2, "2.3", ("GL",), lower_checksum=True, start=(55.7558, 37.6173)),
    Receiver("QZSS", "GQ", 5, 2, "4.1", ("GQ", "GP"), start=(35.6762, 139.6503)),
    Receiver("NavIC", "GI", 5, 2, "4.1", ("GI", "GP"), start=(12.9716, 77.5946)),
    Receiver("8 decimals near the antimeridian", "GN", 8, 3, "2.3", ("GP",), start=(-16.9000, 179.9990)),
    Receiver("equator and prime meridian", "GP", 5, 2, "2.3", ("GP",), start=(0.0002, -0.0003)),
)


def checksummed(body: str, lower: bool = False) -> str:
    c = 0
    for ch in body.encode():
        c ^= ch
    return f"${body}*{c:02x}" if lower else f"${body}*{c:02X}"


def _angle(deg_value: float, decimals: int, width: int, rng: random.Random) -> tuple[str, str]:
    """(d)ddmm.mmm... of |deg_value| with random low digits (real receivers fill every decimal)."""
    scale = 10**decimals
    units = round(abs(deg_value) * 60 * scale) + rng.randrange(scale // 1000 + 1)
    deg, rest = divmod(units, 60 * scale)
    mins, frac = divmod(rest, scale)
    text = f"{deg:0{width}d}{mins:02d}" + (f".{frac:0{decimals}d}" if decimals else "")
    return text, ""


def _time(t: dt.datetime, decimals: int) -> str:
    s = t.strftime("%H%M%S")
    if decimals:
        s += "." + f"{t.microsecond:06d}"[:decimals]
    return s


def stream(rx: Receiver, epochs: int = 300, seed: int = 0) -> list[str]:
    """One receiver's sentences over `epochs` seconds of a walk, fixes lost now and then."""
    rng = random.Random(f"{rx.name}/{seed}")
    lat, lon = rx.start
    t = dt.datetime(2026, 3, 5, 23, 58, 0, 0)  # crosses midnight
    step = 0.1 if rx.time_decimals else 1.0
    out = []
    for i in range(epochs):
        t += dt.timedelta(seconds=1 if i % 7 else 1 + step)
        lat += rng.uniform(-2e-5, 2e-5)
        lon += rng.uniform(-2e-5, 2e-5)
        if lon > 180:
            lon -= 360
        fix = not (40 <= i % 97 < 46)  # six seconds without a fix in every 97
        la, _ = _angle(lat, rx.decimals, 2, rng)
        lo, _ = _angle(lon, rx.decimals, 3, rng)
        ns = "N" if lat >= 0 else "S"
        ew = "E" if lon >= 0 else "W"
        hhmmss = _time(t, rx.time_decimals)
        date = t.strftime("%d%m%y")
        kn = f"{rng.uniform(0, 4):.{rng.choice((1, 2, 3))}f}"
        course = f"{rng.uniform(0, 359.9):.{rng.choice((1, 2))}f}" if rng.random() > 0.1 else ""
        mode = rng.choice("AAAD") if fix else "N"
        sats = rng.randrange(4, 24) if fix else 0
        hdop = f"{rng.uniform(0.5, 3):.{rng.choice((1, 2))}f}" if fix else ""
        alt = f"{rng.uniform(-20, 900):.1f}"
        pos = f"{la},{ns},{lo},{ew}" if fix else ",,,"
        status = "A" if fix else "V"
        variation = "," if rx.bare_trailing else rng.choice((",", "2.1,E", "0.4,W"))
        tail = "" if rx.version == "2.0" else f",{mode}" + (",V" if rx.version == "4.1" else "")
        rmc = f"{rx.talker}RMC,{hhmmss},{status},{pos},{kn if fix else ''},{course if fix else ''},{date}"
        if len(rmc + variation + tail) > 75:  # 80 with "$" and "*hh": the standard's limit
            variation = ","
        rmc += "," + variation + tail
        gga = f"{rx.talker}GGA,{hhmmss},{pos},{rng.choice((1, 2)) if fix else 0},{sats:02d},{hdop}"
        gga += f",{alt if fix else ''},M,{'' if rx.bare_trailing or not fix else '47.0'},M"
        differential = "" if rx.bare_trailing else "," + rng.choice((",", "1.0,0042", ","))
        if len(gga + differential) > 75:
            differential = ",,"
        gga += differential
        out.append(checksummed(rmc, rx.lower_checksum))
        out.append(checksummed(gga, rx.lower_checksum))
        if i % 5 == 0:
            prns = ",".join(f"{rng.randrange(1, 33):02d}" if k < sats else "" for k in range(12))
            gsa = f"{rx.talker}GSA,A,{3 if fix else 1},{prns},{hdop and '1.9'},{hdop},{hdop and '1.2'}"
            out.append(checksummed(gsa + (",1" if rx.version == "4.1" else ""), rx.lower_checksum))
            out += _gsv(rx, rng)
        if rx.zda and i % 10 == 0:
            out.append(checksummed(f"{rx.talker}ZDA,{hhmmss},{t:%d},{t:%m},{t:%Y},00,00", rx.lower_checksum))
    return out


def _gsv(rx: Receiver, rng: random.Random) -> list[str]:
    out = []
    for talker in rx.gsv_talkers:
        n = rng.randrange(0, 14)
        total = max(1, (n + 3) // 4)
        for m in range(total):
            groups = []
            for k in range(m * 4, min(n, m * 4 + 4)):
                snr = rng.choice(("", "00", f"{rng.randrange(10, 50):02d}"))
                groups.append(f"{k + 1:02d},{rng.randrange(0, 91):02d},{rng.randrange(0, 360):03d},{snr}")
            body = f"{talker}GSV,{total},{m + 1},{n:02d}" + "".join("," + g for g in groups)
            if rx.version == "4.1":
                body += ",1"
            out.append(checksummed(body, rx.lower_checksum))
    return out


def corpus(epochs: int = 300) -> dict[str, list[str]]:
    return {rx.name: stream(rx, epochs) for rx in RECEIVERS}


def exact_e6(dm: str, hemi: str) -> int:
    """Micro-degrees of a (d)ddmm.mmm field as decimal arithmetic rounds them (ties to even)."""
    whole, _, frac = dm.partition(".")
    deg = Decimal(whole[:-2])
    mins = Decimal(whole[-2:] + ("." + frac if frac else ""))
    v = int(((deg + mins / 60) * 10**6).quantize(Decimal(1)))
    return -v if hemi in "SW" else v


def fix_agrees(line: str, p: Any, code: int) -> bool:
    """Does the parser's state after an RMC or GGA `line` hold what pynmea2 reads in it?"""
    try:
        m: Any = pynmea2.parse(line, check=True)
    except pynmea2.ParseError:
        return code == 0
    kind = m.sentence_type
    if code == 0 or kind != ("RMC", "GGA")[code - 1]:
        return False
    if kind == "RMC":
        valid = m.status == "A" and (getattr(m, "mode_indicator", None) or "A") != "N"
    else:
        valid = bool(m.gps_qual) and m.gps_qual != "0"
    valid = valid and bool(m.lat) and bool(m.lon)
    if p.valid != int(valid):
        return False
    if m.timestamp:
        ts = m.timestamp
        if p.ms != ((ts.hour * 60 + ts.minute) * 60 + ts.second) * 1000 + ts.microsecond // 1000:
            return False
    if kind == "RMC" and m.datestamp and p.days != (m.datestamp - dt.date(1970, 1, 1)).days:
        return False
    if not valid:
        return True
    if (p.lat_e6, p.lon_e6) != (exact_e6(m.lat, m.lat_dir), exact_e6(m.lon, m.lon_dir)):
        return False
    if abs(p.lat_e6 - m.latitude * 1e6) > 0.5 + 1e-6 or abs(p.lon_e6 - m.longitude * 1e6) > 0.5 + 1e-6:
        return False  # pynmea2's own float, within half a micro-degree (its ties fall either way)
    if kind == "GGA":
        return p.quality == int(m.gps_qual) and p.sats == int(m.num_sats)
    return True


def agreement(streams: dict[str, list[str]], parser_class: Any) -> tuple[int, int, list[str]]:
    """(fixes agreeing, RMC and GGA sentences judged, the lines that disagree) over all streams."""
    agree = total = 0
    bad: list[str] = []
    for lines in streams.values():
        p = parser_class()
        for line in lines:
            code = p.parse(line.encode() + b"\r\n")
            if line[3:6] not in ("RMC", "GGA"):
                continue
            total += 1
            if fix_agrees(line, p, code):
                agree += 1
            else:
                bad.append(line)
    return agree, total, bad
