"""GeoJSON route -> route package (docs/route-package.md), with shapely doing the geometry work.

One Feature per stop: Polygon, MultiPolygon (holes allowed) or Point with `radius_m`; properties
stop_id (str), seq (int), address (str), items (list of str). Each fence is projected to the route's
local integer frame (decimetres, exactly as the device projects a fix), repaired (duplicate points,
make_valid, orientation), simplified to the board's vertex budget without moving an edge more than
0.5 m, and snapped to the integer grid. Every repair is reported. Bad input raises CompileError
(a DepotError: one line naming the feature and the fix); nothing is written.

What the device cannot use is refused here, not found out at the door: an item its identifier
parser (firmware/scan_code.py, the same code) would not read back as that item, a service date that is
no date, coordinates that are not [lon, lat]. What is possible but unlikely (a route tens of
kilometres across, a stop far from all the others, every ring clockwise as [lat, lon] input
gives) is a warning.
"""

from __future__ import annotations

import datetime
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from warnings import catch_warnings, simplefilter

import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from firmware import scan_code
from host_tools import boards, ids, private, route_package_writer
from host_tools.errors import DepotError

MAX_SHIFT_DM = 5.0  # simplification may move an edge by at most 0.5 m
POINT_QUAD_SEGS = 4  # a Point stop becomes a 16-gon around it
MAX_RADIUS_M = 200.0
MAX_SPREAD_KM = 30.0  # a carrier's route wider than this is more likely a coordinate mistake
MAX_STRAY_KM = 10.0  # a stop this far from the route's median point is probably misplaced
GEOJSON_ORDER = "GeoJSON positions are [longitude, latitude]"
# Input bounds, so a wrong or hostile file is refused in a second instead of taking minutes and
# gigabytes: a route of 2,000 stops with 100-vertex footprints is 200,000 vertices and ~10 MB.
MAX_INPUT_BYTES = 64 * 1024 * 1024
MAX_INPUT_VERTICES = 1_000_000 // 4


class CompileError(DepotError, ValueError):
    """Bad route input: `what` names the feature, `fix` says what to change."""

    def __init__(self, what: str, fix: str = "Fix the route file and compile again"):
        super().__init__(what, fix)

    def __str__(self) -> str:
        return self.line()


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
    if ids.problem("stop id", props["stop_id"]):
        raise CompileError(f"{name}: {ids.problem('stop id', props['stop_id'])}",
                           f"Use 1 to {ids.MAX_LEN['stop id']} {ids.RULE}")
    if not 0 <= props["seq"] <= 65535:
        raise CompileError(f"{name}: seq {props['seq']} out of range 0..65535")
    for it in props["items"]:
        if not isinstance(it, str) or not it:
            raise CompileError(f"{name}: items must be non-empty strings")
        if len(it.encode()) > route_package_writer.MAX_TEXT:
            raise CompileError(f"{name}: item {it!r} longer than {route_package_writer.MAX_TEXT} bytes")
        _check_item(name, it)
    if len(props["stop_id"].encode()) > route_package_writer.MAX_TEXT:
        raise CompileError(f"{name}: stop_id longer than {route_package_writer.MAX_TEXT} bytes")
    return props


def _check_item(name: str, item: str) -> None:
    """The item as the device will read it off the parcel: an S10 from its Code 128, an SSCC from
    its GS1-128 (AI 00). What the device's parser refuses, or reads as another id, never matches."""
    scan = scan_code.parse("]C100" + item if item.isdigit() and len(item) == 18 else item)
    if scan.ok and scan.item_id == item:
        return
    if scan.ok:
        raise CompileError(f"{name}: item {item!r} is read by the device as {scan.item_id!r}",
                           f"List it as {scan.item_id}")
    raise CompileError(f"{name}: item {item!r} cannot be delivered: the device's parser refuses it "
                       f"({scan.message.lower()})",
                       "Correct the id: a UPU S10 such as RR473124829GB with its check digit, "
                       "or an 18-digit SSCC")


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
    vertices = 0
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
    warnings = _check_coordinates(parsed, source)
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
        clockwise += any(not p.exterior.is_ccw for p in _polys(geom))
        fence = _fence(name, shapely.transform(geom, to_local), props, budget, repairs)
        rings = []
        for p in _polys(fence):
            for ring in (p.exterior, *p.interiors):
                rings.append([(int(x), int(y)) for x, y in ring.coords[:-1]])
        stops.append({"stop_id": props["stop_id"], "seq": props["seq"], "address": props["address"],
                      "items": props["items"], "rings": rings})
    polygons = sum(1 for _, _, g in parsed if g.geom_type != "Point")
    if polygons >= 2 and clockwise == polygons:
        warnings.append(f"{source}: every fence ring runs clockwise, as it does when latitude and "
                        f"longitude are swapped; {GEOJSON_ORDER} (check the route on a map)")
    rid = _route_id(route_id, fc.get("route_id"), source, warnings)
    date = _date(service_date if service_date is not None else fc.get("service_date"), source)
    try:
        body = route_package_writer.pack(rid, date, lat0, lon0, stops)
    except route_package_writer.PackError as exc:
        raise CompileError(f"{source}: {exc}") from None
    signed = route_package_writer.sign(body, key or bytes(32))
    return Compiled(signed, len(stops), rid, date, repairs, warnings)


def _route_id(given: str | None, listed: Any, source: str, warnings: list[str]) -> str:
    """--route-id, else the collection's route_id, else the file's name, said out loud."""
    rid = given if given is not None else listed
    if rid is None:
        rid = Path(source).stem
        warnings.append(f"{source}: no route_id in the collection: the route id is {rid!r}, from the "
                        "file name (set \"route_id\" in the GeoJSON or pass --route-id)")
    if not isinstance(rid, str) or not rid.strip():
        raise CompileError(f"{source}: route_id {rid!r} is not a name",
                           "Give route_id as text such as \"NORTH-7\" (or pass --route-id)")
    if ids.problem("route id", rid):  # it becomes the store's routes/ROUTE.pkg: never a path
        raise CompileError(f"{source}: {ids.problem('route id', rid)}",
                           f"Use 1 to {ids.MAX_LEN['route id']} {ids.RULE} (or pass --route-id)")
    return rid


def parse_date(value: Any, what: str = "service date") -> int:
    """YYYY-MM-DD (or the package's YYYYMMDD int) -> YYYYMMDD, refusing what is not a day."""
    text = str(value)
    if isinstance(value, int) and not isinstance(value, bool) and len(text) == 8:
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        day = datetime.date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise CompileError(f"{what} {value!r} is not a date",
                           "Give it as YYYY-MM-DD, e.g. " + datetime.date.today().isoformat())
    return int(day.strftime("%Y%m%d"))


def _date(value: Any, source: str) -> int:
    if value is None:
        return int(datetime.date.today().strftime("%Y%m%d"))
    return parse_date(value, f"{source}: service_date")


def _check_coordinates(parsed: list[tuple[str, dict[str, Any], BaseGeometry]], source: str) -> list[str]:
    """Refuse positions that cannot be [lon, lat]; warn when the route is implausibly spread out or
    one stop lies far from all the others. Returns the warnings."""
    for name, _, g in parsed:
        x0, y0, x1, y1 = g.bounds
        if -180 <= x0 <= x1 <= 180 and -85 <= y0 <= y1 <= 85:
            if max(abs(x0), abs(x1), abs(y0), abs(y1)) < 0.01:
                raise CompileError(f"{name}: lies at 0,0 (coordinates missing or zero)",
                                   f"Give the stop's real position; {GEOJSON_ORDER}")
            continue
        if -180 <= y0 <= y1 <= 180 and -85 <= x0 <= x1 <= 85:
            raise CompileError(f"{name}: coordinates look like [latitude, longitude] "
                               f"(second value {y0:g} is no latitude)", f"Swap them: {GEOJSON_ORDER}")
        raise CompileError(f"{name}: coordinates out of range for WGS84", GEOJSON_ORDER)
    centres = [(g.centroid.x, g.centroid.y) for _, _, g in parsed]
    mx = sorted(c[0] for c in centres)[len(centres) // 2]
    my = sorted(c[1] for c in centres)[len(centres) // 2]
    warnings = []
    far = [(_km(mx, my, *c), name) for c, (name, _, _) in zip(centres, parsed, strict=True)]
    strays = [f"{name} ({km:.0f} km)" for km, name in far if km > MAX_STRAY_KM]
    if strays and len(strays) <= len(parsed) // 2:
        warnings.append(f"{source}: {len(strays)} stop(s) lie far from the rest of the route: "
                        f"{', '.join(strays[:5])}; check their coordinates ({GEOJSON_ORDER})")
    minx, miny, maxx, maxy = shapely.total_bounds([g for _, _, g in parsed])
    spread = _km(minx, miny, maxx, maxy)
    if spread > MAX_SPREAD_KM and not strays:
        warnings.append(f"{source}: the route spans {spread:.0f} km, more than a carrier's round; "
                        f"check the coordinates ({GEOJSON_ORDER})")
    return warnings


def _km(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dl = math.radians(lon1 - lon0)
    a = math.sin((p1 - p0) / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


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
