"""Fences that learn from confirmed deliveries (`depot fences learn`); the rules are written down in
docs/fence-learning.md, which names every constant (host_tools/learn_rules.py).

Per stop, the usable fixes of its confirmed deliveries give a delivery point, estimated robustly
(weighted by each fix's accuracy radius, far fixes rejected). With enough evidence the stop's fence
is kept, extended to cover that point, moved to the building where the deliveries cluster, or
created from them. The bound: the point lies within its building plus 10 m (give or take the
point's own error) and the fence is a circle of at most 30 m around it; a stop whose deliveries
scatter or sit far from every building is flagged for a person instead. The work
is done in a local metric frame; pure functions over records, the route GeoJSON and footprints.

The night's two steps are here: learn() reads the route (learn_route), estimates each stop's
point (learn_point), sizes zones (learn_zone, learn_facade), checks the van rule (learn_van) and
proposes (learn_propose); apply() writes the next route version. The constants are in learn_rules.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import shapely
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from host_tools import learn_facade, learn_van
from host_tools.learn_point import Evidence, estimate, usable_fixes
from host_tools.learn_propose import Proposal, propose
from host_tools.learn_route import Frame, LearnError, fence_local, read_footprints, route_frame
from host_tools.learn_rules import MIN_DAYS, ROUTINE_SHIFT_M
from host_tools.learn_zone import Buildings


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
            g = fence_local(f, frame)
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

