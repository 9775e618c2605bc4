"""Reading the route and the building footprints for the learner, in a local metric frame.

The learner works in metres east/north of the route's centre (Frame); a stop's fence is read as
the compiler makes it (a Point stop is a circle of its radius_m). Malformed GeoJSON is one
LearnError naming the stop.
"""

from __future__ import annotations

import math
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from host_tools.learn_rules import CIRCLE_MIN_M, EARTH_M, QUAD_SEGS


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


def fence_local(feat: dict[str, Any], frame: Frame) -> BaseGeometry | None:
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
