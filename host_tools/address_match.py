"""Match parsed addresses to OSM building footprints, through indexes only (no pairwise comparison).

The index maps a normalised street to its house numbers to the buildings carrying them; a second
map goes from a street's bare name (and, in `zh`, its pinyin) to the streets that have it, and
rapidfuzz searches the distinct names for typos. Per address the work is a few dictionary
look-ups, plus one fuzzy search over street names when the street is unknown.

Outcomes, from the strongest: `exact` (as written, up to case and spacing), `normalized` (equal
after folding spellings, units, ranges, order and appended city), `fuzzy` (a typo in the street or
a missing street type, resolved to exactly one building). Anything else is not guessed: no
candidate is `none` with the reason, several are `ambiguous` with the candidates. Flats (units)
land on their building; several stops share it.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import shapely
from rapidfuzz import process
from rapidfuzz.distance import OSA
from shapely.geometry import shape

from host_tools import address, address_zh
from host_tools.address import Parsed
from host_tools.errors import DepotError

SCORE = {"exact": 1.0, "normalized": 0.95, "geocode": 0.2, "none": 0.0}
FUZZY_MAX = 0.9  # a fuzzy match scores at most this, less per edit
MISSING_TYPE_SCORE = 0.85
AddressPoint = tuple[float, float, dict[str, Any]]  # lon, lat, tags of an OSM address node


@dataclass
class Building:
    id: str
    geometry: dict[str, Any]
    tags: dict[str, Any]
    street: str = ""
    numbers: tuple[str, ...] = ()
    block: str = ""  # zh 号楼
    written: str = ""  # the tags as a person would write them, folded

    def label(self) -> str:
        t = self.tags
        st = street_of(t)
        if not st:
            return self.id
        hn = str(t.get("addr:housenumber", ""))
        extra = " " + str(t.get("name")) if self.block and t.get("name") else ""
        return f"{st}{hn}{extra}" if self.block or not hn[:1].isdigit() or _is_cjk(st) else f"{hn} {st}"


class StreetParts(NamedTuple):
    typ: str
    dirs: tuple[str, ...]
    lane: str  # zh 弄
    core: str


@dataclass
class Match:
    kind: str  # exact, normalized, fuzzy, none, ambiguous
    score: float = 0.0
    building: Building | None = None
    candidates: list[Building] = field(default_factory=list)
    why: str = ""
    # ambiguous only because the one street is in several towns and the row names none: each town's
    # buildings with the number (maybe none), for evidence from the walk order (address_route.py)
    towns: dict[str, list[Building]] = field(default_factory=dict)
    street: str = ""
    street_kind: str = ""  # how the street was found: normalized or fuzzy, and its score
    street_score: float = 0.0
    evidence: str = ""  # how the town was decided, when it was not written


def street_of(tags: dict[str, Any]) -> str:
    """The street an OSM address names; a hamlet without streets names its place instead."""
    st = tags.get("addr:street") or tags.get("addr:place") or ""
    return st if isinstance(st, str) else ""


def _postcode(b: Building) -> str:
    return str(b.tags.get("addr:postcode", "")).replace(" ", "").lower()


def _is_cjk(s: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in s)


def _written(s: str) -> str:
    return " ".join(s.lower().split()).replace(" ", "") if _is_cjk(s) else " ".join(s.lower().split())


@contextlib.contextmanager
def paused_gc():
    """Loading 50,000 footprints makes millions of small objects and no cycles: the cyclic
    collector would walk them again and again (it was 80% of the time), so it waits."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


OSM_SUFFIXES = (".pbf", ".osm", ".osm.bz2", ".osm.gz", ".o5m")


def load_footprints(path: str | Path) -> list[Building]:
    """An overpass-turbo GeoJSON of buildings, or an OSM extract (.osm.pbf, .osm) -> Buildings
    (areal features only, ids kept)."""
    if str(path).endswith(OSM_SUFFIXES):
        return load_osm(path)
    try:
        with paused_gc():
            fc = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DepotError(f"{path}: not readable as GeoJSON ({exc})",
                         "export the buildings from overpass-turbo as GeoJSON") from None
    if not isinstance(fc, dict) or not isinstance(fc.get("features"), list):
        raise DepotError(f"{path}: not a GeoJSON FeatureCollection",
                         "export the buildings from overpass-turbo as GeoJSON")
    with paused_gc():
        return buildings_from(fc["features"])


def load_osm(path: str | Path) -> list[Building]:
    """Buildings of an OSM extract, through pyosmium: closed ways and multipolygon relations
    tagged building=*, assembled into areas by libosmium, with the same ids overpass-turbo gives."""
    import osmium
    from osmium.filter import KeyFilter
    from osmium.geom import GeoJSONFactory
    from osmium.osm import Area, Node

    if not Path(path).is_file():
        raise DepotError(f"{path}: no such file", "check the path of the OSM extract")
    factory = GeoJSONFactory()
    out: list[Building] = []
    points: list[AddressPoint] = []
    try:
        with paused_gc():
            wanted = KeyFilter("building", "addr:housenumber")
            for obj in osmium.FileProcessor(str(path)).with_areas().with_filter(wanted):
                if isinstance(obj, Node) and "addr:housenumber" in obj.tags and obj.location.valid():
                    points.append((obj.location.lon, obj.location.lat, {t.k: t.v for t in obj.tags}))
                if not isinstance(obj, Area) or "building" not in obj.tags:
                    continue
                try:
                    geom = json.loads(factory.create_multipolygon(obj))
                except RuntimeError:  # libosmium could not assemble the ring: no fence from it
                    continue
                if len(geom["coordinates"]) == 1:
                    geom = {"type": "Polygon", "coordinates": geom["coordinates"][0]}
                kind = "way" if obj.from_way() else "relation"
                out.append(Building(id=f"{kind}/{obj.orig_id()}", geometry=geom,
                                    tags={t.k: t.v for t in obj.tags}))
    except RuntimeError as exc:  # libosmium's errors for a damaged or foreign file
        raise DepotError(f"{path}: not readable as an OSM extract ({exc})",
                         "give a .osm.pbf or .osm file, or overpass-turbo's GeoJSON") from None
    return out + address_points(out, points)


def buildings_from(features: list[Any]) -> list[Building]:
    """GeoJSON features -> Buildings: areal ones only, the OSM id kept, tags flat or under "tags"."""
    out: list[Building] = []
    points: list[AddressPoint] = []
    for k, feat in enumerate(features):
        if not isinstance(feat, dict):
            continue
        geom = feat.get("geometry") or {}
        props = feat.get("properties")
        props = props if isinstance(props, dict) else {}
        tags = props.get("tags")
        tags = tags if isinstance(tags, dict) else props  # overpass-turbo flat, or raw overpass "tags"
        kind = geom.get("type") if isinstance(geom, dict) else None
        if kind == "Point" and "addr:housenumber" in tags:
            try:
                lon, lat = (float(c) for c in geom["coordinates"][:2])
            except (TypeError, ValueError, KeyError):
                continue
            points.append((lon, lat, tags))
        if kind not in ("Polygon", "MultiPolygon"):
            continue  # other nodes and ways that are not areas carry no fence
        fid = feat.get("id") or props.get("@id") or props.get("id") or f"feature/{k}"
        out.append(Building(id=str(fid), geometry=geom, tags=tags))
    return out + address_points(out, points)


def address_points(buildings: list[Building], points: list[AddressPoint]) -> list[Building]:
    """Addresses mapped as a node inside the building (common in OSM, and the rule where one
    building has several entrances or addresses): each becomes an address of the one footprint
    that contains it, through shapely's STRtree. A node in no footprint, or in several, is left out."""
    if not points or not buildings:
        return []
    tree = shapely.STRtree([shape(b.geometry) for b in buildings])
    where = tree.query(shapely.points([(lon, lat) for lon, lat, _ in points]), predicate="within")
    hits: dict[int, list[int]] = defaultdict(list)
    for p, b in zip(where[0].tolist(), where[1].tolist(), strict=True):
        hits[p].append(b)
    out = []
    for p, bs in hits.items():
        if len(bs) == 1:
            b = buildings[bs[0]]
            out.append(Building(id=b.id, geometry=b.geometry, tags={**b.tags, **points[p][2]}))
    return out


class Index:
    def __init__(self, buildings: list[Building], locale: str = "en"):
        if locale not in address.LOCALES:
            raise DepotError(f"unknown locale {locale!r}", "use --locale en or --locale zh")
        self.locale = locale
        self.buildings = buildings
        self.by_street: dict[str, dict[str, list[Building]]] = defaultdict(lambda: defaultdict(list))
        self.by_core: dict[str, set[str]] = defaultdict(set)
        self.by_sound: dict[str, set[str]] = defaultdict(set)
        self.street_parts: dict[str, StreetParts] = {}
        roads: set[str] = set()  # zh: the roads without their lanes, to find them behind a prefix
        self.towns: dict[str, set[str]] = defaultdict(set)  # street -> the towns it is in
        for b in buildings:
            street, hn = street_of(b.tags), b.tags.get("addr:housenumber")
            if not isinstance(street, str) or not isinstance(hn, str | int) or not street.strip():
                continue
            hn = str(hn)
            lane = ""
            if locale == "zh":
                p = address_zh.zh_tags(b.tags)
                if not p.core:
                    continue
                full, core, typ, dirs, lane = p.street, p.core, p.street_type, (), p.lane
                b.numbers, b.block = p.numbers, p.building
                self.by_sound[p.sound].add(full)
                roads.add(full[: len(full) - len(lane) - 1] if lane else full)
                b.written = _written(street + hn + (str(b.tags.get("name", "")) if b.block else ""))
            else:
                full, core, typ, dirs = address.osm_street_en(street)
                b.numbers = address.house_numbers(hn)
                b.written = _written(f"{hn} {street}")
            b.street = full
            town = self.town(b)
            if town:
                self.towns[full].add(town)
            self.by_core[core].add(full)
            self.street_parts[full] = StreetParts(typ, dirs, lane, core)
            for n in b.numbers:
                self.by_street[full][n].append(b)
        self.cores = sorted(self.by_core)
        if locale == "zh":
            self.places = frozenset(roads) | frozenset(self.by_core)
        else:
            self.places = frozenset(address.fold(str(b.tags.get("addr:city", ""))) for b in buildings
                                    if b.tags.get("addr:city")) - {""}
        self.sounds = sorted(self.by_sound)
        self.cities = sorted({self._city(b) for b in buildings} - {""}, key=len, reverse=True)

    def parse(self, text: str) -> Parsed:
        return address.parse(text, self.locale, self.places)

    # --- streets ---------------------------------------------------------------------------------

    def _consistent(self, fulls: set[str], p: Parsed) -> list[str]:
        """Streets agreeing with every part the address does give (type, directions)."""
        out = []
        for full in sorted(fulls):
            typ, dirs, lane, _ = self.street_parts[full]
            if p.street_type and typ != p.street_type:
                continue
            if p.directions and set(dirs) != set(p.directions):
                continue
            if lane != p.lane:  # 长乐路120弄 is another street than 长乐路
                continue
            out.append(full)
        return out

    def streets(self, p: Parsed) -> list[tuple[str, str, float]]:
        """Candidate streets as (street, kind, score), best first."""
        if p.street in self.by_street:
            return [(p.street, "normalized", SCORE["normalized"])]
        if p.core in self.by_core:
            return [(s, "fuzzy", MISSING_TYPE_SCORE) for s in self._consistent(self.by_core[p.core], p)]
        found: dict[str, float] = {}
        if self.locale == "zh" and len(p.sound) >= 4:  # a homophone typed through pinyin
            for sound, dist, _ in process.extract(p.sound, self.sounds, scorer=OSA.distance,
                                                  score_cutoff=1, limit=8):
                for s in self._consistent(self.by_sound[sound], p):
                    core = self.street_parts[s].core
                    same = sum(a == b for a, b in zip(core, p.core, strict=False))
                    if len(core) == len(p.core) and 2 * same >= len(core):
                        found[s] = max(found.get(s, 0.0), FUZZY_MAX - 0.05 * (1 + dist))
        allowed = 0 if len(p.core) < 4 else 1 if len(p.core) < 9 else 2
        if self.locale == "zh":
            allowed = 1 if len(p.core) >= 3 else 0
        if allowed:
            for core, dist, _ in process.extract(p.core, self.cores, scorer=OSA.distance,
                                                 score_cutoff=allowed, limit=8):
                score = FUZZY_MAX - 0.1 * dist
                for s in self._consistent(self.by_core[core], p):
                    found[s] = max(found.get(s, 0.0), score)
        ordinal = address.misspelt_ordinals(p.core) if self.locale == "en" else p.core
        if ordinal != p.core:  # "Eifhth Street": one edit from Eighth, which the index calls 8th
            for s in self._consistent(self.by_core.get(ordinal, set()), p):
                found[s] = max(found.get(s, 0.0), FUZZY_MAX - 0.1)
        return sorted(((s, "fuzzy", sc) for s, sc in found.items()), key=lambda t: -t[2])

    # --- buildings -------------------------------------------------------------------------------

    def _at(self, street: str, p: Parsed) -> list[Building]:
        numbers = self.by_street.get(street, {})
        for n in p.numbers:  # the written form first, then the ends of a range
            if n in numbers:
                return numbers[n]
        return []

    def town(self, b: Building) -> str:
        """The town a building is in: its addr:city, else its postcode ('' when it has neither)."""
        return self._city(b) or _postcode(b)

    def _city(self, b: Building) -> str:
        city = address.fold(str(b.tags.get("addr:city", "")))
        return city.removesuffix("市") if self.locale == "zh" else city

    def _town_of(self, p: Parsed) -> str:
        """The footprints' town the row names: en, the town taken off its end; zh, a city its
        administrative prefix names (上海 in 上海市黄浦区). '' when it names none they know."""
        if self.locale == "en":
            return p.place if p.place in self.places else ""
        return next((c for c in self.cities if c in p.place), "") if p.place else ""

    def _narrow(self, cands: list[Building], p: Parsed) -> list[Building]:
        """Several buildings for one number: keep those the address's other parts point to."""
        if self.locale == "zh":
            if p.building:
                same = [b for b in cands if b.block == p.building]
                cands = same or [b for b in cands if not b.block]  # the compound is one footprint
            elif len({b.block for b in cands}) > 1:
                return cands
        if p.postcode:  # a postcode or town that contradicts the building's rules it out
            cands = [b for b in cands if _postcode(b)[: len(p.postcode)] in ("", p.postcode)]
        town = self._town_of(p)
        if town:
            cands = [b for b in cands if self._city(b) in (town, "")]
        if len(cands) > 1 and p.unit:
            same = [b for b in cands if str(b.tags.get("addr:unit", "")).lower() == p.unit]
            cands = same or cands
        return cands

    def match(self, raw: str, p: Parsed) -> Match:
        if not p.core:
            return Match("none", why="no street name found")
        if not p.numbers:
            lane = self.by_street.get(p.street, {}) if p.lane else {}
            houses = {b.id: b for bs in lane.values() for b in bs}
            if houses:  # a lane written without the house in it: its houses listed, none guessed
                return Match("ambiguous", candidates=list(houses.values()),
                             why=f"no house number in lane {p.street}: {len(houses)} houses")
            return Match("none", why="no house number found")
        streets = self.streets(p)
        if not streets:
            return Match("none", why=f"no street like '{p.street}' in the footprints")
        tier = [t for t in streets if t[2] == streets[0][2]]  # the best-fitting streets only
        hits = [(street, kind, score, cands) for street, kind, score in tier
                if (cands := self._narrow(self._at(street, p), p))]
        names = ", ".join(t[0] for t in tier[:4])
        if not hits:
            return Match("none", why=f"no building numbered {p.numbers[0]} on {names}")
        cands = {b.id: b for h in hits for b in h[3]}
        if len(tier) > 1:  # which street was meant is not known, even if only one has the number
            return Match("ambiguous", candidates=list(cands.values()),
                         why=f"{len(tier)} streets fit: {names}")
        street, kind, score, chosen = hits[0]
        towns = self.towns.get(street, set())
        by_town: dict[str, list[Building]] = {}
        if len(towns) > 1 and not p.postcode and not self._town_of(p):
            by_town = {t: [b for b in chosen if self.town(b) == t] for t in sorted(towns)}
            if sum(map(len, by_town.values())) < len(chosen):  # one without a town could be anywhere
                by_town = {}
        if len(cands) > 1:
            return Match("ambiguous", candidates=list(cands.values()),
                         why=f"{len(cands)} buildings fit: " + ", ".join(f"{b.label()} ({b.id})"
                                                                         for b in cands.values()),
                         towns=by_town, street=street, street_kind=kind, street_score=score)
        b = chosen[0]
        if len(towns) > 1 and not p.postcode and not self._town_of(p):
            # the same street in another town, where this number may be the unmapped building
            return Match("ambiguous", candidates=[b], why=f"{street} is in {len(towns)} towns ("
                         + ", ".join(sorted(towns)) + "), the address names none",
                         towns=by_town, street=street, street_kind=kind, street_score=score)
        if kind == "normalized" and not p.unit and _written(raw) == b.written:
            kind, score = "exact", SCORE["exact"]
        return Match(kind, score=round(score, 3), building=b)
