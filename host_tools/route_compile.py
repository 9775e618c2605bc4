"""GeoJSON route -> route package (docs/route-package.md), with shapely doing the geometry work.

One Feature per stop: Polygon, MultiPolygon (holes allowed) or Point with `radius_m`; properties
stop_id (str), seq (int), address (str), items (list of str). Each fence is projected to the route's
local integer frame (decimetres, exactly as the device projects a fix), repaired (duplicate points,
make_valid, orientation), simplified to the board's vertex budget without moving an edge more than
0.5 m, and snapped to the integer grid. Every repair is reported. Bad input raises CompileError
naming the feature; nothing is written.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import routepack
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from host_tools import boards, private

MAX_SHIFT_DM = 5.0  # simplification may move an edge by at most 0.5 m
POINT_QUAD_SEGS = 4  # a Point stop becomes a 16-gon around it
MAX_RADIUS_M = 200.0


class CompileError(ValueError):
    pass


@dataclass
class Compiled:
    package: bytes
    stops: int
    route_id: str
    service_date: int
    repairs: list[str] = field(default_factory=list)


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


def _name(k: int, props: dict[str, Any]) -> str:
    sid = props.get("stop_id") if isinstance(props, dict) else None
    return f"feature #{k} (stop_id {sid!r})" if isinstance(sid, str) and sid else f"feature #{k}"


def _check_props(k: int, feat: Any) -> dict[str, Any]:
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        raise CompileError(f"feature #{k}: not a GeoJSON Feature")
    props = feat.get("properties")
    if not isinstance(props, dict):
        raise CompileError(f"feature #{k}: has no properties")
    name = _name(k, props)
    checks = (("stop_id", str), ("seq", int), ("address", str), ("items", list))
    for key, typ in checks:
        v = props.get(key)
        if v is None:
            raise CompileError(f"{name}: missing property {key!r}")
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise CompileError(f"{name}: property {key!r} must be {typ.__name__}")
    if not props["stop_id"].strip():
        raise CompileError(f"{name}: empty stop_id")
    if not 0 <= props["seq"] <= 65535:
        raise CompileError(f"{name}: seq {props['seq']} out of range 0..65535")
    for it in props["items"]:
        if not isinstance(it, str) or not it:
            raise CompileError(f"{name}: items must be non-empty strings")
        if len(it.encode()) > routepack.MAX_TEXT:
            raise CompileError(f"{name}: item {it!r} longer than {routepack.MAX_TEXT} bytes")
    if len(props["stop_id"].encode()) > routepack.MAX_TEXT:
        raise CompileError(f"{name}: stop_id longer than {routepack.MAX_TEXT} bytes")
    return props


def _vertices(g: BaseGeometry) -> int:
    return sum(len(r.coords) - 1 for p in _polys(g) for r in (p.exterior, *p.interiors))


def _polys(g: BaseGeometry) -> list[Polygon]:
    if isinstance(g, Polygon):
        return [] if g.is_empty else [g]
    if isinstance(g, MultiPolygon):
        return [p for p in g.geoms if not p.is_empty]
    if hasattr(g, "geoms"):  # GeometryCollection out of make_valid: keep the areal parts
        return [p for part in g.geoms for p in _polys(part)]  # type: ignore[attr-defined]
    return []


def _areal(g: BaseGeometry) -> BaseGeometry:
    ps = _polys(g)
    return ps[0] if len(ps) == 1 else MultiPolygon(ps)


def _fence(name: str, geom: BaseGeometry, props: dict[str, Any], budget: int,
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
    if any(not p.exterior.is_ccw or any(i.is_ccw for i in p.interiors) for p in _polys(geom)):
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
    ids: dict[str, str] = {}
    seqs: dict[int, str] = {}
    items: dict[str, str] = {}
    for k, feat in enumerate(feats):
        props = _check_props(k, feat)
        name = _name(k, props)
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
            geom = shape(feat.get("geometry")) if feat.get("geometry") else None
        except Exception as exc:  # shapely raises several types for malformed GeoJSON
            raise CompileError(f"{name}: unreadable geometry ({exc})") from None
        if geom is None or geom.is_empty:
            raise CompileError(f"{name}: empty geometry")
        parsed.append((name, props, geom))
    minx, miny, maxx, maxy = shapely.total_bounds([g for _, _, g in parsed])
    if not (-180 <= minx <= maxx <= 180 and -85 <= miny <= maxy <= 85):
        raise CompileError(f"{source}: coordinates are not WGS84 lon/lat")
    lat0 = int(round((miny + maxy) / 2 * 1e6))
    lon0 = int(round((minx + maxx) / 2 * 1e6))
    kx, ky = routepack.scale_q16(lat0)

    def to_local(coords: Any) -> Any:
        out = coords.copy()
        for i, (lon, lat) in enumerate(coords):
            out[i] = routepack.project(kx, ky, lat0, lon0, int(round(lat * 1e6)), int(round(lon * 1e6)))
        return out

    repairs: list[str] = []
    stops = []
    for name, props, geom in sorted(parsed, key=lambda t: t[1]["seq"]):
        fence = _fence(name, shapely.transform(geom, to_local), props, budget, repairs)
        rings = []
        for p in _polys(fence):
            for ring in (p.exterior, *p.interiors):
                rings.append([(int(x), int(y)) for x, y in ring.coords[:-1]])
        stops.append({"stop_id": props["stop_id"], "seq": props["seq"], "address": props["address"],
                      "items": props["items"], "rings": rings})
    rid = route_id or str(fc.get("route_id") or Path(source).stem)
    if len(rid.encode()) > 16:
        raise CompileError(f"{source}: route id {rid!r} longer than 16 bytes")
    date = service_date if service_date is not None else _date(fc.get("service_date"), source)
    try:
        body = routepack.pack(rid, date, lat0, lon0, stops)
    except routepack.PackError as exc:
        raise CompileError(f"{source}: {exc}") from None
    return Compiled(routepack.sign(body, key or bytes(32)), len(stops), rid, date, repairs)


def _date(value: Any, source: str) -> int:
    if value is None:
        return int(datetime.date.today().strftime("%Y%m%d"))
    try:
        return int(datetime.date.fromisoformat(str(value)).strftime("%Y%m%d"))
    except ValueError:
        raise CompileError(f"{source}: service_date {value!r} is not YYYY-MM-DD") from None


def compile_file(path: str | os.PathLike, **kw: Any) -> Compiled:
    try:
        fc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompileError(f"{path}: cannot read GeoJSON ({exc})") from None
    return compile_geojson(fc, source=str(path), **kw)


def write_package(data: bytes, out: str | os.PathLike) -> None:
    """Write atomically: a reader never sees half a package."""
    private.write(out, data)  # 0600: a package assigned to a device is signed with its key
