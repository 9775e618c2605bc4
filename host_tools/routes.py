"""Routes as the depot's reports see them: stops in sequence, their expected items and their fences
in longitude/latitude. A route comes from a compiled package (decoded with firmware/route_package.py, the
same code the device runs) or from the GeoJSON it was compiled from.

Until the store keeps a route registry of its own, compiled packages are kept beside the store
file, in `<store folder>/routes/<route id>.pkg` (`register`, `find`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from host_tools import ids, private

# A ring is a list of (lon, lat); a polygon is its outer ring then its holes.
Ring = list[tuple[float, float]]
Polygon = list[Ring]

_EARTH_M = 6371008.8  # mean radius; fences are small, an equirectangular frame is exact enough


class RouteError(ValueError):
    """The route cannot be read, or is not known to the store."""


@dataclass
class Stop:
    stop_id: str
    seq: int
    address: str
    items: list[str]
    polygons: list[Polygon] = field(default_factory=list)

    def centre(self) -> tuple[float, float]:
        """A point inside the fence (shapely's representative point): where the map numbers it."""
        shape = fence_shape(self)
        if shape is None:
            return (0.0, 0.0)
        p = shape.representative_point()
        return (p.x, p.y)


@dataclass
class Route:
    route_id: str
    stops: list[Stop]
    service_date: str = ""
    reasons: dict[int, str] = field(default_factory=dict)  # attempt reason/action code -> label

    def stop(self, stop_id: str) -> Stop | None:
        for s in self.stops:
            if s.stop_id == stop_id:
                return s
        return None

    def item_stops(self) -> dict[str, str]:
        """item id -> the stop it is expected at."""
        return {item: s.stop_id for s in self.stops for item in s.items}


def fence_shape(stop: Stop):
    """The stop's fence as a shapely geometry (lon/lat), or None when it has none."""
    from shapely.geometry import MultiPolygon
    from shapely.geometry import Polygon as ShPolygon

    parts = [ShPolygon(poly[0], poly[1:]) for poly in stop.polygons if poly and len(poly[0]) >= 3]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def distance_to_fence_m(stop: Stop, lon: float, lat: float) -> float:
    """Metres from a position to the stop's fence edge, 0 inside (the host's own check of a scan)."""
    import shapely
    from shapely.geometry import Point

    shape = fence_shape(stop)
    if shape is None:
        return math.inf
    k = math.cos(math.radians(lat)) * math.pi / 180 * _EARTH_M
    m = math.pi / 180 * _EARTH_M
    local = shapely.transform(shape, lambda xy: (xy - (lon, lat)) * (k, m))
    return float(local.distance(Point(0.0, 0.0)))


# --- loading -------------------------------------------------------------------------------------

def load(path: str | Path, key: bytes | None = None) -> Route:
    """A route from a compiled package (`.pkg`) or its source GeoJSON."""
    p = Path(path)
    if p.suffix.lower() in (".geojson", ".json"):
        return from_geojson(p)
    return from_package(p, key)


def from_geojson(path: str | Path, route_id: str | None = None) -> Route:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RouteError(f"{path}: cannot read GeoJSON: {exc}") from None
    props = {**(doc.get("properties") or {}), **{k: doc[k] for k in ("route_id", "service_date") if k in doc}}
    rid = route_id or props.get("route_id") or Path(path).stem
    stops = []
    for n, feat in enumerate(doc.get("features") or []):
        fp = feat.get("properties") or {}
        try:
            stop = Stop(str(fp["stop_id"]), int(fp["seq"]), str(fp.get("address", "")),
                        [str(i) for i in fp.get("items") or []])
        except (KeyError, TypeError, ValueError):
            raise RouteError(f"{path}: feature {n} lacks stop_id/seq") from None
        stop.polygons = _geojson_polygons(feat.get("geometry") or {}, fp)
        stops.append(stop)
    stops.sort(key=lambda s: s.seq)
    return Route(str(rid), stops, str(props.get("service_date", "")))


def _geojson_polygons(geom: dict, props: dict) -> list[Polygon]:
    kind = geom.get("type")
    coords = geom.get("coordinates") or []
    if kind == "Polygon":
        return [[[(float(x), float(y)) for x, y, *_ in ring] for ring in coords]]
    if kind == "MultiPolygon":
        return [[[(float(x), float(y)) for x, y, *_ in ring] for ring in poly] for poly in coords]
    if kind == "Point":
        lon, lat = float(coords[0]), float(coords[1])
        r = float(props.get("radius_m", 10.0))
        k = math.cos(math.radians(lat))
        ring = []
        for i in range(32):
            a = 2 * math.pi * i / 32
            dx, dy = r * math.cos(a), r * math.sin(a)
            ring.append((lon + math.degrees(dx / _EARTH_M) / k, lat + math.degrees(dy / _EARTH_M)))
        ring.append(ring[0])
        return [[ring]]
    return []


def from_package(path: str | Path, key: bytes | None = None) -> Route:
    """Decode a compiled package with the firmware's own reader (firmware/route_package.py), which proves
    its CRCs and HMAC under `key` first. Without the key (a report of a package compiled unsigned or
    for an unknown device) only the CRCs are proven, by the same reader with the HMAC check skipped.
    """
    from firmware import route_package

    try:
        pkg = route_package.RoutePackage(str(path), key if key is not None else bytes(32))
    except route_package.PackageError as exc:
        if key is not None or "signature" not in str(exc):
            raise RouteError(f"{path}: {exc}") from None
        pkg = _unsigned(route_package, Path(path))
    with pkg:
        return _decode(pkg)


def _unsigned(route_package, path: Path):
    """The package re-signed with an all-zero key in a temporary copy, so the reader proves the CRCs."""
    import tempfile

    from host_tools import route_package_writer

    data = route_package_writer.resign(path.read_bytes(), bytes(32))
    with tempfile.NamedTemporaryFile(suffix=".pkg", delete=False) as tmp:
        tmp.write(data)
    try:
        return route_package.RoutePackage(tmp.name, bytes(32))
    except route_package.PackageError as exc:
        raise RouteError(f"{path}: {exc}") from None
    finally:
        Path(tmp.name).unlink(missing_ok=True)


def _decode(pkg) -> Route:
    import struct

    f = pkg.file
    stops = []
    for i in range(pkg.stop_count):
        st = pkg.stop(i)
        f.seek(pkg.dir_off + 28 * i)
        x0, y0, _x1, _y1, goff, words, _roff = struct.unpack("<iiiiiii", f.read(28))
        f.seek(goff)
        w = struct.unpack("<%dh" % words, f.read(2 * words))
        rings = []
        v = 1 + w[0]
        for r in range(w[0]):
            n = w[1 + r]
            pts = [(x0 + w[v + 2 * k], y0 + w[v + 2 * k + 1]) for k in range(n)]
            v += 2 * n
            rings.append([_lonlat(pkg, x, y) for x, y in pts])
        stops.append(Stop(str(st.stop_id), int(st.seq), str(st.address), [str(x) for x in st.items],
                          _even_odd(rings)))
    stops.sort(key=lambda s: s.seq)
    d = str(pkg.service_date)
    date = f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 else d
    return Route(str(pkg.route_id), stops, date, {int(c): str(t) for c, t in pkg.reason_codes})


def _lonlat(pkg, x: int, y: int) -> tuple[float, float]:
    # inverse of geofence.local_x/local_y: dm -> micro-degrees at the route origin
    return ((pkg.origin_lon_e6 + x * 65536 / pkg.kx) / 1e6, (pkg.origin_lat_e6 + y * 65536 / pkg.ky) / 1e6)


def _even_odd(rings: list[Ring]) -> list[Polygon]:
    """The package keeps every ring of every part, read with the even-odd rule; rebuild polygons
    with their holes so GeoJSON and shapely see the same area the device tests."""
    from shapely.geometry import Polygon as ShPolygon

    area = None
    for ring in rings:
        if len(ring) < 3:
            continue
        p = ShPolygon(ring).buffer(0)
        area = p if area is None else area.symmetric_difference(p)
    if area is None or area.is_empty:
        return []
    parts = list(getattr(area, "geoms", [area]))
    return [[list(p.exterior.coords)] + [list(h.coords) for h in p.interiors]
            for p in parts if p.geom_type == "Polygon"]


# --- the registry beside the store ----------------------------------------------------------------

def folder(store_path: str | Path) -> Path:
    return Path(store_path).resolve().parent / "routes"


def register(store_path: str | Path, source: str | Path, route_id: str | None = None) -> Path:
    """Keep a copy of a compiled package (or its GeoJSON) so reports can find the route by id."""
    src = Path(source)
    route = load(src) if route_id is None else None
    rid = ids.check("route id", route_id or (route.route_id if route else src.stem))
    dest = folder(store_path) / (rid + src.suffix.lower())
    private.folder(dest.parent)
    if src.resolve() != dest.resolve():
        private.write(dest, src.read_bytes())
    else:
        private.restrict(dest)
    return dest


def find(store_path: str | Path, route_id: str) -> Route:
    if ids.problem("route id", route_id):
        raise RouteError(f"route {route_id!r} is not known to the store: {ids.problem('route id', route_id)}")
    base = folder(store_path) / route_id
    for suffix in (".pkg", ".geojson", ".json"):
        p = Path(str(base) + suffix)
        if p.exists():
            return load(p)
    raise RouteError(f"route {route_id!r} is not known to the store (looked in {base.parent})")
