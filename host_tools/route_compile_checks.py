"""What the route compiler (route_compile.py) refuses or warns about in a route's GeoJSON.

What the device cannot use is refused here, not found out at the door: a feature without its
properties, an item its identifier parser (firmware/scan_code.py, the same code) would not read
back as that item, a route id that is a path, a service date that is no date, coordinates that are
not [lon, lat]. What is possible but unlikely (a route tens of kilometres across, a stop far from
all the others) is a warning. Every refusal is a CompileError: one line naming the feature and
the fix.
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry.base import BaseGeometry

from firmware import scan_code
from host_tools import ids, route_package_writer
from host_tools.errors import DepotError

MAX_SPREAD_KM = 30.0  # a carrier's route wider than this is more likely a coordinate mistake
MAX_STRAY_KM = 10.0  # a stop this far from the route's median point is probably misplaced
GEOJSON_ORDER = "GeoJSON positions are [longitude, latitude]"


class CompileError(DepotError, ValueError):
    """Bad route input: `what` names the feature, `fix` says what to change."""

    def __init__(self, what: str, fix: str = "Fix the route file and compile again"):
        super().__init__(what, fix)

    def __str__(self) -> str:
        return self.line()


def feature_name(k: int, props: dict[str, Any]) -> str:
    sid = props.get("stop_id") if isinstance(props, dict) else None
    return f"feature #{k} (stop_id {sid!r})" if isinstance(sid, str) and sid else f"feature #{k}"


def check_props(k: int, feat: Any) -> dict[str, Any]:
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        raise CompileError(f"feature #{k}: not a GeoJSON Feature")
    props = feat.get("properties")
    if not isinstance(props, dict):
        raise CompileError(f"feature #{k}: has no properties")
    name = feature_name(k, props)
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


def check_route_id(given: str | None, listed: Any, source: str, warnings: list[str]) -> str:
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


def check_date(value: Any, source: str) -> int:
    if value is None:
        return int(datetime.date.today().strftime("%Y%m%d"))
    return parse_date(value, f"{source}: service_date")


def check_coordinates(parsed: list[tuple[str, dict[str, Any], BaseGeometry]], source: str) -> list[str]:
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
