"""One stop's fence for the route compiler (route_compile.py): repaired, simplified, snapped.

The fence arrives projected to the route's local frame in decimetres. A Point stop becomes a 16-gon
of its `radius_m`; duplicate points go; an invalid ring is repaired with make_valid; rings are
oriented (exterior counter-clockwise, holes clockwise); a fence over the board's vertex budget is
simplified without moving an edge more than 0.5 m; the result is snapped to the integer grid.
Every repair is reported in `repairs`; what cannot be repaired is a CompileError.
"""

from __future__ import annotations

from typing import Any

import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from host_tools.route_compile_checks import CompileError

MAX_SHIFT_DM = 5.0  # simplification may move an edge by at most 0.5 m
POINT_QUAD_SEGS = 4  # a Point stop becomes a 16-gon around it
MAX_RADIUS_M = 200.0


def _vertices(g: BaseGeometry) -> int:
    return sum(len(r.coords) - 1 for p in polys(g) for r in (p.exterior, *p.interiors))


def polys(g: BaseGeometry) -> list[Polygon]:
    if isinstance(g, Polygon):
        return [] if g.is_empty else [g]
    if isinstance(g, MultiPolygon):
        return [p for p in g.geoms if not p.is_empty]
    if hasattr(g, "geoms"):  # GeometryCollection out of make_valid: keep the areal parts
        return [p for part in g.geoms for p in polys(part)]  # type: ignore[attr-defined]
    return []


def _areal(g: BaseGeometry) -> BaseGeometry:
    ps = polys(g)
    return ps[0] if len(ps) == 1 else MultiPolygon(ps)


def make_fence(name: str, geom: BaseGeometry, props: dict[str, Any], budget: int,
           repairs: list[str]) -> BaseGeometry:
    """Repaired, simplified fence in local dm, snapped to integers."""
    if geom.geom_type == "Point":
        r = props.get("radius_m")
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 < r <= MAX_RADIUS_M:
            raise CompileError(f"{name}: Point stop needs radius_m in (0, {MAX_RADIUS_M:g}]")
        geom = shapely.orient_polygons(geom.buffer(r * 10.0, quad_segs=POINT_QUAD_SEGS))
    elif geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise CompileError(f"{name}: geometry {geom.geom_type} is not areal (Polygon, MultiPolygon or Point)")
    if geom.is_empty:
        raise CompileError(f"{name}: empty geometry")
    before = _vertices(geom)
    geom = shapely.remove_repeated_points(geom, 0.0)
    if _vertices(geom) != before:
        repairs.append(f"{name}: removed {before - _vertices(geom)} duplicate point(s)")
    if not geom.is_valid:
        why = shapely.is_valid_reason(geom)
        geom = shapely.orient_polygons(_areal(shapely.make_valid(geom)))  # one repair, one report
        if geom.is_empty or geom.area <= 0:
            raise CompileError(f"{name}: invalid geometry ({why}) has no area after repair")
        repairs.append(f"{name}: invalid geometry ({why}) repaired with make_valid")
    if geom.area <= 0:
        raise CompileError(f"{name}: geometry has no area")
    if any(not p.exterior.is_ccw or any(i.is_ccw for i in p.interiors) for p in polys(geom)):
        repairs.append(f"{name}: ring orientation fixed (exterior counter-clockwise, holes clockwise)")
    geom = shapely.orient_polygons(geom)
    n = _vertices(geom)
    if n > budget:
        simplified = None
        for tol in (0.5, 1.0, 2.0, 3.0, 4.0, MAX_SHIFT_DM - 0.6):
            cand = geom.simplify(tol, preserve_topology=True)
            if _vertices(cand) <= budget and geom.hausdorff_distance(cand) <= MAX_SHIFT_DM - 0.6:
                simplified = cand
                break
        if simplified is None:
            raise CompileError(f"{name}: {n} vertices; cannot meet the board's budget of {budget} "
                               f"without moving an edge more than {MAX_SHIFT_DM / 10:g} m")
        shift = geom.hausdorff_distance(simplified) / 10
        repairs.append(f"{name}: simplified {n} -> {_vertices(simplified)} vertices "
                       f"(edges moved at most {shift:.2f} m)")
        geom = simplified
    snapped = _areal(shapely.set_precision(geom, 1.0))
    if snapped.is_empty or not snapped.is_valid:
        raise CompileError(f"{name}: fence collapses on the 0.1 m grid")
    return shapely.orient_polygons(snapped)
