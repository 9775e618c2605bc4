"""`depot route build ADDRESSES.csv --footprints BUILDINGS.geojson --out ROUTE.geojson`: the depot's
address list to the route GeoJSON `depot route compile` takes, one fence per stop from the building
footprints (docs/address-matching.md).

Every input row comes out exactly once. A matched row's fence is its building's footprint (flats
share it). A row with no building, or with several that fit, is not guessed: with a prior geocode
(lat, lon) it gets a point + radius fence marked `geocode` with a low score; without one its
geometry is null and it is listed, so `depot route compile` names it until someone places it.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from host_tools import address, address_route, ids
from host_tools.address_match import SCORE, Index, Match, load_footprints, paused_gc
from host_tools.errors import DepotError

COLUMNS = ("stop_id", "seq", "name", "address", "items")
GEOCODE_RADIUS_M = 25.0  # a prior geocode of unknown quality: a modest circle, flagged low
KINDS = ("exact", "normalized", "fuzzy", "geocode")


@dataclass
class Row:
    line: int
    stop_id: str
    seq: int
    name: str
    address: str
    items: list[str]
    lonlat: tuple[float, float] | None


@dataclass
class Outcome:
    row: Row
    match: Match
    parsed: address.Parsed

    @property
    def kind(self) -> str:
        """What the row's fence is: a building's (exact, normalized, fuzzy), a geocode's, or none."""
        if self.match.building is not None:
            return self.match.kind
        return "geocode" if self.row.lonlat else "none"


def read_rows(path: str | Path) -> list[Row]:
    """The address CSV: header stop_id,seq,name,address,items[,lat,lon]; UTF-8 with or without BOM;
    comma, semicolon or tab separated (the header tells which)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DepotError(f"{path}: not UTF-8 text", "save the list as CSV UTF-8") from None
    except OSError as exc:
        raise DepotError(f"{path}: {exc.strerror or exc}", "check the path") from None
    header = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=header.count)  # spreadsheets in some locales write ; or tabs
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DepotError(f"{path}: no column {', '.join(missing)} in the header",
                         "the first row names the columns stop_id,seq,name,address,items[,lat,lon]")
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for rec in reader:
        line = reader.line_num
        where = f"{path} line {line}"
        sid = (rec.get("stop_id") or "").strip()
        if not sid:
            raise DepotError(f"{where}: empty stop_id", "give every row its stop id")
        if ids.problem("stop id", sid):
            raise DepotError(f"{where}: {ids.problem('stop id', sid)}",
                             f"use 1 to {ids.MAX_LEN['stop id']} {ids.RULE}")
        if sid in seen:
            raise DepotError(f"{where}: stop_id {sid} already on line {seen[sid]}", "stop ids are unique")
        seen[sid] = line
        try:
            seq = int((rec.get("seq") or "").strip())
        except ValueError:
            raise DepotError(f"{where}: seq {rec.get('seq')!r} is not a whole number",
                             "the walk order is a whole number, 0..65535") from None
        items = [i for i in re.split(r"[;\s]+", rec.get("items") or "") if i]
        rows.append(Row(line, sid, seq, (rec.get("name") or "").strip(), (rec.get("address") or "").strip(),
                        items, _lonlat(where, rec.get("lat"), rec.get("lon"))))
    if not rows:
        raise DepotError(f"{path}: no address rows", "one row per stop below the header")
    return rows


def _lonlat(where: str, lat: str | None, lon: str | None) -> tuple[float, float] | None:
    lat, lon = (lat or "").strip(), (lon or "").strip()
    if not lat and not lon:
        return None
    try:
        la, lo = float(lat), float(lon)
    except ValueError:
        raise DepotError(f"{where}: lat,lon {lat!r},{lon!r} are not numbers",
                         "leave both empty or give decimal degrees") from None
    if not (-90 <= la <= 90 and -180 <= lo <= 180) or not (math.isfinite(la) and math.isfinite(lo)):
        raise DepotError(f"{where}: lat,lon {lat},{lon} out of range", "lat -90..90, lon -180..180")
    return lo, la


def match_rows(rows: list[Row], index: Index) -> list[Outcome]:
    out = []
    for r in rows:
        p = index.parse(r.address)
        out.append(Outcome(r, index.match(r.address, p), p))
    address_route.settle_towns(out, index)  # a street in two towns: the town from the walk order
    return out


def feature(o: Outcome) -> dict[str, Any]:
    r, m = o.row, o.match
    props: dict[str, Any] = {"stop_id": r.stop_id, "seq": r.seq, "name": r.name, "address": r.address,
                             "items": r.items, "match": o.kind,
                             "match_score": m.score if m.building else SCORE[o.kind],
                             "building_id": m.building.id if m.building else None}
    geom: dict[str, Any] | None
    if m.building is not None:
        geom = m.building.geometry
    elif r.lonlat:
        geom = {"type": "Point", "coordinates": [round(r.lonlat[0], 7), round(r.lonlat[1], 7)]}
        props["radius_m"] = GEOCODE_RADIUS_M
    else:
        geom = None
    return {"type": "Feature", "properties": props, "geometry": geom}


def summary(outcomes: list[Outcome]) -> str:
    """The closing line. Every row is counted once: a building (exact, normalized, fuzzy), else
    ambiguous, else a geocode fence, else unmatched. An ambiguous row with a prior geocode still
    gets its point fence (its `match` property says geocode)."""
    c = Counter("ambiguous" if o.match.kind == "ambiguous" else o.kind for o in outcomes)
    n = c["exact"] + c["normalized"] + c["fuzzy"]
    m = len(outcomes)
    return (f"matched {n} of {m} addresses ({100.0 * n / m:.1f}%): exact {c['exact']}, normalized "
            f"{c['normalized']}, fuzzy {c['fuzzy']}, geocode {c['geocode']}; unmatched {c['none']}; "
            f"ambiguous {c['ambiguous']}")


def default_route_id(csv_path: str | Path) -> str:
    """The list's file name as a route id: north-7.csv -> NORTH-7 (what the id rule allows)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(csv_path).stem.upper()).lstrip("._-")
    return stem[: ids.MAX_LEN["route id"]].rstrip(".-_") or "ROUTE"


def build(csv_path: str | Path, footprints: str | Path, *, locale: str = "en",
          route_id: str | None = None) -> tuple[dict[str, Any], list[Outcome], Index]:
    rid = ids.check("route id", route_id) if route_id else default_route_id(csv_path)
    with paused_gc():
        rows = read_rows(csv_path)
        index = Index(load_footprints(footprints), locale)
        outcomes = match_rows(rows, index)
        fc: dict[str, Any] = {"type": "FeatureCollection", "route_id": rid,
                              "features": [feature(o) for o in outcomes]}
    return fc, outcomes, index


def register_route(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser("build", help="match an address list to building footprints: a route GeoJSON")
    p.add_argument("addresses", metavar="ADDRESSES.csv")
    p.add_argument("--footprints", required=True, metavar="BUILDINGS.geojson",
                   help="OSM buildings: overpass-turbo's GeoJSON, or an extract (.osm.pbf, .osm)")
    p.add_argument("--out", required=True, metavar="ROUTE.geojson")
    p.add_argument("--locale", choices=address.LOCALES, default="en",
                   help="en: number + street; zh: road + 号 + 号楼 + 单元 + room")
    p.add_argument("--route-id", help="route id written into the GeoJSON (default: the CSV's name)")
    p.add_argument("--html", metavar="match.html", help="also write a map with the rows not matched")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    fc, outcomes, index = build(args.addresses, args.footprints, locale=args.locale, route_id=args.route_id)
    out = Path(args.out)
    try:
        out.write_text(json.dumps(fc, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")
        if args.html:
            from host_tools import address_html

            with paused_gc():  # the page's shapes are many small objects too
                page = address_html.render(fc, outcomes, index)
            Path(args.html).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise DepotError(f"cannot write {exc.filename}: {exc.strerror}", "check the folder") from None
    for o in outcomes:
        if o.kind in ("none", "geocode"):
            fence = "no fence" if o.kind == "none" else f"a {GEOCODE_RADIUS_M:g} m geocode fence"
            print(f"{o.row.stop_id}: {o.match.kind} ({o.match.why}); {fence}: {o.row.address}")
    placeless = sum(1 for o in outcomes if o.kind == "none")
    todo = (f"; {placeless} stop(s) without a fence: give them lat,lon or a footprint before "
            "`depot route compile`") if placeless else ""
    print(f"{out}: route {fc['route_id']}, {len(outcomes)} stops, {len(index.buildings)} footprints, "
          f"{time.monotonic() - t0:.1f} s{todo}")
    print(summary(outcomes))
    return 0
