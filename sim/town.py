"""A deterministic synthetic town: streets in a grid, house footprints along them, parcels at the doors.

Everything is derived from a seed, so tests, benchmarks and the demo get the same town every run.
Footprints are shaped like real ones: house-sized rectangles, L-shapes, a courtyard block with a
hole, house + garage as one multipart stop, and a few Point stops (kiosks, lockers) with radius_m.
Items are valid UPU S10 ids and some GS1 SSCCs. `irregular=True` gives surveyed-looking footprints
instead: 10 to 32 vertices each, jagged and concave (star-shaped around the lot, so always simple),
about the size of real ones.

    python -m sim town --stops 5000 --out big.geojson   # a big town's route (also python -m sim.town)
    python -m sim town --examples                       # rewrite examples/routes/{north,south}.geojson
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path
from typing import Any

from shapely.geometry import shape

# A made-up town; the coordinates only have to be plausible.
TOWN_LAT = 52.2871
TOWN_LON = 6.0912
EARTH_R = 6371008.8
BLOCK_W = 110.0  # m between north-south streets
BLOCK_H = 64.0  # m between east-west streets
LOT_W = 13.0
GRID_ROTATION_DEG = 11.0
STREETS = ["Linden", "Mill", "Church", "Station", "Orchard", "Brook", "Willow", "Market", "Garden",
           "Chestnut", "Meadow", "Harbour", "Beacon", "Elm", "Canal", "Hazel", "Quarry", "Rose",
           "Foundry", "Heath", "Ash", "Tanner", "Weaver", "Cooper", "Birch", "Laurel"]
SUFFIX = ["Street", "Lane", "Road", "Way"]
S10_PREFIXES = ["RR", "RB", "CP", "LX", "EE", "UA"]
S10_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)


def s10_check(serial: str) -> int:
    """UPU S10 check digit of an 8-digit serial: 11 - weighted sum mod 11; 10 -> 0, 11 -> 5."""
    c = 11 - sum(int(d) * w for d, w in zip(serial, S10_WEIGHTS, strict=True)) % 11
    return 0 if c == 10 else 5 if c == 11 else c


def s10(prefix: str, serial: str, country: str = "NL") -> str:
    return f"{prefix}{serial}{s10_check(serial)}{country}"


def sscc(body17: str) -> str:
    """18-digit SSCC: 17 digits and the GS1 mod-10 check digit (weights 3,1,3,... from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body17)))
    return body17 + str((10 - total % 10) % 10)


def to_lonlat(east: float, north: float) -> list[float]:
    lat = TOWN_LAT + math.degrees(north / EARTH_R)
    lon = TOWN_LON + math.degrees(east / (EARTH_R * math.cos(math.radians(TOWN_LAT))))
    return [round(lon, 7), round(lat, 7)]


class _Frame:
    """Street-aligned frame: u along the street, v across it, rotated with the town grid."""

    def __init__(self, ox: float, oy: float, angle_deg: float) -> None:
        self.ox, self.oy = ox, oy
        a = math.radians(angle_deg)
        self.c, self.s = math.cos(a), math.sin(a)

    def pt(self, u: float, v: float) -> list[float]:
        return to_lonlat(self.ox + u * self.c - v * self.s, self.oy + u * self.s + v * self.c)

    def ring(self, pts: list[tuple[float, float]]) -> list[list[float]]:
        r = [self.pt(u, v) for u, v in pts]
        return r + [r[0]]


def _rect(u: float, v: float, w: float, d: float) -> list[tuple[float, float]]:
    return [(u, v), (u + w, v), (u + w, v + d), (u, v + d)]


def _building(rng: random.Random, kind: str, fr: _Frame, u: float, v: float, side: int) -> dict:
    """GeoJSON geometry of one footprint whose street face is at v (side +1: extends to +v)."""
    def face(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out = [(a, v + side * b) for a, b in pts]
        return out if side > 0 else out[::-1]  # keep counter-clockwise exteriors

    w = rng.uniform(8.0, 11.0)
    d = rng.uniform(9.0, 13.0)
    if kind == "L":
        a, b = rng.uniform(4.0, 6.0), rng.uniform(4.0, 6.5)
        pts = [(u, 0), (u + w, 0), (u + w, d - b), (u + w - a, d - b), (u + w - a, d), (u, d)]
        return {"type": "Polygon", "coordinates": [fr.ring(face(pts))]}
    if kind == "garage":
        house = face(_rect(u, 0, w - 3.5, d))
        garage = face(_rect(u + w - 3.0, 2.0, 3.2, 5.5))
        return {"type": "MultiPolygon", "coordinates": [[fr.ring(house)], [fr.ring(garage)]]}
    if kind == "court":
        outer = face(_rect(u, 0, 30.0, 28.0))
        hole = face(_rect(u + 8.0, 8.0, 14.0, 12.0))[::-1]  # holes run clockwise
        return {"type": "Polygon", "coordinates": [fr.ring(outer), fr.ring(hole)]}
    return {"type": "Polygon", "coordinates": [fr.ring(face(_rect(u, 0, w, d)))]}


def _irregular(rng: random.Random, fr: _Frame, u: float, v: float, side: int) -> dict:
    """A footprint traced like a survey: many vertices at uneven angles and radii around the lot."""
    n = rng.randrange(10, 33)  # the compiler's budget is 32 vertices a fence
    cu, cv = u + 5.5, v + side * 6.0
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))
    ring = []
    for a in angles:
        r = rng.uniform(3.0, 6.0) if rng.random() > 0.2 else rng.uniform(1.5, 3.0)  # notches
        ring.append((cu + r * math.cos(a), cv + r * math.sin(a)))
    pts = [fr.pt(a, b) for a, b in ring]
    return {"type": "Polygon", "coordinates": [pts + [pts[0]]]}


def town(seed: int = 1, stops: int = 220, area: str = "north", route_id: str | None = None,
         service_date: str = "2026-11-27", irregular: bool = False) -> dict[str, Any]:
    """FeatureCollection of `stops` stops in walking order, in the `north` or `south` of town."""
    rng = random.Random(f"{seed}:{area}")
    sign = 1 if area == "north" else -1
    blocks_across = 4 if stops <= 400 else 8
    features: list[dict[str, Any]] = []
    used: set[str] = set()
    court_due = False
    row = 0
    while len(features) < stops:
        street = f"{STREETS[(row + (0 if sign > 0 else 13)) % len(STREETS)]} {SUFFIX[row % 4]}"
        if row >= len(STREETS):
            street = f"{street} {row // len(STREETS) + 1}"
        y = sign * (BLOCK_H / 2 + row * BLOCK_H)
        fr = _Frame(0.0, 0.0, GRID_ROTATION_DEG)
        # out along one side of the street, back along the other: a carrier's loop
        for side in (1, -1):
            lots = [b * BLOCK_W + 8.0 + k * LOT_W for b in range(blocks_across)
                    for k in range(int((BLOCK_W - 16.0) // LOT_W))]
            if side < 0:
                lots.reverse()
            skip = 0
            for i, u in enumerate(lots):
                if len(features) >= stops:
                    break
                if skip:
                    skip -= 1
                    continue
                n = len(features)
                v = y + side * rng.uniform(4.0, 6.0)
                number = 2 * i + (2 if side > 0 else 1)
                props: dict[str, Any] = {"stop_id": f"{area[0].upper()}{n + 1:04d}", "seq": n + 1,
                                         "address": f"{number} {street}"}
                if irregular:
                    geom = _irregular(rng, fr, u + rng.uniform(0.5, 1.5), v, side)
                elif n % 37 == 20:
                    geom: dict[str, Any] = {"type": "Point", "coordinates": fr.pt(u + 5.0, v + side * 3.0)}
                    props["radius_m"] = round(rng.uniform(6.0, 10.0), 1)
                else:
                    court_due = court_due or n % 83 == 30
                    kind = ("court" if court_due and i + 2 < len(lots)
                            and abs(lots[i + 2] - u) < 3 * LOT_W else "L" if n % 7 == 3
                            else "garage" if n % 11 == 5 else "rect")
                    if kind == "court":  # a block of flats around a courtyard takes three lots
                        court_due = False
                        u = min(u, lots[i + 2]) if side > 0 else lots[i + 2]
                        skip = 2
                    geom = _building(rng, kind, fr, u + rng.uniform(0.5, 1.5), v, side)
                props["items"] = _items(rng, used)
                features.append({"type": "Feature", "properties": props, "geometry": geom})
        row += 1
    return {"type": "FeatureCollection", "route_id": route_id or f"{area.upper()}-{seed}",
            "service_date": service_date, "features": features}


def _items(rng: random.Random, used: set[str]) -> list[str]:
    out = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        while True:
            if rng.random() < 0.12:
                item = sscc("3" + "8712345" + f"{rng.randrange(10**9):09d}")
            else:
                item = s10(rng.choice(S10_PREFIXES), f"{rng.randrange(10**8):08d}")
            if item not in used:
                used.add(item)
                out.append(item)
                break
    return out


def door(feature: dict[str, Any]) -> tuple[float, float]:
    """(lat, lon) of a point inside the stop's fence: where a carrier stands to deliver."""
    g = shape(feature["geometry"])
    p = g if g.geom_type == "Point" else g.representative_point()
    lon, lat = p.coords[0]
    return lat, lon


def write_geojson(fc: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(fc, separators=(",", ":")) + "\n")
    return p


def main(argv: list[str] | None = None) -> int:
    from sim.__main__ import main as sim_main

    return sim_main(["town", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
