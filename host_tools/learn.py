"""Fences that learn from confirmed deliveries (`depot fences learn`); the rules are written down in
docs/fence-learning.md and every constant below is named there.

Per stop, the usable fixes of its confirmed deliveries give a delivery point, estimated robustly
(weighted by each fix's accuracy radius, far fixes rejected). With enough evidence the stop's fence
is kept, extended to cover that point, moved to the building where the deliveries cluster, or
created from them. The bound: the point lies within its building plus 10 m (give or take the
point's own error) and the fence is a circle of at most 30 m around it; a stop whose deliveries
scatter or sit far from every building is flagged for a person instead. The work
is done in a local metric frame; pure functions over records, the route GeoJSON and footprints.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Point, mapping, shape
from shapely.geometry.base import BaseGeometry

from firmware import record
from host_tools import learn_facade, learn_van, route_package_writer

# Evidence before any change: DLInf labels a point from 2 deliveries with 51% agreement; here 2
# agreeing fixes on at least 2 days, so one visit's correlated GNSS error never moves a fence.
MIN_DELIVERIES = 2
MIN_DAYS = 2
MIN_AGREEMENT = 0.6  # share of the fixes' weight in the cluster around the point
MIN_SCATTER = 4  # fewer fixes that disagree are too few to call scattered: wait for more
# Which fixes count: the device's own limits for judging a fix (geofence.MAX_HDOP_X10, MAX_AGE_S).
MAX_ACCURACY_M = 25.0
MAX_FIX_AGE_S = 10
SIGMA_FLOOR_M = 1.5  # no fix is trusted as better than this (1-sigma, per axis)
OUTLIER_MIN_M = 8.0  # a fix this close to the point is never an outlier
OUTLIER_SIGMAS = 3.0
SCATTER_M = 10.0  # RMS distance of the kept fixes from their point above this: a person looks...
SCATTER_CLAIMED = 2.0  # ...unless within this many times the RMS the fixes' own accuracy predicts
R95_MIN_M = 4.0  # the radius holding 95% of the next fixes is never assumed smaller
RMS_TO_R95 = 1.731  # 2-D Gaussian: r95 = sigma*sqrt(2 ln 20), RMS = sigma*sqrt(2)
R95_TO_SIGMA = 2.448  # 2-D Gaussian: the 95% radius is 2.448 sigma (per axis)
# Geometry and the predicted misses.
DEVICE_MARGIN_M = 5.0  # geofence.MARGIN_DM: a fix within 5 m of the fence is inside
MISS_TARGET = 0.0015  # a learned zone is sized so that 1 next delivery in 667 is predicted outside
KEEP_MISS = 0.003  # a fence predicted to miss at most this share of the next deliveries is kept...
SHRINK = 2.0  # ...unless it is more than this many times the area of the zone the deliveries need
AT_BUILDING_M = 2.0  # a point this close to a footprint is at that building
BOUND_M = 10.0  # a learned point lies within its building buffered by this...
POINT_SES = 2.0  # ...give or take this many standard errors of the point (one side: 97.7%)
ZONE_MIN_M = 2.0  # a delivery zone is never a smaller circle than this
CIRCLE_MIN_M = ZONE_MIN_M
CIRCLE_MAX_M = 30.0  # a delivery zone (every learned fence) is a circle no larger than this
ROUTINE_SHIFT_M = 3.0  # a zone re-centred by less than this, or one at its building's own wall: routine
QUAD_SEGS = 4  # zones as 16-gons, as the compiler makes a Point stop (the vertex budget is 32)
EARTH_M = 6371008.8

ACTIONS = ("keep", "extend", "move", "create", "flag")
NO_BUILDING_MATCHES = ("geocode", "none")  # part 1's match kinds that name no footprint
REASONS = {code: label for code, kind, label in route_package_writer.DEFAULT_REASONS}


class LearnError(ValueError):
    """The route or footprints cannot be read."""


class Frame:
    """Lon/lat <-> metres east/north of an origin (equirectangular; a route spans a few km)."""

    def __init__(self, lon0: float, lat0: float):
        self.lon0, self.lat0 = lon0, lat0
        self.kx = math.radians(1) * EARTH_M * math.cos(math.radians(lat0))
        self.ky = math.radians(1) * EARTH_M

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky)

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        return (self.lon0 + x / self.kx, self.lat0 + y / self.ky)

    def to_local(self, g: BaseGeometry) -> BaseGeometry:
        return shapely.transform(g, lambda c: (c - (self.lon0, self.lat0)) * (self.kx, self.ky))

    def to_lonlat(self, g: BaseGeometry) -> BaseGeometry:
        return shapely.transform(g, lambda c: c / (self.kx, self.ky) + (self.lon0, self.lat0))


@dataclass
class Fix:
    """One usable fix of a confirmed delivery, in the local frame."""
    x: float
    y: float
    sigma: float  # metres, 1-sigma per axis: half the accuracy radius (HDOP x 5 m is ~95%)
    day: str  # UTC date of the fix
    device_id: str
    seq: int
    override: bool
    reason: int
    used: bool = False  # kept by the estimate (not rejected as an outlier)
    t: int = 0  # unix seconds of the fix
    share: float = 1.0  # 1 / the fixes of its day's visit

    @property
    def weight(self) -> float:
        return self.share / (self.sigma * self.sigma)


@dataclass
class Evidence:
    deliveries: int = 0  # confirmed deliveries at the stop
    usable: int = 0  # of which with a fix good enough to learn from
    used: int = 0  # fixes in the cluster (not rejected as outliers)
    days: int = 0  # distinct days among the used fixes
    point: tuple[float, float] | None = None  # learned delivery point (local metres)
    spread_m: float = 0.0  # weighted RMS distance of the used fixes from the point
    r95_m: float = 0.0  # radius expected to hold 95% of the next fixes
    sigma_m: float = 0.0  # predicted error of the next fix about the point (per axis, 1-sigma)
    point_se_m: float = 0.0  # the point's own standard error (per axis)
    claimed_rms_m: float = 0.0  # the RMS distance the fixes' own accuracy radii predict
    wall: tuple[float, float] | None = None  # the point is at a wall: unit vector across it
    ratio: float = 1.0  # the route's fixes at walls: error across the wall / along it
    van_days: int = 0  # days the stop was scanned from one spot with other houses' stops (learn_van)
    miss_now: float = 0.0  # share of the next deliveries predicted outside the current fence
    miss_new: float = 0.0  # ... outside the proposed fence
    agreement: float = 0.0  # share of the usable fixes' weight in the cluster
    distance_m: float = 0.0  # from the point to the current fence (0 inside)
    inside_now: float = 0.0  # share of the usable fixes the device would judge inside, now
    inside_new: float = 0.0  # ... with the proposed fence
    overrides: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # override reason label -> count
    fixes: list[Fix] = field(default_factory=list)

    def summary(self) -> str:
        if self.point is None:
            return f"{self.deliveries} deliveries, {self.usable} with a usable fix"
        why = ", ".join(f"{k} x{v}" for k, v in sorted(self.reasons.items()))
        return (f"{self.used}/{self.usable} fixes on {self.days} day(s), spread {self.spread_m:.1f} m, "
                f"{self.distance_m:.1f} m from the fence, inside now {100 * self.inside_now:.0f}%"
                + (f", overrides: {why}" if why else ""))


@dataclass
class Proposal:
    stop_id: str
    seq: int
    address: str
    action: str  # ACTIONS
    why: str
    evidence: Evidence
    old: BaseGeometry | None  # local metres
    new: BaseGeometry | None  # the proposed fence (None: unchanged)
    base: BaseGeometry | None  # what the bound is measured from
    old_building: str = ""
    new_building: str = ""
    enough: bool = False  # evidence passed the thresholds
    routine: bool = False  # a change no one needs to look at (ROUTINE_SHIFT_M): listed without a map

    @property
    def changes(self) -> bool:
        return self.action in ("extend", "move", "create")

    @property
    def old_area(self) -> float:
        return float(self.old.area) if self.old is not None else 0.0

    @property
    def new_area(self) -> float:
        g = self.new if self.new is not None else self.old
        return float(g.area) if g is not None else 0.0


@dataclass
class Learned:
    route_id: str
    frame: Frame
    proposals: list[Proposal]
    wall_ratio: float = 1.0  # the route's fixes at walls: error across the wall / along it
    wall_stops: int = 0  # stops whose point is at a wall (learn_facade)

    def counts(self) -> Counter:
        c = Counter(p.action for p in self.proposals)
        c["waiting"] = sum(1 for p in self.proposals if not p.enough and p.action == "keep")
        return c

    def walls(self) -> str:
        """What the night measured of the facade effect (learn_facade)."""
        if self.wall_stops < learn_facade.MIN_FACADE_STOPS:
            return (f"fixes at walls: {self.wall_stops} stops at walls, too few to measure the facade "
                    f"effect by (needs {learn_facade.MIN_FACADE_STOPS}): zones are circles")
        shape = ("zones at walls are ellipses, long across the wall" if self.wall_ratio != 1.0
                 else "zones are circles")
        return (f"fixes at walls: error across the wall / along it {self.wall_ratio:.2f} over "
                f"{self.wall_stops} stops at walls: {shape}")

    def review(self) -> str:
        """What the night asks of a person: the changes that matter, apart from the routine ones."""
        changed = [p for p in self.proposals if p.changes]
        routine = sum(1 for p in changed if p.routine)
        flagged = sum(1 for p in self.proposals if p.action == "flag")
        return (f"to review: {len(changed) - routine + flagged} (moved, created, flagged, or a door away "
                f"from its building's wall); routine: {routine} (zones at the building's own wall, or "
                f"re-centred by under {ROUTINE_SHIFT_M:g} m), listed without maps")

    def summary(self) -> str:
        c = self.counts()
        return (f"learned {len(self.proposals)} stops of route {self.route_id}: keep {c['keep']} "
                f"({c['waiting']} with too little evidence), extend {c['extend']}, move {c['move']}, "
                f"create {c['create']}; flagged for review {c['flag']}")


# --- reading ----------------------------------------------------------------------------------

def _geom(feat: dict[str, Any]) -> BaseGeometry | None:
    g = feat.get("geometry")
    if not g:
        return None
    try:
        s = shape(g)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        sid = (feat.get("properties") or {}).get("stop_id")
        raise LearnError(f"stop {sid!r}: bad geometry ({exc})") from None
    return None if s.is_empty else s


def _fence_local(feat: dict[str, Any], frame: Frame) -> BaseGeometry | None:
    """The stop's fence as the compiler makes it (a Point stop is a circle of radius_m), local."""
    g = _geom(feat)
    if g is None:
        return None
    g = frame.to_local(g)
    if g.geom_type == "Point":
        r = float((feat.get("properties") or {}).get("radius_m") or CIRCLE_MIN_M)
        return g.buffer(r, quad_segs=QUAD_SEGS * 2)
    return g if g.is_valid else shapely.make_valid(g)


def route_frame(fc: dict[str, Any]) -> Frame:
    geoms = [g for f in fc.get("features") or [] if (g := _geom(f)) is not None]
    if not geoms:
        raise LearnError("the route has no geometry to learn around")
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    return Frame((x0 + x1) / 2, (y0 + y1) / 2)


def read_footprints(fc: dict[str, Any] | None, frame: Frame) -> dict[str, BaseGeometry]:
    """Building id -> footprint (local); ids as OSM exports them (`id`, else properties.id/@id)."""
    out: dict[str, BaseGeometry] = {}
    if fc is not None and (not isinstance(fc, dict) or not isinstance(fc.get("features"), list)):
        raise LearnError("the footprints are not a GeoJSON FeatureCollection")
    for n, f in enumerate((fc or {}).get("features") or []):
        g = _geom(f)
        if g is None or g.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        props = f.get("properties") or {}
        bid = f.get("id") or props.get("id") or props.get("@id") or f"#{n}"
        g = frame.to_local(g)
        out[str(bid)] = g if g.is_valid else shapely.make_valid(g)
    return out


def usable_fixes(records: list[Any], frame: Frame, since: str | None = None) -> dict[str, Evidence]:
    """stop_id -> its confirmed deliveries' fixes that are good enough to learn from.

    A correction voids the record it names; fixes the device itself would not judge (no fix, stale,
    HDOP above 5) and items matched *by* the fence (circular evidence) are not learned from."""
    voided = {(r.device_id, r.corrects) for r in records if r.outcome == record.CORRECTION}
    out: dict[str, Evidence] = {}
    for r in records:
        if r.outcome != record.DELIVERED or (r.device_id, r.seq) in voided:
            continue
        t = r.gnss_time or r.device_time
        day = time.strftime("%Y-%m-%d", time.gmtime(t)) if t else ""
        if since and day and day < since:
            continue
        ev = out.setdefault(r.stop_id, Evidence())
        ev.deliveries += 1
        override = bool(r.flags & record.F_OVERRIDE)
        if override:
            ev.overrides += 1
            label = REASONS.get(r.reason, f"code {r.reason}")
            ev.reasons[label] = ev.reasons.get(label, 0) + 1
        acc = r.accuracy_dm / 10
        if (r.flags & record.F_NO_FIX or not (r.lat_e6 or r.lon_e6) or r.match == record.M_FENCE
                or not 0 < acc <= MAX_ACCURACY_M or r.fix_age_s > MAX_FIX_AGE_S or not day):
            continue
        x, y = frame.xy(r.lon_e6 / 1e6, r.lat_e6 / 1e6)
        ev.fixes.append(Fix(x, y, max(acc / 2, SIGMA_FLOOR_M), day, r.device_id, r.seq, override,
                            r.reason, t=t))
        ev.usable += 1
    return out


# --- the delivery point --------------------------------------------------------------------

def _wmedian(values: list[float], weights: list[float]) -> float:
    pairs = sorted(zip(values, weights, strict=True))
    half = sum(weights) / 2
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= half:
            return v
    return pairs[-1][0]


def estimate(ev: Evidence) -> None:
    """Set ev.point, spread, r95, agreement, used and days from ev.fixes: start at the weighted
    coordinate-wise median, then alternately reject fixes beyond max(8 m, 3 sigma of the cluster)
    and take the weighted mean of the rest."""
    fixes = ev.fixes
    if not fixes:
        return
    # a visit's fixes share their error (the receiver's error is correlated over tens of seconds):
    # each day's visit counts as one sample, however many items were scanned
    per_day = Counter(f.day for f in fixes)
    for f in fixes:
        f.share = 1.0 / per_day[f.day]
    w = [f.weight for f in fixes]
    cx = _wmedian([f.x for f in fixes], w)
    cy = _wmedian([f.y for f in fixes], w)
    keep = fixes
    for _ in range(6):
        dist = [math.hypot(f.x - cx, f.y - cy) for f in fixes]
        # the cluster's own sigma from the median distance (Rayleigh: median = 1.1774 sigma)
        sigma = _wmedian(dist, w) / 1.1774
        limit = max(OUTLIER_MIN_M, OUTLIER_SIGMAS * sigma)
        # a fix is an outlier only beyond what its own accuracy allows too (a yard's HDOP 2.5 fix
        # is 5 m per axis: 8 m off is ordinary for it)
        keep = [f for f, d in zip(fixes, dist, strict=True)
                if d <= max(limit, OUTLIER_SIGMAS * f.sigma)] or fixes
        tw = sum(f.weight for f in keep)
        nx = sum(f.x * f.weight for f in keep) / tw
        ny = sum(f.y * f.weight for f in keep) / tw
        if math.hypot(nx - cx, ny - cy) < 0.01:
            cx, cy = nx, ny
            break
        cx, cy = nx, ny
    tw = sum(f.weight for f in keep)
    for f in keep:
        f.used = True
    ev.point = (cx, cy)
    ev.used = len(keep)
    ev.days = len({f.day for f in keep})
    ev.agreement = tw / sum(w)
    ev.spread_m = math.sqrt(sum(f.weight * ((f.x - cx) ** 2 + (f.y - cy) ** 2) for f in keep) / tw)
    # the radius the next fixes will fall in: what this cluster shows, but never less than what the
    # receivers themselves claimed (the accuracy radius, HDOP x 5 m, is a ~95% radius): a few
    # fixes that happen to agree do not make the next ones better
    claimed = _wmedian([2 * f.sigma for f in keep], [f.weight for f in keep])
    ev.claimed_rms_m = claimed / R95_TO_SIGMA * math.sqrt(2)
    ev.r95_m = max(R95_MIN_M, RMS_TO_R95 * ev.spread_m, claimed)
    # the next fix's error about the point: the receiver's own (its 95% radius, or what the cluster
    # shows, whichever is larger) plus the point's own error, one independent sample per day (a
    # visit's fixes share their error)
    fix_sigma = ev.r95_m / R95_TO_SIGMA
    ev.point_se_m = fix_sigma / math.sqrt(max(ev.days, 1))
    ev.sigma_m = math.hypot(fix_sigma, ev.point_se_m)


# a fixed sample of the 2-D standard normal: predicted misses are the same every night for the same
# evidence (no randomness in what the depot proposes)
_NORMAL = np.random.default_rng(20261201).standard_normal((4000, 2))


def predicted_miss(point: tuple[float, float], sigma: float, fence: BaseGeometry | None,
                   wall: tuple[float, float] | None = None, ratio: float = 1.0) -> float:
    """Share of the next deliveries (fixes ~ N(point, sigma^2) per axis, stretched `ratio` across
    `wall` at the same RMS) that the device would judge outside `fence` (inside it or within its
    5 m margin is inside)."""
    if fence is None:
        return 1.0
    zone = fence.buffer(DEVICE_MARGIN_M, quad_segs=8)
    xs, ys = learn_facade.sample(point, sigma, _NORMAL, wall, ratio)
    return 1.0 - float(np.count_nonzero(shapely.contains_xy(zone, xs, ys))) / len(xs)


def zone_radius(sigma: float) -> float:
    """The circle the fence itself must be so that, with the device's 5 m margin, the next
    deliveries fall outside it no more than MISS_TARGET of the time (Rayleigh tail)."""
    reach = sigma * math.sqrt(-2 * math.log(MISS_TARGET))
    return max(reach - DEVICE_MARGIN_M, ZONE_MIN_M)


def inside_share(fixes: list[Fix], fence: BaseGeometry | None) -> float:
    """Share of the fixes within the device's margin of `fence` (what it would judge inside)."""
    if fence is None or not fixes:
        return 0.0
    zone = fence.buffer(DEVICE_MARGIN_M, quad_segs=4)
    shapely.prepare(zone)
    return sum(1 for f in fixes if zone.intersects(Point(f.x, f.y))) / len(fixes)


# --- the fences -----------------------------------------------------------------------------

def delivery_zone(point: tuple[float, float], sigma: float, wall: tuple[float, float] | None = None,
                  ratio: float = 1.0) -> BaseGeometry:
    """The learned fence: a circle around `point` (zone_radius of the next fixes' sigma, at most
    CIRCLE_MAX_M); at a wall where the route's fixes err more across walls than along them, an
    ellipse with each semi-axis so sized for that direction's sigma. The fence is where the
    deliveries happen, not the building: the device judges the fix at the door, so a footprint's
    far side holds no delivery and is not kept; and the next fixes scatter about the door whether
    the wall is there or not, so the zone is not clipped to the building (a clipped zone holds
    fewer of them for its area)."""
    if wall is None or ratio == 1.0:
        return Point(point).buffer(min(zone_radius(sigma), CIRCLE_MAX_M), quad_segs=QUAD_SEGS)
    across, along = learn_facade.axis_sigmas(sigma, ratio)
    return learn_facade.ellipse(point, min(zone_radius(across), CIRCLE_MAX_M),
                                min(zone_radius(along), CIRCLE_MAX_M), wall, QUAD_SEGS)


def within_bound(distance_m: float, ev: Evidence) -> bool:
    """The point is within BOUND_M of a building, give or take its own error: a gate 9 m behind a
    house is not taken for a van because one night's estimate lands 11 m out."""
    return distance_m <= BOUND_M + POINT_SES * ev.point_se_m


class Buildings:
    """Footprints to move fences to: the given ones, else the route's own matched buildings."""

    def __init__(self, footprints: dict[str, BaseGeometry]):
        self.ids = list(footprints)
        self.geoms = [footprints[i] for i in self.ids]
        self.tree = shapely.STRtree(self.geoms) if self.geoms else None

    def get(self, bid: str) -> BaseGeometry | None:
        try:
            return self.geoms[self.ids.index(bid)]
        except ValueError:
            return None

    def nearest(self, point: tuple[float, float], within: float,
                exclude: str = "") -> tuple[str, BaseGeometry, float] | None:
        if self.tree is None:
            return None
        p = Point(point)
        best = None
        for k in self.tree.query(p.buffer(within)):
            bid = self.ids[int(k)]
            if bid == exclude:
                continue
            d = float(self.geoms[int(k)].distance(p))
            if d <= within and (best is None or d < best[2]):
                best = (bid, self.geoms[int(k)], d)
        return best


# --- deciding ---------------------------------------------------------------------------------

def _stop_base(feat: dict[str, Any], frame: Frame, buildings: Buildings,
               current: BaseGeometry | None) -> tuple[BaseGeometry | None, str]:
    """(base fence the bound is measured from, building id) of a stop."""
    props = feat.get("properties") or {}
    bid = str(props.get("building_id") or "")
    base_json = props.get("fence_base")
    if bid and buildings.get(bid) is not None:
        return buildings.get(bid), bid
    if base_json:
        return frame.to_local(shape(base_json)), bid
    return current, bid


def propose(feat: dict[str, Any], ev: Evidence, frame: Frame, buildings: Buildings) -> Proposal:
    props = feat.get("properties") or {}
    sid = str(props.get("stop_id"))
    current = _fence_local(feat, frame)
    base, bid = _stop_base(feat, frame, buildings, current)
    learned_before = bool((props.get("fence") or {}).get("learned"))
    has_building = bool(bid) and (learned_before or str(props.get("match") or "") not in NO_BUILDING_MATCHES)
    prop = Proposal(sid, int(props.get("seq") or 0), str(props.get("address") or ""), "keep", "",
                    ev, current, None, base, bid, bid)

    def change(action: str, fence: BaseGeometry, why: str, building: str, new_base: BaseGeometry) -> Proposal:
        prop.action, prop.new, prop.why, prop.new_building, prop.base = action, fence, why, building, new_base
        ev.inside_new = inside_share(ev.fixes, fence)
        ev.miss_new = predicted_miss(p, ev.sigma_m, fence, ev.wall, ev.ratio)
        return prop

    if ev.point is None or ev.used < MIN_DELIVERIES or ev.days < MIN_DAYS or (
            ev.usable < MIN_SCATTER and ev.agreement < MIN_AGREEMENT):
        prop.why = (f"too little evidence: {ev.used} usable fixes on {ev.days} day(s), "
                    f"needs {MIN_DELIVERIES} on {MIN_DAYS}")
        ev.inside_now = inside_share(ev.fixes, current)
        return prop
    prop.enough = True
    ev.distance_m = float(current.distance(Point(ev.point))) if current is not None else math.inf
    ev.inside_now = inside_share(ev.fixes, current)
    if ev.agreement < MIN_AGREEMENT or ev.spread_m > max(SCATTER_M, SCATTER_CLAIMED * ev.claimed_rms_m):
        prop.action = "flag"
        prop.why = (f"deliveries scatter: spread {ev.spread_m:.1f} m, {100 * ev.agreement:.0f}% of the "
                    "fixes' weight agree on one point")
        return prop
    if ev.van_days >= MIN_DAYS and 2 * ev.van_days >= ev.days:
        prop.action = "flag"
        prop.why = (f"scanned from one spot with the stops of {learn_van.VAN_OTHERS} or more other houses "
                    f"within {learn_van.VAN_WINDOW_S // 60} min on {ev.van_days} of {ev.days} days: from a "
                    "vehicle, or a shared mailbox bank? Not learned")
        return prop
    p = ev.point
    ev.miss_now = predicted_miss(p, ev.sigma_m, current, ev.wall, ev.ratio)
    zone = delivery_zone(p, ev.sigma_m, ev.wall, ev.ratio)
    radius = math.sqrt(zone.area / math.pi)  # of the circle of the zone's area
    shape = f"a circle of {radius:.1f} m" if ev.wall is None or ev.ratio == 1.0 else (
        f"an ellipse of {zone.area:.0f} m2, {ev.ratio:.2f}x the error across the wall")
    loose = current is not None and current.area > SHRINK * zone.area
    if current is not None and (has_building or learned_before) and ev.miss_now <= KEEP_MISS and not loose:
        prop.why = (f"the fence already covers the delivery point ({100 * ev.miss_now:.1f}% of the next "
                    "deliveries predicted outside)")
        return prop
    d_base = float(base.distance(Point(p))) if base is not None and has_building else math.inf
    if base is not None and within_bound(d_base, ev):  # its own building reaches: never move what can extend
        why = (f"the fence holds the deliveries but is {current.area / zone.area:.1f}x the zone they need"
               if loose and ev.miss_now <= KEEP_MISS and current is not None else
               f"delivery point {d_base:.1f} m from building {bid}")
        # a zone at the building's own wall (give or take the point's error), or one learned before
        # and moved by a little, needs no look
        before = (props.get("fence") or {}).get("point") if learned_before else None
        shift = math.dist(frame.xy(*before), p) if before else math.inf
        prop.routine = d_base <= AT_BUILDING_M + POINT_SES * ev.point_se_m or shift < ROUTINE_SHIFT_M
        return change("extend", zone, f"{why}: the fence becomes the delivery zone there, {shape} "
                      f"(bound: the point within building + {BOUND_M:g} m)", bid, base)
    # at another building: the deliveries cluster there
    other = buildings.nearest(p, AT_BUILDING_M, exclude=bid)
    if other is not None:
        obid, og, od = other
        action = "move" if has_building else "create"
        return change(action, zone,
                      f"deliveries cluster at building {obid} ({od:.1f} m), "
                      + (f"{d_base:.0f} m from building {bid}" if has_building else "no building matched"),
                      obid, og)
    if not has_building:  # a new build: a circle, not the neighbour's footprint
        return change("create", zone, f"no building within {BOUND_M:g} m: a circle of {radius:.1f} m "
                      "around the delivery point", "", zone)
    near = buildings.nearest(p, BOUND_M + POINT_SES * ev.point_se_m, exclude=bid)
    if near is not None:  # a door away from a building the deliveries cluster at
        obid, og, od = near
        return change("move", zone, f"delivery point {od:.1f} m from building "
                      f"{obid}, {d_base:.0f} m from building {bid}", obid, og)
    prop.action = "flag"
    nearest_any = buildings.nearest(p, 200.0)
    far = nearest_any[2] if nearest_any else d_base
    prop.why = (f"deliveries sit {far:.0f} m from the nearest building ({d_base:.0f} m from building {bid}): "
                "scanned from a vehicle? Not learned")
    return prop


def at_walls(evidence: Iterable[Evidence], buildings: Buildings) -> tuple[float, int]:
    """Estimate every stop's point; mark those at a wall, and give them the ratio of the error
    across walls to along them that the route's fixes at walls show tonight (learn_facade)."""
    walls = []
    for ev in evidence:
        estimate(ev)
        if ev.point is None or ev.days < MIN_DAYS:
            continue
        near = buildings.nearest(ev.point, learn_facade.FACADE_M)
        if near is not None:
            ev.wall = learn_facade.wall_normal(near[1], ev.point)
            walls.append(ev)
    ratio = learn_facade.route_ratio((ev.wall, ev.point, [(f.x, f.y, f.weight) for f in ev.fixes if f.used])
                                     for ev in walls if ev.wall is not None and ev.point is not None)
    for ev in walls:
        ev.ratio = ratio
    return ratio, len(walls)


def learn(fc: dict[str, Any], records: list[Any], footprints: dict[str, Any] | None = None,
          since: str | None = None, frame: Frame | None = None) -> Learned:
    """Proposals for every stop of the route GeoJSON `fc` from the store's records of the route,
    worked out in `frame` (default: centred on the route)."""
    if not isinstance(fc, dict) or not isinstance(fc.get("features"), list):
        raise LearnError("the route is not a GeoJSON FeatureCollection")
    frame = frame or route_frame(fc)
    fps = read_footprints(footprints, frame)
    if not fps:  # without footprints, the route's own matched buildings are the only targets
        for f in fc["features"]:
            props = f.get("properties") or {}
            g = _fence_local(f, frame)
            if props.get("building_id") and g is not None and not (props.get("fence") or {}).get("learned"):
                fps[str(props["building_id"])] = g
    buildings = Buildings(fps)
    evidence = usable_fixes(records, frame, since)
    building = {str(p.get("stop_id")): str(p.get("building_id") or "")
                for p in ((f.get("properties") or {}) for f in fc["features"])}
    spots = learn_van.from_one_spot(learn_van.visits(
        (sid, building.get(sid, ""), f.device_id, f.day, f.x, f.y, f.t)
        for sid, ev in evidence.items() for f in ev.fixes))
    for sid, days in spots.items():
        evidence[sid].van_days = len(days)
    ratio, walls = at_walls(evidence.values(), buildings)
    props_of = [(f.get("properties") or {}) for f in fc["features"]]
    proposals = [propose(f, evidence.get(str(p.get("stop_id")), Evidence()), frame, buildings)
                 for f, p in zip(fc["features"], props_of, strict=True)]
    rid = str(fc.get("route_id") or (fc.get("properties") or {}).get("route_id") or "")
    return Learned(rid, frame, proposals, ratio, walls)


# --- applying -------------------------------------------------------------------------------------

def _round(g: BaseGeometry) -> dict[str, Any]:
    return mapping(shapely.set_precision(g, 1e-7))


def apply(fc: dict[str, Any], learned: Learned, version: int, night: str) -> dict[str, Any]:
    """The next route GeoJSON: every feature kept as it was, the changed fences replaced, each
    carrying its base (the bound's reference) and its evidence in properties.fence."""
    out = copy.deepcopy(fc)
    by_id = {p.stop_id: p for p in learned.proposals}
    fr = learned.frame
    for f in out["features"]:
        props = f.setdefault("properties", {})
        p = by_id.get(str(props.get("stop_id")))
        if p is None or not p.changes or p.new is None:
            continue
        ev = p.evidence
        if p.base is not None:
            props["fence_base"] = _round(fr.to_lonlat(p.base))
        f["geometry"] = _round(fr.to_lonlat(p.new))
        props.pop("radius_m", None)
        if p.new_building != p.old_building:
            props["building_id"] = p.new_building or None
        assert ev.point is not None
        lon, lat = fr.lonlat(*ev.point)
        props["fence"] = {"learned": True, "action": p.action, "version": version, "night": night,
                          "point": [round(lon, 7), round(lat, 7)], "deliveries": ev.deliveries,
                          "fixes": ev.used, "days": ev.days, "spread_m": round(ev.spread_m, 1),
                          "point_se_m": round(ev.point_se_m, 2), "distance_m": round(ev.distance_m, 1),
                          "why": p.why}
    return out
