"""What the learner proposes for one stop: keep, extend, move, create or flag.

propose applies the rules of docs/fence-learning.md in order to a stop's estimated Evidence:
too little evidence waits, scattered or van-scanned deliveries are flagged, a fence that already
holds them is kept, else the fence becomes the delivery zone at its own building, or moves to the
building the deliveries cluster at, or a new one is created; a point far from every building is
flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from host_tools import learn_van
from host_tools.learn_point import Evidence
from host_tools.learn_route import Frame, fence_local
from host_tools.learn_rules import (
    AT_BUILDING_M,
    BOUND_M,
    KEEP_MISS,
    MIN_AGREEMENT,
    MIN_DAYS,
    MIN_DELIVERIES,
    MIN_SCATTER,
    NO_BUILDING_MATCHES,
    POINT_SES,
    ROUTINE_SHIFT_M,
    SCATTER_CLAIMED,
    SCATTER_M,
    SHRINK,
)
from host_tools.learn_zone import Buildings, delivery_zone, inside_share, predicted_miss, within_bound


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
    current = fence_local(feat, frame)
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
