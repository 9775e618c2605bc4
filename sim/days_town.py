"""A town whose data disagree with the ground, for `python -m sim days` (docs/fence-learning.md).

The ground is sim.town's street grid. The data the depot has are what it would really have: an OSM
footprint export and an address list with prior geocodes, which `depot route build` turns into the
first route. What differs from the ground, per stop, drawn from the seed:

- `door_away` (15%): the carrier delivers 3.5-9 m off the footprint: a mailbox at the kerb, a gate
  at the back of the garden; a block of flats around a courtyard always has its door inside it.
- `wrong_tags` (10%): the footprint's OSM house number is that of the house two lots along (pairs
  swapped), so the matcher matches the right words to the wrong building.
- `new_build` (8%): the house is not in the footprints; its prior geocode is good (within 8 m) for
  half of them and 30-60 m off for the rest.
- misspelt and abbreviated street names (25% of rows), and a few kiosks (Point stops) that have no
  footprint at all.

Each stop also gets its sky: open (80%), trees (15%) or a narrow yard (5%), as sim/gnss.py
conditions. A door at a facade (within a metre of its house's wall) has the wall hide half its sky,
so its error is FACADE_RATIO times longer across the wall than along it, at the same RMS (the
facade effect, docs/fence-learning.md); doors away from the walls have it the same in every
direction. `door` is where the carrier stands; with `facade_deg` it is all the days runner needs
of the ground.
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shapely.geometry import Point, Polygon, shape

from host_tools import learn_route
from sim import gnss, town

SHARES = {"door_away": 0.15, "wrong_tags": 0.10, "new_build": 0.08}
# sim/gnss.py's receiver: 2 m (1-sigma per axis) times HDOP, time-correlated, with multipath jumps;
# the device's accuracy radius, HDOP x 5 m, is then its ~95% radius.
SKIES = {"open": gnss.Conditions(noise_m=2.0, noise_corr_s=10.0, hdop=1.0, multipath_rate=0.0005),
         "trees": gnss.Conditions(noise_m=2.0, noise_corr_s=15.0, hdop=1.6, multipath_rate=0.002),
         "yard": gnss.Conditions(noise_m=2.0, noise_corr_s=20.0, hdop=2.5, multipath_rate=0.005,
                                 multipath_m=15.0)}
FACADE_RATIO = 1.5  # a door at a wall: the error across the wall / along it (same RMS)
FRAME = learn_route.Frame(town.TOWN_LON, town.TOWN_LAT)


@dataclass
class GroundStop:
    stop_id: str
    kind: str  # ok, door_away, wrong_tags, new_build, kiosk
    door: tuple[float, float]  # (lat, lon) where the carrier stands
    sky: str
    building_id: str | None  # the true building, None if not in the footprints
    facade_deg: float | None = None  # a door at a wall: the bearing across it (the error's long axis)


@dataclass
class DaysTown:
    route_id: str
    footprints: dict[str, Any]
    rows: list[dict[str, str]]
    ground: dict[str, GroundStop] = field(default_factory=dict)

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        fp = folder / "buildings.geojson"
        fp.write_text(json.dumps(self.footprints))
        addr = folder / "addresses.csv"
        with addr.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, ["stop_id", "seq", "name", "address", "items", "lat", "lon"])
            w.writeheader()
            w.writerows(self.rows)
        return addr, fp


def _facing(address: str) -> tuple[float, float]:
    """Unit vector (east, north) from a house towards its street: sim.town puts even numbers on
    the side that extends away from the street in +v, odd ones in -v (v: the grid's north)."""
    side = 1 if int(address.split()[0]) % 2 == 0 else -1
    a = math.radians(town.GRID_ROTATION_DEG)
    return (side * math.sin(a), -side * math.cos(a))


def _xy_to_latlon(x: float, y: float) -> tuple[float, float]:
    lon, lat = FRAME.lonlat(x, y)
    return lat, lon


def _doors(rng: random.Random, feat: dict[str, Any], kind: str) -> tuple[float, float, float | None]:
    """(x, y) in metres where the carrier stands for this stop, and the bearing across the wall the
    door is at (None: away from the walls)."""
    g = FRAME.to_local(shape(feat["geometry"]))
    if isinstance(g, Point):
        return g.x, g.y, None
    if kind == "door_away" and isinstance(g, Polygon) and g.interiors:
        c = Polygon(g.interiors[0]).centroid  # a block of flats: the door is in its courtyard
        return c.x, c.y, None
    hull = g.convex_hull
    assert isinstance(hull, Polygon)
    nx, ny = _facing(feat["properties"]["address"])
    c = hull.centroid
    front = hull.exterior.interpolate(hull.exterior.project(Point(c.x + 40 * nx, c.y + 40 * ny)))
    if kind != "door_away":
        return front.x + 0.5 * nx, front.y + 0.5 * ny, math.degrees(math.atan2(nx, ny)) % 180
    if rng.random() < 0.4:  # a mailbox at the kerb (the street's centre line is 4-6 m out)
        d = rng.uniform(3.5, 4.5)
        return front.x + d * nx, front.y + d * ny, None
    back = hull.exterior.interpolate(hull.exterior.project(Point(c.x - 40 * nx, c.y - 40 * ny)))
    d = rng.uniform(6.0, 9.0)  # a gate at the back of the garden
    return back.x - d * nx, back.y - d * ny, None


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1:] if rng.random() < 0.5 else word[:i] + word[i + 1] + word[i] + word[i + 2:]


def _written(rng: random.Random, address: str) -> str:
    number, *street = address.split()
    r = rng.random()
    if r < 0.10:
        street[0] = _typo(rng, street[0])
    elif r < 0.22:
        street[-1] = {"Street": "St", "Lane": "Ln", "Road": "Rd", "Way": "Wy"}.get(street[-1], street[-1])
    elif r < 0.25:
        street = [s.upper() for s in street]
    return " ".join([number, *street])


def generate(seed: int = 1, stops: int = 220, route_id: str = "DAYS-1") -> DaysTown:
    rng = random.Random(f"days:{seed}")
    ground_fc = town.town(seed=seed, stops=stops, area="north", route_id=route_id)
    feats = ground_fc["features"]
    kinds: dict[int, str] = {}
    for n, f in enumerate(feats):
        if f["geometry"]["type"] == "Point":
            kinds[n] = "kiosk"
    draw = [n for n in range(len(feats)) if n not in kinds]
    rng.shuffle(draw)
    swaps: list[tuple[int, int]] = []
    for n in draw:
        if n in kinds:
            continue
        r = rng.random()
        partner = n + 2
        street = feats[n]["properties"]["address"].split()[1:]
        if r < SHARES["wrong_tags"] / 2 and partner in draw and partner not in kinds and \
                feats[partner]["properties"]["address"].split()[1:] == street:
            kinds[n] = kinds[partner] = "wrong_tags"
            swaps.append((n, partner))
        elif r < SHARES["wrong_tags"] / 2 + SHARES["door_away"]:
            kinds[n] = "door_away"
        elif r < SHARES["wrong_tags"] / 2 + SHARES["door_away"] + SHARES["new_build"]:
            kinds[n] = "new_build"
        else:
            kinds[n] = "ok"
    tags: dict[int, tuple[str, str]] = {}
    for n, f in enumerate(feats):
        number, *street = f["properties"]["address"].split()
        tags[n] = (number, " ".join(street))
    for a, b in swaps:
        tags[a], tags[b] = (tags[b][0], tags[a][1]), (tags[a][0], tags[b][1])
    out = DaysTown(route_id, {"type": "FeatureCollection", "features": []}, [])
    for n, f in enumerate(feats):
        props = f["properties"]
        kind = kinds[n]
        x, y, facade = _doors(rng, f, kind)
        bid = None
        if kind not in ("new_build", "kiosk"):
            bid = f"way/{100000 + n}"
            out.footprints["features"].append({
                "type": "Feature", "id": bid, "geometry": f["geometry"],
                "properties": {"@id": bid, "building": "house", "addr:housenumber": tags[n][0],
                               "addr:street": tags[n][1]}})
        err = rng.uniform(30.0, 60.0) if kind == "new_build" and rng.random() < 0.5 else rng.uniform(1.0, 8.0)
        a = rng.uniform(0, 2 * math.pi)
        lat, lon = _xy_to_latlon(x + err * math.cos(a), y + err * math.sin(a))
        out.rows.append({"stop_id": props["stop_id"], "seq": str(props["seq"]), "name": f"Resident {n + 1}",
                         "address": _written(rng, props["address"]), "items": " ".join(props["items"]),
                         "lat": f"{lat:.6f}", "lon": f"{lon:.6f}"})
        sky = "open" if rng.random() < 0.8 else "trees" if rng.random() < 0.75 else "yard"
        out.ground[props["stop_id"]] = GroundStop(props["stop_id"], kind, _xy_to_latlon(x, y), sky, bid,
                                                  facade)
    return out
