"""GeoJSON route -> route package (docs/route-package.md), with shapely doing the geometry work.

One Feature per stop: Polygon, MultiPolygon (holes allowed) or Point with `radius_m`; properties
stop_id (str), seq (int), address (str), items (list of str). Each fence is projected to the route's
local integer frame (decimetres, exactly as the device projects a fix), repaired (duplicate points,
make_valid, orientation), simplified to the board's vertex budget without moving an edge more than
0.5 m, and snapped to the integer grid. Every repair is reported. Bad input raises CompileError
(a DepotError: one line naming the feature and the fix); nothing is written.

What the device cannot use is refused before anything is packed (route_compile_checks.py: items
the device would not read back, dates, ids, coordinates that are not [lon, lat]); each fence is
made in route_compile_fence.py. Every ring clockwise, as [lat, lon] input gives, is a warning.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from warnings import catch_warnings, simplefilter

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from host_tools import boards, private, route_package_writer
from host_tools.route_compile_checks import (
    GEOJSON_ORDER,
    CompileError,
    check_coordinates,
    check_date,
    check_props,
    check_route_id,
    feature_name,
    parse_date,
)
from host_tools.route_compile_fence import MAX_RADIUS_M, POINT_QUAD_SEGS, make_fence, polys

__all__ = ["MAX_INPUT_BYTES", "MAX_INPUT_VERTICES", "MAX_RADIUS_M", "POINT_QUAD_SEGS", "CompileError",
           "Compiled", "compile_file", "compile_geojson", "parse_date", "read_key", "write_package"]

# Input bounds, so a wrong or hostile file is refused in a second instead of taking minutes and
# gigabytes: a route of 2,000 stops with 100-vertex footprints is 200,000 vertices and ~10 MB.
MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_INPUT_VERTICES = 1_000_000 // 4


@dataclass
class Compiled:
    package: bytes
    stops: int
    route_id: str
    service_date: int
    repairs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read_key(path: str | os.PathLike) -> bytes:
    """A device key file: 32 raw bytes, 64 hex digits, or device.json with a "key" member."""
    raw = Path(path).read_bytes()
    if len(raw) == 32:
        return raw
    text = raw.decode(errors="replace").strip()
    if text.startswith("{"):
        text = str(json.loads(text).get("key", ""))
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise CompileError(f"{path}: not a 32-byte key (raw, 64 hex digits or JSON with 'key')")
    return key


def compile_geojson(fc: Any, *, board: str = "sim", route_id: str | None = None,
                    service_date: int | None = None, key: bytes | None = None,
                    source: str = "route") -> Compiled:
    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection" or not isinstance(
            fc.get("features"), list):
        raise CompileError(f"{source}: not a GeoJSON FeatureCollection")
    budget = int(boards.load(board).get("fence_vertex_budget", 32))
    feats = fc["features"]
    if not feats:
        raise CompileError(f"{source}: no features")
    parsed: list[tuple[str, dict[str, Any], BaseGeometry]] = []
    vertices = 0
    ids: dict[str, str] = {}
    seqs: dict[int, str] = {}
    items: dict[str, str] = {}
    for k, feat in enumerate(feats):
        props = check_props(k, feat)
        name = feature_name(k, props)
        if props["stop_id"] in ids:
            raise CompileError(f"{name}: duplicate stop_id (also {ids[props['stop_id']]})")
        ids[props["stop_id"]] = name
        if props["seq"] in seqs:
            raise CompileError(f"{name}: duplicate seq {props['seq']} (also {seqs[props['seq']]})")
        seqs[props["seq"]] = name
        for it in props["items"]:
            if it in items:
                raise CompileError(f"{name}: item {it} already listed by {items[it]}")
            items[it] = name
        try:
            with catch_warnings():  # NaN coordinates: said below in one line, not warned
                simplefilter("ignore", RuntimeWarning)
                geom = shape(feat.get("geometry")) if feat.get("geometry") else None
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            raise CompileError(f"{name}: unreadable geometry ({exc})") from None
        if geom is None or geom.is_empty:
            raise CompileError(f"{name}: empty geometry")
        coords = shapely.get_coordinates(geom)
        if not math.isfinite(float(coords.sum())):  # NaN and infinities survive a sum of degrees
            raise CompileError(f"{name}: a coordinate is not a number (NaN or infinite)",
                               "Give every position as two finite decimal degrees")
        vertices += len(coords)
        if vertices > MAX_INPUT_VERTICES:
            raise CompileError(f"{source}: more than {MAX_INPUT_VERTICES} vertices (at {name})",
                               "Simplify the footprints or split the route; the handheld keeps "
                               f"{budget} vertices per fence anyway")
        parsed.append((name, props, geom))
    warnings = check_coordinates(parsed, source)
    minx, miny, maxx, maxy = shapely.total_bounds([g for _, _, g in parsed])
    lat0 = int(round((miny + maxy) / 2 * 1e6))
    lon0 = int(round((minx + maxx) / 2 * 1e6))
    kx, ky = route_package_writer.scale_q16(lat0)

    def to_local(coords: Any) -> Any:
        out = coords.copy()
        for i, (lon, lat) in enumerate(coords):
            out[i] = route_package_writer.project(kx, ky, lat0, lon0, int(round(lat * 1e6)),
                                                  int(round(lon * 1e6)))
        return out

    repairs: list[str] = []
    stops = []
    clockwise = 0
    for name, props, geom in sorted(parsed, key=lambda t: t[1]["seq"]):
        clockwise += any(not p.exterior.is_ccw for p in polys(geom))
        fence = make_fence(name, shapely.transform(geom, to_local), props, budget, repairs)
        rings = []
        for p in polys(fence):
            for ring in (p.exterior, *p.interiors):
                rings.append([(int(x), int(y)) for x, y in ring.coords[:-1]])
        stops.append({"stop_id": props["stop_id"], "seq": props["seq"], "address": props["address"],
                      "items": props["items"], "rings": rings})
    polygons = sum(1 for _, _, g in parsed if g.geom_type != "Point")
    if polygons >= 2 and clockwise == polygons:
        warnings.append(f"{source}: every fence ring runs clockwise, as it does when latitude and "
                        f"longitude are swapped; {GEOJSON_ORDER} (check the route on a map)")
    rid = check_route_id(route_id, fc.get("route_id"), source, warnings)
    date = check_date(service_date if service_date is not None else fc.get("service_date"), source)
    try:
        body = route_package_writer.pack(rid, date, lat0, lon0, stops)
    except route_package_writer.PackError as exc:
        raise CompileError(f"{source}: {exc}") from None
    signed = route_package_writer.sign(body, key or bytes(32))
    return Compiled(signed, len(stops), rid, date, repairs, warnings)


def compile_file(path: str | os.PathLike, **kw: Any) -> Compiled:
    try:
        size = Path(path).stat().st_size
        if size > MAX_INPUT_BYTES:
            raise CompileError(f"{path}: {size} bytes, more than the {MAX_INPUT_BYTES} a route may be",
                               "Simplify the footprints or split the route")
        fc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompileError(f"{path}: cannot read GeoJSON ({exc})") from None
    except RecursionError:  # [[[[... 200,000 deep: not a route, and no traceback for it
        raise CompileError(f"{path}: cannot read GeoJSON (nested too deeply)") from None
    return compile_geojson(fc, source=str(path), **kw)


def write_package(data: bytes, out: str | os.PathLike) -> None:
    """Write atomically: a reader never sees half a package."""
    private.write(out, data)  # 0600: a package assigned to a device is signed with its key
