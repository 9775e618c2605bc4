"""The facade effect, measured on the route's own fixes (docs/fence-learning.md).

A wall beside the antenna hides half the sky: the satellites left lie on one side, so a fix at a
door by a wall errs more across the wall than along it. Each night the learner measures that
ratio over every stop whose delivery point is at a wall (the fixes' spread about their points,
across the nearest wall against along it) and gives a stop at a wall an elliptical zone, long
across the wall. With too few stops at walls, or fixes that scatter the same every way, the ratio
is 1 and the zones stay circles. Pure functions on local metres; host_tools/learn_zone.py and
learn.py use them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from shapely import affinity
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

FACADE_M = 3.0  # a delivery point this close to a footprint's wall is at that wall
MIN_FACADE_STOPS = 20  # stops at walls (2 days or more each) before a ratio other than 1 is used
RATIO_MIN, RATIO_MAX = 1 / 3, 3.0  # the measured ratio is held within these...
RATIO_USED = 1.2  # ...and is 1 unless this far from it (either way): the sampling noise of 1
_TANGENT_STEP_M = 0.5  # the wall's direction: from the ring 0.5 m either side of the nearest point

Axis = tuple[float, float]  # unit vector across the wall (east, north)


def wall_normal(footprint: BaseGeometry, point: tuple[float, float]) -> Axis:
    """Unit vector across the wall of `footprint` nearest to `point`, outward (any ring, holes
    included)."""
    p = Point(point)
    polys = getattr(footprint, "geoms", [footprint])
    ring = min((r for poly in polys for r in (poly.exterior, *poly.interiors)), key=p.distance)
    at, length = ring.project(p), ring.length
    a = ring.interpolate((at - _TANGENT_STEP_M) % length)
    b = ring.interpolate((at + _TANGENT_STEP_M) % length)
    tx, ty = b.x - a.x, b.y - a.y
    n = math.hypot(tx, ty) or 1.0
    nx, ny = -ty / n, tx / n
    q = ring.interpolate(at)
    if footprint.contains(Point(q.x + 0.1 * nx, q.y + 0.1 * ny)):  # outward, whichever way the ring runs
        nx, ny = -nx, -ny
    return (nx, ny)


Wall = tuple[Axis, tuple[float, float], list[tuple[float, float, float]]]  # axis, point, fixes (x, y, w)


def route_ratio(at_walls: Iterable[Wall]) -> float:
    """Error across the wall / along it, over the stops at walls: each as (axis, point, used fixes
    as (x, y, weight)). The fixes' weighted spread about their point in each direction; 1 with
    fewer than MIN_FACADE_STOPS stops."""
    across = along = 0.0
    stops = 0
    for (nx, ny), (px, py), fixes in at_walls:
        stops += 1
        for x, y, w in fixes:
            dx, dy = x - px, y - py
            across += w * (dx * nx + dy * ny) ** 2
            along += w * (dy * nx - dx * ny) ** 2
    if stops < MIN_FACADE_STOPS or along <= 0.0:
        return 1.0
    ratio = math.sqrt(across / along)
    if 1 / RATIO_USED < ratio < RATIO_USED:
        return 1.0
    return round(min(max(ratio, RATIO_MIN), RATIO_MAX), 2)


def axis_sigmas(sigma: float, ratio: float) -> tuple[float, float]:
    """(across the wall, along it) for a per-axis RMS `sigma` stretched by `ratio` (same RMS)."""
    across = sigma * math.sqrt(2 * ratio * ratio / (1 + ratio * ratio))
    return across, across / ratio


def sample(point: tuple[float, float], sigma: float, normal: np.ndarray, axis: Axis | None,
           ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Points of the next fixes' distribution from a fixed standard normal sample (n x 2)."""
    if axis is None or ratio == 1.0:
        return point[0] + sigma * normal[:, 0], point[1] + sigma * normal[:, 1]
    s_across, s_along = axis_sigmas(sigma, ratio)
    nx, ny = axis
    u, v = s_across * normal[:, 0], s_along * normal[:, 1]
    return point[0] + u * nx - v * ny, point[1] + u * ny + v * nx


def ellipse(point: tuple[float, float], across_m: float, along_m: float, axis: Axis,
            quad_segs: int) -> BaseGeometry:
    """An ellipse around `point` with these semi-axes, `across_m` along `axis`."""
    unit = Point(0.0, 0.0).buffer(1.0, quad_segs=quad_segs)
    shaped = affinity.scale(unit, across_m, along_m, origin=(0.0, 0.0))
    turned = affinity.rotate(shaped, math.atan2(axis[1], axis[0]), origin=(0.0, 0.0), use_radians=True)
    return affinity.translate(turned, point[0], point[1])
