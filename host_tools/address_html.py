"""The html page of `depot route build --html`: a map of the footprints and the fences chosen, and
the rows that need a person (no building, or several), each with the reason.

The map is an inline SVG (no tiles, no scripts: the page works offline); shapely's STRtree picks
the footprints around the route, so a city-wide export does not end up in the page.
"""

from __future__ import annotations

import math
from typing import Any

import jinja2
import shapely
import shapely.affinity
from shapely.geometry import Point, box, shape

from host_tools.address_match import Index

MAP_W = 900.0
MAX_DRAWN = 20000  # footprints drawn around the route; more would only slow the browser
MARGIN_DEG = 0.0005  # about 50 m around the route's fences
FAR_FROM_PRIOR_M = 250.0  # a match this far from the row's own geocode: one of the two is wrong
M_PER_DEG = 111195.0

_env = jinja2.Environment(loader=jinja2.PackageLoader("host_tools", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                          lstrip_blocks=True)


def prior_distance_m(o) -> float | None:
    """Metres from a matched row's prior geocode to its building (0 inside), or None."""
    if o.match.building is None or o.row.lonlat is None:
        return None
    lon, lat = o.row.lonlat
    kx = math.cos(math.radians(lat))
    g = shapely.affinity.scale(shape(o.match.building.geometry), kx, 1.0, origin=(lon, lat))
    return g.distance(Point(lon * 1.0, lat)) * M_PER_DEG


def _path(geom: dict[str, Any], to_xy) -> str:
    polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    out = []
    for poly in polys:
        for ring in poly:
            pts = [to_xy(lon, lat) for lon, lat in ring[:-1]]
            out.append("M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in pts) + "Z")
    return "".join(out)


def render(fc: dict[str, Any], outcomes: list, index: Index) -> str:
    feats = [f for f in fc["features"] if f["geometry"]]
    located = [shape(f["geometry"]) for f in feats]
    bounds = shapely.total_bounds(located) if located else None
    drawn: list[dict[str, Any]] = []
    svg: dict[str, Any] = {"w": MAP_W, "h": 0.0}
    if bounds is not None and all(map(math.isfinite, bounds)):
        minx, miny, maxx, maxy = (bounds[0] - MARGIN_DEG, bounds[1] - MARGIN_DEG,
                                  bounds[2] + MARGIN_DEG, bounds[3] + MARGIN_DEG)
        kx = math.cos(math.radians((miny + maxy) / 2))  # metres east per degree, relative
        scale = MAP_W / max((maxx - minx) * kx, 1e-9)
        svg["h"] = round((maxy - miny) * scale, 1)

        def to_xy(lon: float, lat: float) -> tuple[float, float]:
            return (lon - minx) * kx * scale, (maxy - lat) * scale

        tree = shapely.STRtree([shape(b.geometry) for b in index.buildings])
        near = tree.query(box(minx, miny, maxx, maxy))[:MAX_DRAWN]
        used = {f["properties"]["building_id"] for f in feats}
        for i in sorted(int(k) for k in near):
            b = index.buildings[i]
            if b.id not in used:
                drawn.append({"d": _path(b.geometry, to_xy), "cls": "fp", "title": b.label()})
        for f in feats:
            p = f["properties"]
            title = f"{p['seq']}. {p['stop_id']} {p['address']}: {p['match']} {p['match_score']}"
            if f["geometry"]["type"] == "Point":
                x, y = to_xy(*f["geometry"]["coordinates"])
                r = p["radius_m"] / M_PER_DEG * scale
                drawn.append({"circle": (round(x, 1), round(y, 1), round(r, 1)), "cls": "geocode",
                              "title": title})
            else:
                drawn.append({"d": _path(f["geometry"], to_xy), "cls": p["match"], "title": title})
    attention = [o for o in outcomes if o.match.building is None]
    fuzzy = [o for o in outcomes if o.match.kind == "fuzzy"]
    evidence = [o for o in outcomes if o.match.evidence and o.match.building is not None]
    far = [(o, d) for o in outcomes if (d := prior_distance_m(o)) is not None and d > FAR_FROM_PRIOR_M]
    counts = {k: sum(1 for f in fc["features"] if f["properties"]["match"] == k)
              for k in ("exact", "normalized", "fuzzy", "geocode", "none")}
    return _env.get_template("address_match.html").render(
        route_id=fc.get("route_id", ""), svg=svg, drawn=drawn, attention=attention, fuzzy=fuzzy, far=far,
        evidence=evidence, far_m=FAR_FROM_PRIOR_M,
        counts=counts, total=len(outcomes), footprints=len(index.buildings), locale=index.locale)
