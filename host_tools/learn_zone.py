"""The learned fence and what it is predicted to miss: the delivery zone, the bound, the buildings.

A zone is a circle (an ellipse at a wall, learn_facade) sized so that, with the device's 5 m
margin, few of the next deliveries fall outside it; the bound keeps the point within its building
plus BOUND_M; Buildings finds the footprints a fence may move to (docs/fence-learning.md).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from host_tools import learn_facade
from host_tools.learn_point import Evidence, Fix
from host_tools.learn_rules import (
    BOUND_M,
    CIRCLE_MAX_M,
    DEVICE_MARGIN_M,
    MISS_TARGET,
    POINT_SES,
    QUAD_SEGS,
    ZONE_MIN_M,
)

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
