"""The delivery point of a stop, estimated robustly from its confirmed deliveries' fixes.

usable_fixes reads the store's records into each stop's Evidence (only fixes the device itself
would judge, and never an item the fence matched); estimate weights each fix by its accuracy,
counts a day's visit as one sample, rejects far fixes and sets the point, its spread and the error
expected of the next fix (docs/fence-learning.md).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from firmware import record
from host_tools import route_package_writer
from host_tools.learn_route import Frame
from host_tools.learn_rules import (
    MAX_ACCURACY_M,
    MAX_FIX_AGE_S,
    OUTLIER_MIN_M,
    OUTLIER_SIGMAS,
    R95_MIN_M,
    R95_TO_SIGMA,
    RMS_TO_R95,
    SIGMA_FLOOR_M,
)

REASONS = {code: label for code, kind, label in route_package_writer.DEFAULT_REASONS}


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
