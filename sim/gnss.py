"""The virtual handheld's GNSS receiver: NMEA 0183 as a real one emits it, generated or replayed.

`Walk(waypoints, ...)` moves along (lat, lon) waypoints at walking (1.4 m/s) or driving speed and
yields, once per simulated second, that second's RMC, GGA, GSA and GSV sentences (1 Hz, the cadence
of common receivers), with the faults a carrier meets: Gaussian position noise (optionally
time-correlated, as real GNSS error is), multipath jumps, urban-canyon HDOP, a cold start without
fix and loss of fix indoors. Everything random comes from one seeded `random.Random`, so a seed
replays the same day. `replay(path)` gives a log file the same shape: an iterator of
`(t, [lines])`, lines without their CR LF.
"""

from __future__ import annotations

import datetime as _dt
import math
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WALK_MPS = 1.4
DRIVE_MPS = 8.3  # 30 km/h, stop-and-go delivery driving
_EARTH_M = 6371008.8
_KNOT_MPS = 1852 / 3600

Interval = tuple[float, float]  # [start, end) in seconds since the walk began


def checksum(body: str) -> str:
    """The two hex digits of the XOR of every character between "$" and "*"."""
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return f"{c:02X}"


def sentence(body: str) -> str:
    """`body` ("GPRMC,...") framed as a sentence: "$" + body + "*" + checksum (no CR LF)."""
    return f"${body}*{checksum(body)}"


def encode(lines: Iterable[str]) -> bytes:
    """Lines as the UART carries them: ASCII, each ended by CR LF."""
    return b"".join(line.encode("ascii") + b"\r\n" for line in lines)


def _in(t: float, intervals: Sequence[Interval]) -> bool:
    return any(a <= t < b for a, b in intervals)


def _lat_field(lat: float) -> tuple[str, str]:
    a = abs(lat)
    d = int(a)
    m = round((a - d) * 60, 5)
    if m >= 60:  # rounding carried into the next degree
        d, m = d + 1, 0.0
    return f"{d:02d}{m:08.5f}", "N" if lat >= 0 else "S"


def _lon_field(lon: float) -> tuple[str, str]:
    a = abs(lon)
    d = int(a)
    m = round((a - d) * 60, 5)
    if m >= 60:
        d, m = d + 1, 0.0
    return f"{d:03d}{m:08.5f}", "E" if lon >= 0 else "W"


@dataclass
class Conditions:
    """What the sky and the street do to the receiver. Times are seconds since the start."""

    noise_m: float = 2.0  # 1-sigma horizontal error per axis at HDOP 1
    noise_corr_s: float = 0.0  # correlation time of the error (0: independent each second)
    hdop: float = 0.9  # open sky
    canyon: list[Interval] = field(default_factory=list)  # urban canyon intervals
    canyon_hdop: float = 3.5
    multipath_rate: float = 0.0  # jumps started per second (in a canyon: x5)
    multipath_m: float = 25.0  # size of a jump
    multipath_s: float = 4.0  # how long a jump lasts
    # the error's shape: this many times longer along `noise_axis_deg` (a bearing, degrees east of
    # north) than across it, at the same RMS (so HDOP still states it). A wall beside the antenna
    # hides half the sky: the satellites left lie on one side, and the error grows across the wall
    noise_ratio: float = 1.0
    noise_axis_deg: float = 0.0
    cold_start_s: float = 0.0  # no fix (and no time) for this long after power-on
    indoor: list[Interval] = field(default_factory=list)  # no fix while inside
    sats_in_view: int = 12


class Walk:
    """Iterator of (t, [sentences]) for each second of a walk along `waypoints`.

    The walk ends `linger_s` seconds after the last waypoint (standing still there), or at
    `duration_s` if given. `truth` holds the true (lat, lon) of the last second emitted.
    """

    def __init__(
        self,
        waypoints: Sequence[tuple[float, float]],
        speed_mps: float = WALK_MPS,
        seed: int = 0,
        conditions: Conditions | None = None,
        start: _dt.datetime | None = None,
        talker: str = "GP",
        linger_s: float = 0.0,
        duration_s: float | None = None,
    ) -> None:
        if not waypoints:
            raise ValueError("a walk needs at least one waypoint")
        self.waypoints = [(float(a), float(b)) for a, b in waypoints]
        self.speed = float(speed_mps)
        self.cond = conditions or Conditions()
        self.rng = random.Random(seed)
        self.start = start or _dt.datetime(2024, 3, 5, 8, 0, 0, tzinfo=_dt.UTC)
        self.talker = talker
        self.t = 0
        self.truth = self.waypoints[0]
        self._err = (0.0, 0.0)  # current error, metres east/north
        self._jump = (0.0, 0.0)
        self._jump_left = 0.0
        self._leg = 0
        self._leg_pos = 0.0  # metres along the current leg
        self._course = 0.0
        self._sats = self._constellation()
        total = sum(self._leg_len(i) for i in range(len(self.waypoints) - 1))
        self.duration = duration_s if duration_s is not None else math.ceil(total / self.speed) + linger_s

    # ---- geometry: each leg in its own local equirectangular frame (legs are short)

    def _leg_len(self, i: int) -> float:
        (a_lat, a_lon), (b_lat, b_lon) = self.waypoints[i], self.waypoints[i + 1]
        k = math.cos(math.radians((a_lat + b_lat) / 2))
        dx = math.radians(b_lon - a_lon) * k * _EARTH_M
        dy = math.radians(b_lat - a_lat) * _EARTH_M
        return math.hypot(dx, dy)

    def _advance(self, metres: float) -> float:
        """Move along the path; returns the distance actually moved (0 at the end)."""
        moved = 0.0
        while metres > 1e-9 and self._leg < len(self.waypoints) - 1:
            left = self._leg_len(self._leg) - self._leg_pos
            step = min(left, metres)
            self._leg_pos += step
            metres -= step
            moved += step
            if self._leg_pos >= self._leg_len(self._leg) - 1e-9:
                self._leg += 1
                self._leg_pos = 0.0
        if self._leg >= len(self.waypoints) - 1:
            self.truth = self.waypoints[-1]
            return moved
        (a_lat, a_lon), (b_lat, b_lon) = self.waypoints[self._leg], self.waypoints[self._leg + 1]
        f = self._leg_pos / self._leg_len(self._leg)
        self.truth = (a_lat + (b_lat - a_lat) * f, a_lon + (b_lon - a_lon) * f)
        k = math.cos(math.radians(a_lat))
        self._course = math.degrees(math.atan2((b_lon - a_lon) * k, b_lat - a_lat)) % 360
        return moved

    @staticmethod
    def offset(lat: float, lon: float, east_m: float, north_m: float) -> tuple[float, float]:
        dlat = math.degrees(north_m / _EARTH_M)
        dlon = math.degrees(east_m / (_EARTH_M * math.cos(math.radians(lat))))
        return lat + dlat, lon + dlon

    # ---- the sky

    def _constellation(self) -> list[tuple[int, int, int]]:
        """(prn, elevation, azimuth) of the satellites in view; fixed for a walk's few hours."""
        prns = self.rng.sample(range(1, 33), self.cond.sats_in_view)
        return [(p, self.rng.randint(5, 85), self.rng.randint(0, 359)) for p in sorted(prns)]

    def _error(self, hdop: float, canyon: bool) -> tuple[float, float]:
        c = self.cond
        sigma = c.noise_m * hdop
        if c.noise_corr_s > 0:
            a = math.exp(-1.0 / c.noise_corr_s)
            b = math.sqrt(1 - a * a)
            ex, ey = self._err
            self._err = (a * ex + b * self.rng.gauss(0, sigma), a * ey + b * self.rng.gauss(0, sigma))
        else:
            self._err = (self.rng.gauss(0, sigma), self.rng.gauss(0, sigma))
        rate = c.multipath_rate * (5 if canyon else 1)
        if self._jump_left > 0:
            self._jump_left -= 1
            if self._jump_left <= 0:
                self._jump = (0.0, 0.0)
        elif rate > 0 and self.rng.random() < rate:
            ang = self.rng.uniform(0, 2 * math.pi)
            self._jump = (c.multipath_m * math.cos(ang), c.multipath_m * math.sin(ang))
            self._jump_left = c.multipath_s
        ex, ey = self._err
        if c.noise_ratio != 1.0:  # stretch along the axis, shrink across it, same RMS
            long = math.sqrt(2 * c.noise_ratio ** 2 / (1 + c.noise_ratio ** 2))
            short = long / c.noise_ratio
            ux, uy = math.sin(math.radians(c.noise_axis_deg)), math.cos(math.radians(c.noise_axis_deg))
            along, across = ex * ux + ey * uy, -ex * uy + ey * ux
            ex = long * along * ux - short * across * uy
            ey = long * along * uy + short * across * ux
        return ex + self._jump[0], ey + self._jump[1]

    # ---- sentences

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        return self

    def __next__(self) -> tuple[int, list[str]]:
        if self.t > self.duration:
            raise StopIteration
        lines = self.second()
        return self.t - 1, lines

    def second(self) -> list[str]:
        """The sentences of the current second; then time moves on by one second."""
        t = self.t
        c = self.cond
        moved = self._advance(self.speed) if t > 0 else 0.0
        canyon = _in(t, c.canyon)
        hdop = c.canyon_hdop if canyon else c.hdop
        hdop = max(0.5, hdop * (1 + 0.1 * self.rng.gauss(0, 1)))
        ex, ey = self._error(hdop, canyon)
        cold = t < c.cold_start_s
        fix = not cold and not _in(t, c.indoor)
        used = [p for p, el, _ in self._sats if el > (35 if canyon else 10)][:12] if fix else []
        if fix and len(used) < 4:
            used = [p for p, _, _ in self._sats][:4]
        now = self.start + _dt.timedelta(seconds=t)
        tod = "" if cold else now.strftime("%H%M%S") + ".00"
        date = "" if cold else now.strftime("%d%m%y")
        tk = self.talker
        if fix:
            lat, lon = self.offset(*self.truth, ex, ey)
            la, ns = _lat_field(lat)
            lo, ew = _lon_field(lon)
            kn = moved / _KNOT_MPS
            crs = f"{self._course:.1f}" if moved > 0 else ""
            rmc = f"{tk}RMC,{tod},A,{la},{ns},{lo},{ew},{kn:.2f},{crs},{date},,,A"
            alt = 35.0 + ey / 10  # vertical error follows the horizontal, smaller
            gga = f"{tk}GGA,{tod},{la},{ns},{lo},{ew},1,{len(used):02d},{hdop:.2f},{alt:.1f},M,47.0,M,,"
            pdop = hdop * 1.6
            gsa = f"{tk}GSA,A,3," + ",".join(f"{p:02d}" for p in used) + "," * (12 - len(used))
            gsa += f",{pdop:.2f},{hdop:.2f},{hdop * 1.2:.2f}"
        else:
            rmc = f"{tk}RMC,{tod},V,,,,,,,{date},,,N"
            gga = f"{tk}GGA,{tod},,,,,0,00,99.99,,,,,,"
            gsa = f"{tk}GSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99"
        out = [sentence(rmc), sentence(gga), sentence(gsa)] + self._gsv(fix, canyon)
        self.t = t + 1
        return out

    def _gsv(self, fix: bool, canyon: bool) -> list[str]:
        sats = self._sats
        n = len(sats)
        total = max(1, (n + 3) // 4)
        out = []
        for i in range(total):
            body = f"GPGSV,{total},{i + 1},{n:02d}"
            for p, el, az in sats[i * 4:i * 4 + 4]:
                snr = ""
                if fix:
                    db = 20 + el // 3 - (12 if canyon else 0) + self.rng.randint(-3, 3)
                    snr = f"{max(10, min(50, db)):02d}"
                body += f",{p:02d},{el:02d},{az:03d},{snr}"
            out.append(sentence(body))
        return out


def walk(waypoints: Sequence[tuple[float, float]], **kw) -> Walk:
    """Shorthand for `Walk(waypoints, **kw)`."""
    return Walk(waypoints, **kw)


def replay_lines(path: str | Path) -> Iterator[str]:
    """Each non-blank line of an NMEA log, without its line ending (undecodable bytes kept as-is)."""
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n").decode("ascii", errors="surrogateescape")
            if line:
                yield line


def _line_time(line: str) -> float | None:
    """Seconds of the day in an RMC/GGA/GNS/GLL line, None if it has none."""
    if len(line) < 7 or not line.startswith("$"):
        return None
    parts = line.split("*")[0].split(",")
    kind = parts[0][3:]
    idx = {"RMC": 1, "GGA": 1, "GNS": 1, "GLL": 5}.get(kind)
    if idx is None or len(parts) <= idx:
        return None
    s = parts[idx]
    try:
        return int(s[0:2]) * 3600 + int(s[2:4]) * 60 + float(s[4:])
    except ValueError:
        return None


def replay(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """An NMEA log grouped into the receiver's seconds. A group ends when a sentence brings a new
    time, or repeats a type the group already has (seconds before the receiver knows the time).
    t counts seconds from the first group, following the sentences' times where they have them."""
    group: list[str] = []
    kinds: set[str] = set()
    t = 0
    cur: float | None = None  # time of the current group
    last: float | None = None  # time of the last timed group
    for line in replay_lines(path):
        lt = _line_time(line)
        kind = line[3:6]
        new_time = lt is not None and cur is not None and lt != cur
        repeat = kind in kinds and kind != "GSV"
        if group and (new_time or repeat):
            yield t, group
            group, kinds = [], set()
            if cur is not None:
                last = cur
            cur = None
            step = 1
            if lt is not None and last is not None:
                step = max(1, round((lt - last) % 86400))
            t += step
        if lt is not None and cur is None:
            cur = lt
        kinds.add(kind)
        group.append(line)
    if group:
        yield t, group


def write_log(path: str | Path, seconds: Iterable[tuple[int, list[str]]]) -> int:
    """Write the sentences of `seconds` to a log file (CR LF endings); returns the line count."""
    n = 0
    with open(path, "wb") as f:
        for _, lines in seconds:
            f.write(encode(lines))
            n += len(lines)
    return n
