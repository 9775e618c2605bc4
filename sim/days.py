"""`python -m sim days --days 10`: consecutive days of deliveries on a town whose data disagree with
the ground (sim/days_town.py), with the depot learning its fences every night.

Day by day: the carrier delivers every item of the stops visited that day (85% of them) standing
at the true door, and the fix at each scan comes from sim/gnss.py's receiver model for that stop's
sky, parsed by the firmware's NMEA parser. The firmware's geofence engine judges the fix against
the stop's fence in the day's compiled route package (CPython runs the firmware modules; the VM
proof is tests/test_learn_vm.py, and docs/fence-learning.md says why); outside it, the carrier
confirms with an override reason, as on the device. The records go to a real store; at night
`depot fences learn --apply` proposes and applies, and `depot route compile` makes the next day's
package. The same fixes are judged on the same days against two baselines: the first route, never
changed, and a naive 50 m circle around each stop's median fix so far.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import math
import random
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely.geometry import Point, shape

from firmware import geofence, nmea, record, route_package
from host_tools import address_build, cli, learn_rules, route_compile
from host_tools.store import Store
from sim import gnss
from sim.days_town import FACADE_RATIO, FRAME, SKIES, DaysTown, GroundStop, generate

DEVICE = "HH-DAYS"
VISIT_SHARE = 0.85  # stops with something to deliver on a given day
DWELL_S = 30  # the receiver runs this long at the door before the first scan
FIRST_DAY = dt.date(2026, 12, 1)
NAIVE_RADIUS_M = 50.0
HELD_OUT_MIN = 3  # held-out counts stops with at least this many earlier deliveries
AREA_SCALES = (0.8, 0.9, 1.1, 1.25, 1.5, 2.0)  # per-stop naive circles: these multiples of the learned area
VARIANTS = ("learning", "none", "naive")


@dataclass
class Scan:
    stop_id: str
    item: str
    lat_e6: int
    lon_e6: int
    hdop_x10: int
    t: int  # unix seconds of the fix


@dataclass
class Result:
    days: int
    rates: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    actions: list[str] = field(default_factory=list)  # each night's summary line
    to_review: list[tuple[int, int]] = field(default_factory=list)  # each night: (to look at, routine)
    heldout: dict[str, list[int]] = field(default_factory=lambda: {
        "learning": [0, 0], "naive": [0, 0], "naive_equal_area": [0, 0], "naive_equal_reach": [0, 0],
        "naive_equal_total": [0, 0]})  # [inside, judged]
    # the fence area (m2, as compiled) each held-out judgement was made against, summed: the area
    # ratios of the baselines to the learned fences
    heldout_area: dict[str, float] = field(default_factory=dict)
    # ...and the area the device judges inside (the fence and its 5 m margin): a long shape has
    # more margin for its area than a circle
    heldout_reach: dict[str, float] = field(default_factory=dict)
    area_growth: float = 1.0  # median learned / initial area, stops whose fence changed
    changed: int = 0
    naive_area_growth: float = 1.0
    missed: dict[str, dict[str, int]] = field(default_factory=dict)  # held-out misses: variant -> kind -> n
    day_missed: list[dict[str, int]] = field(default_factory=list)  # learning's misses per day: kind/sky -> n
    workdir: str = ""
    log: list[dict[str, Any]] = field(default_factory=list)  # every held-out judgement (diagnosis)

    def share(self, key: str) -> float:
        inside, judged = self.heldout.get(key, [0, 0])
        return inside / judged if judged else 0.0

    def area_ratio(self, key: str) -> float:
        """The area `key` judged the held-out deliveries with, over the learned fences' area."""
        learned = self.heldout_area.get("learning", 0.0)
        return self.heldout_area.get(key, 0.0) / learned if learned else 0.0

    def reach_ratio(self, key: str) -> float:
        """The same for the area judged inside (fence and margin)."""
        learned = self.heldout_reach.get("learning", 0.0)
        return self.heldout_reach.get(key, 0.0) / learned if learned else 0.0

    def naive_area_to_match(self) -> float:
        """The per-stop naive circles' area, as a multiple of the learned fences', at which they hold
        as many held-out deliveries as the learned fences (linear between the scaled runs; below 1:
        the naive circle does better at equal area; the largest multiple tried if even that holds
        fewer, so a lower bound)."""
        target = self.share("learning")
        points = sorted((self.area_ratio(k), self.share(k)) for k in self.heldout
                        if k.startswith("naive_equal_area") and self.heldout[k][1])
        if not points:
            return 0.0
        for (a0, s0), (a1, s1) in zip(points, points[1:], strict=False):
            if s0 <= target <= s1:
                return a0 if s1 == s0 else a0 + (a1 - a0) * (target - s0) / (s1 - s0)
        return points[0][0] if target < points[0][1] else points[-1][0]


class Package:
    """A compiled route, opened with the firmware's reader, judging fixes as the device does."""

    def __init__(self, fc: dict[str, Any], folder: Path, name: str):
        path = folder / f"{name}.pkg"
        route_compile.write_package(route_compile.compile_geojson(fc, source=name).package, path)
        self.pkg = route_package.RoutePackage(str(path), bytes(32))
        self.index = {self.pkg.stop(i).stop_id: i for i in range(self.pkg.stop_count)}

    def verdict(self, s: Scan) -> tuple[int, int]:
        return geofence.verdict(self.pkg, self.index[s.stop_id], s.lat_e6, s.lon_e6, s.hdop_x10, 1)

    def close(self) -> None:
        self.pkg.close()


def sky_at(g: GroundStop, facade_ratio: float) -> gnss.Conditions:
    """The receiver's conditions at a stop's door: its sky, and at a wall the facade effect."""
    if g.facade_deg is None or facade_ratio == 1.0:
        return SKIES[g.sky]
    return dataclasses.replace(SKIES[g.sky], noise_ratio=facade_ratio, noise_axis_deg=g.facade_deg)


def day_scans(town: DaysTown, fc: dict[str, Any], day: int, seed: int,
              facade_ratio: float = FACADE_RATIO) -> list[Scan]:
    rng = random.Random(f"{seed}:day{day}")
    start = dt.datetime.combine(FIRST_DAY + dt.timedelta(days=day - 1), dt.time(9), tzinfo=dt.UTC)
    scans = []
    for n, f in enumerate(fc["features"]):
        props = f["properties"]
        if rng.random() >= VISIT_SHARE:
            continue
        g = town.ground[props["stop_id"]]
        walk = gnss.Walk([g.door], seed=rng.randrange(1 << 30), conditions=sky_at(g, facade_ratio),
                         start=start + dt.timedelta(minutes=n), duration_s=DWELL_S + 4 * len(props["items"]))
        rx = nmea.NMEA()
        items = list(props["items"])
        for t, lines in walk:
            for line in lines:
                rx.parse(line.encode())
            if t >= DWELL_S and (t - DWELL_S) % 4 == 0 and items and rx.valid:
                scans.append(Scan(props["stop_id"], items.pop(0), rx.lat_e6, rx.lon_e6, rx.hdop // 10,
                                  rx.unix()))
    return scans


def to_record(s: Scan, seq: int, rid: str, verdict: int, distance_dm: int, reason: int) -> bytes:
    return record.Record(
        seq=seq, outcome=record.DELIVERED, device_id=DEVICE, route_id=rid, stop_id=s.stop_id,
        item_id=s.item, verdict=verdict, match=record.M_ITEM, reason=reason,
        flags=record.F_OVERRIDE if reason else 0, device_time=s.t, gnss_time=s.t, lat_e6=s.lat_e6,
        lon_e6=s.lon_e6, accuracy_dm=geofence.accuracy_dm(s.hdop_x10), fix_age_s=1,
        distance_dm=distance_dm).encode()


def _reason(kind: str) -> int:
    """The override reason a carrier picks at this stop (route_package_writer.DEFAULT_REASONS)."""
    return {"door_away": 41, "wrong_tags": 43, "new_build": 43}.get(kind, 40)


def eligible(fixes: list[tuple[float, float, int]]) -> bool:
    """Held-out counts a stop's deliveries once it has the evidence the learner needs to act: at
    least HELD_OUT_MIN earlier deliveries, on at least learn_rules.MIN_DAYS days."""
    return len(fixes) >= HELD_OUT_MIN and len({d for _, _, d in fixes}) >= learn_rules.MIN_DAYS


def naive_route(fc: dict[str, Any], fixes: dict[str, list[tuple[float, float, int]]],
                radius: dict[str, float] | None = None) -> dict[str, Any]:
    """Each stop with a fix so far: a circle around its median fix (50 m, or radius[stop])."""
    out = json.loads(json.dumps(fc))
    for f in out["features"]:
        sid = f["properties"]["stop_id"]
        pts = fixes.get(sid)
        if not pts:
            continue
        r = (radius or {}).get(sid, NAIVE_RADIUS_M)
        f["geometry"] = {"type": "Point", "coordinates": [statistics.median(p[0] for p in pts),
                                                          statistics.median(p[1] for p in pts)]}
        f["properties"]["radius_m"] = round(min(max(r, 1.0), route_compile.MAX_RADIUS_M), 2)
    return out


# a Point stop compiles to a 16-gon inside its circle: its area, and the radius for an area, are
# those of that polygon, so a naive circle "of equal area" gets the learned fence's area exactly
_UNIT_POINT_AREA = Point(0, 0).buffer(1.0, quad_segs=route_compile.POINT_QUAD_SEGS).area


def area_m2(f: dict[str, Any]) -> float:
    g = FRAME.to_local(shape(f["geometry"]))
    if g.geom_type == "Point":
        return _UNIT_POINT_AREA * float(f["properties"]["radius_m"]) ** 2
    return float(g.area)


def radius_for(area: float) -> float:
    return math.sqrt(area / _UNIT_POINT_AREA)


def radius_for_reach(reach: float) -> float:
    """The Point stop's radius whose compiled 16-gon and 5 m margin have this area (Newton steps)."""
    r = max(math.sqrt(reach / math.pi) - learn_rules.DEVICE_MARGIN_M, 0.5)
    for _ in range(3):
        got = Point(0, 0).buffer(r, quad_segs=route_compile.POINT_QUAD_SEGS).buffer(
            learn_rules.DEVICE_MARGIN_M, quad_segs=8).area
        r = max(r + (reach - got) / (2 * math.pi * (r + learn_rules.DEVICE_MARGIN_M)), 0.5)
    return r


def reach_m2(f: dict[str, Any]) -> float:
    """The area the device judges inside: the fence as compiled and its 5 m margin."""
    g = FRAME.to_local(shape(f["geometry"]))
    if g.geom_type == "Point":
        g = g.buffer(float(f["properties"]["radius_m"]), quad_segs=route_compile.POINT_QUAD_SEGS)
    return float(g.buffer(learn_rules.DEVICE_MARGIN_M, quad_segs=8).area)


def run(days: int = 10, stops: int = 220, seed: int = 1, workdir: Path | None = None,
        say: Any = print, scales: tuple[float, ...] = (), facade_ratio: float = FACADE_RATIO) -> Result:
    """`scales`: more per-stop naive circles for the held-out figure, with these multiples of the
    learned fence's area (Result.naive_area_to_match). `facade_ratio` 1: GNSS error the same in
    every direction at every door."""
    work = workdir or Path(tempfile.mkdtemp(prefix="sim_days_"))
    work.mkdir(parents=True, exist_ok=True)
    town = generate(seed=seed, stops=stops)
    addresses, footprints = town.write(work)
    first, outcomes, _ = address_build.build(addresses, footprints, route_id=town.route_id)
    say("depot route build: " + address_build.summary(outcomes))
    (work / "route-day1.geojson").write_text(json.dumps(first))
    store_path = work / "depot.sqlite3"
    store = Store(store_path)
    store.enrol(DEVICE)
    fcs = {"learning": first, "none": first, "naive": first}
    fixes: dict[str, list[tuple[float, float, int]]] = {}
    res = Result(days)
    seq = 0
    for day in range(1, days + 1):
        scans = day_scans(town, first, day, seed, facade_ratio)
        pkgs = {v: Package(fcs[v], work, f"{v}-day{day}") for v in VARIANTS}
        area = {f["properties"]["stop_id"]: area_m2(f) for f in fcs["learning"]["features"]}
        # held-out baselines: fc and its areas. Per stop, a circle around the median fix with the
        # learned fence's area (or a multiple of it); and the naive baseline as it is, one radius
        # for every stop, with the learned fences' total area
        seen = [a for s, a in area.items() if s in fixes]
        same = radius_for(statistics.fmean(seen)) if seen else NAIVE_RADIUS_M
        held = {"learning": fcs["learning"], "naive": fcs["naive"],
                "naive_equal_area": naive_route(first, fixes, {s: radius_for(a) for s, a in area.items()}),
                "naive_equal_total": naive_route(first, fixes, dict.fromkeys(area, same))}
        # ...and per stop, the circle whose fence and margin have the learned fence's and margin's area
        reach = {f["properties"]["stop_id"]: reach_m2(f) for f in fcs["learning"]["features"]}
        held["naive_equal_reach"] = naive_route(first, fixes,
                                                {s: radius_for_reach(a) for s, a in reach.items()})
        for k in scales:
            held[f"naive_equal_area_x{k:g}"] = naive_route(first, fixes, {s: radius_for(k * a)
                                                                          for s, a in area.items()})
        held_pkgs = {key: pkgs[key] if key in pkgs else Package(fc, work, f"{key}-day{day}")
                     for key, fc in held.items()}
        held_area = {key: {f["properties"]["stop_id"]: area_m2(f) for f in fc["features"]}
                     for key, fc in held.items()}
        held_reach: dict[str, dict[str, float]] = {key: {} for key in held}
        inside = {v: 0 for v in VARIANTS}
        misses: dict[str, int] = {}
        res.day_missed.append(misses)
        batch = []
        for s in scans:
            for v in VARIANTS:
                verdict, dist = pkgs[v].verdict(s)
                inside[v] += verdict == record.V_INSIDE
                if v == "learning":
                    if verdict != record.V_INSIDE:
                        g = town.ground[s.stop_id]
                        misses[f"{g.kind}/{g.sky}"] = misses.get(f"{g.kind}/{g.sky}", 0) + 1
                    seq += 1
                    reason = 0 if verdict == record.V_INSIDE else _reason(town.ground[s.stop_id].kind)
                    batch.append(to_record(s, seq, town.route_id, verdict, dist, reason))
            if eligible(fixes.get(s.stop_id, [])):
                g = town.ground[s.stop_id]
                entry: dict[str, Any] = {"day": day, "stop": s.stop_id, "kind": g.kind, "sky": g.sky,
                                         "hdop": s.hdop_x10, "lat": s.lat_e6, "lon": s.lon_e6}
                res.log.append(entry)
                for key, pkg in held_pkgs.items():
                    v_, d_ = pkg.verdict(s)
                    ok = v_ == record.V_INSIDE
                    entry[key] = (ok, d_)
                    tally = res.heldout.setdefault(key, [0, 0])
                    tally[0] += ok
                    tally[1] += 1
                    res.heldout_area[key] = res.heldout_area.get(key, 0.0) + held_area[key][s.stop_id]
                    if s.stop_id not in held_reach[key]:
                        feat = next(f for f in held[key]["features"]
                                    if f["properties"]["stop_id"] == s.stop_id)
                        held_reach[key][s.stop_id] = reach_m2(feat)
                    res.heldout_reach[key] = res.heldout_reach.get(key, 0.0) + held_reach[key][s.stop_id]
                    if not ok:
                        kinds = res.missed.setdefault(key, {})
                        kind = f"{town.ground[s.stop_id].kind}/{town.ground[s.stop_id].sky}"
                        kinds[kind] = kinds.get(kind, 0) + 1
        for s in scans:
            fixes.setdefault(s.stop_id, []).append((s.lon_e6 / 1e6, s.lat_e6 / 1e6, day))
        for p in {id(p): p for p in (*pkgs.values(), *held_pkgs.values())}.values():
            p.close()
        store.ingest(DEVICE, batch, "dock")
        for v in VARIANTS:
            res.rates[v].append(inside[v] / len(scans) if scans else 0.0)
        rate = {v: f"{100 * res.rates[v][-1]:5.1f}%" for v in VARIANTS}
        say(f"day {day:>2} ({FIRST_DAY + dt.timedelta(days=day - 1)}): {len(scans)} deliveries; match rate "
            f"learning {rate['learning']}  no learning {rate['none']}  naive 50 m {rate['naive']}")
        if day == days:
            break
        fcs["learning"] = night(store_path, town.route_id, fcs["learning"], footprints, work, day, res, say)
        fcs["naive"] = naive_route(first, fixes)
    store.close()
    res.workdir = str(work)
    pairs = list(zip(first["features"], fcs["learning"]["features"], strict=True))
    growth = [area_m2(new) / area_m2(old) for old, new in pairs if old["geometry"] != new["geometry"]]
    res.changed = len(growth)
    res.area_growth = statistics.median(growth) if growth else 1.0
    naive = zip(first["features"], fcs["naive"]["features"], strict=True)
    res.naive_area_growth = statistics.median(area_m2(new) / area_m2(old) for old, new in naive)
    return res


def night(store_path: Path, rid: str, fc: dict[str, Any], footprints: Path, work: Path, day: int,
          res: Result, say: Any) -> dict[str, Any]:
    """`depot fences learn --apply` on the day's store, as depot staff would run it."""
    out = work / f"route-day{day + 1}.geojson"
    args = ["--store", str(store_path), "fences", "learn", "--route", rid, "--footprints", str(footprints),
            "--out", str(out), "--apply"]
    if day == 1:
        args += ["--from", str(work / "route-day1.geojson")]
    if day <= 3:
        args += ["--html", str(work / f"review-night{day}.html")]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(args)
    lines = buf.getvalue().splitlines()
    summary = next((ln for ln in lines if ln.startswith("learned ")), "")
    review = next((ln for ln in lines if ln.startswith("to review: ")), "")
    if code != 0 or not summary or not review:
        raise RuntimeError(f"night {day}: depot fences learn failed: {buf.getvalue()}")
    res.actions.append(summary)
    look, routine = int(review.split()[2]), int(review.split("routine: ")[1].split()[0])
    res.to_review.append((look, routine))
    say(f"  night {day}: {summary.split(': ', 1)[1]}; to review {look}, routine {routine}")
    return json.loads(out.read_text())


def report(res: Result, say: Any = print) -> None:
    if not res.heldout["learning"][1]:
        say(f"held-out: no stop had {HELD_OUT_MIN} deliveries on {learn_rules.MIN_DAYS} days "
            "before another yet")
    else:
        heldout(res, say)
    say(f"area: {res.changed} fences changed, median learned/initial {res.area_growth:.2f}; "
        f"naive 50 m circles median {res.naive_area_growth:.1f}x the first fences")
    say(f"store, routes and review pages: {res.workdir}")


def heldout(res: Result, say: Any) -> None:
    say(f"held-out (next-day deliveries, stops with >= {HELD_OUT_MIN} earlier on >= "
        f"{learn_rules.MIN_DAYS} days), "
        "inside the fence, and the fences' area over the learned fences':")
    names = {"learning": "learned fences", "naive_equal_area": "naive circle, each stop the learned area",
             "naive_equal_reach": "naive circle, each stop the learned area with margin",
             "naive_equal_total": "naive circles of one radius, the learned total area",
             "naive": f"naive {NAIVE_RADIUS_M:g} m circles"}
    for key, name in names.items():
        say(f"  {name:<53} {100 * res.share(key):5.2f}%  area x{res.area_ratio(key):.2f}, with the 5 m "
            f"margin x{res.reach_ratio(key):.2f}")
    if any(k.startswith("naive_equal_area_x") for k in res.heldout):
        say(f"  the per-stop naive circles need x{res.naive_area_to_match():.2f} the learned area to hold "
            "as many")
