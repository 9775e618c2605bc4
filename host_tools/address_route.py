"""A street in two towns and an address that names neither: the town from evidence, or not at all.

A depot's list is one route, or a few, walked in order (`seq`), and a route does not go kilometres
to another town and back between two stops. So when the rows the text matched just before and just
after such a row both lie in one of the street's towns, by that town's candidate and kilometres
from the others', the row is in that town (rule 8 of docs/address-matching.md). Its prior geocode,
of unknown quality, can only contradict: one that does not point clearly at that town leaves the
row ambiguous. A geocode alone decides nothing: a geocoder given an address without its town puts
it, just as precisely, on the twin street it picked. One side alone decides nothing either: where
a route ends, the next row may begin another route anywhere.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import TYPE_CHECKING

from host_tools.address_match import Building, Index, Match

if TYPE_CHECKING:
    from host_tools.address_build import Outcome

NEIGHBOURS = 1  # matched rows looked at on each side: the nearest brackets it; a second may be past a turn
NEAR_M = 500.0  # the candidate lies this near the nearest neighbour on each side: the route passes by
FAR_M = 2000.0  # every other town's candidate (its building, else its street) lies this far from the rows
GEOCODE_RATIO = 3.0  # a prior geocode agrees with the route when every other town is this many times farther
EVIDENCE_COST = 0.05  # a row placed by evidence scores less than its street: the text did not decide
M_PER_DEG = 111195.0

XY = tuple[float, float]


def metres(lon: float, lat: float) -> XY:
    """A point in metres east and north (equirectangular: good to a fraction of a percent over a town)."""
    return lon * M_PER_DEG * math.cos(math.radians(lat)), lat * M_PER_DEG


class Places:
    """Where buildings and streets are, in metres, computed once and only for the rows that ask."""

    def __init__(self, index: Index):
        self.index = index
        self._sites: dict[str, XY] = {}
        self._streets: dict[tuple[str, str], list[XY]] = {}

    def site(self, b: Building) -> XY:
        """A building's place: the mean of its outer ring's corners."""
        if b.id not in self._sites:
            g = b.geometry
            outer = g["coordinates"][0] if g["type"] == "Polygon" else g["coordinates"][0][0]
            ring = outer[:-1] or outer
            lon = sum(float(c[0]) for c in ring) / len(ring)
            lat = sum(float(c[1]) for c in ring) / len(ring)
            self._sites[b.id] = metres(lon, lat)
        return self._sites[b.id]

    def street(self, street: str, town: str) -> list[XY]:
        """The places of a street's buildings in one town."""
        if (street, town) not in self._streets:
            numbers = self.index.by_street.get(street, {})
            self._streets[street, town] = [self.site(b) for bs in numbers.values() for b in bs
                                           if self.index.town(b) == town]
        return self._streets[street, town]


def settle_towns(outcomes: list[Outcome], index: Index) -> int:
    """Second pass over the matched list: each row ambiguous only for its street's towns gets the
    town its walk-order neighbours and prior geocode decide, or stays ambiguous with why. Only rows
    the text matched serve as neighbours, so no decision rests on another. Returns the rows decided."""
    order = sorted(range(len(outcomes)), key=lambda i: (outcomes[i].row.seq, i))
    placed = [k for k, i in enumerate(order) if outcomes[i].match.building is not None]
    places = Places(index)
    decided = 0
    for k, i in enumerate(order):
        o = outcomes[i]
        if not o.match.towns:
            continue
        j = bisect_left(placed, k)
        before = [outcomes[order[x]] for x in reversed(placed[max(0, j - NEIGHBOURS):j])]  # nearest first
        after = [outcomes[order[x]] for x in placed[j:j + NEIGHBOURS]]
        o.match = _decide(o, before, after, places)
        decided += bool(o.match.evidence)
    return decided


def _ids(side: list[Outcome]) -> str:
    return ", ".join(o.row.stop_id for o in side) or "none"


def _decide(o: Outcome, before: list[Outcome], after: list[Outcome], places: Places) -> Match:
    m = o.match
    index = places.index

    there = {t: [places.site(b) for b in bs] or places.street(m.street, t) for t, bs in m.towns.items()}

    def to_town(xy: XY, town: str) -> float:  # to the town's candidate, else to its street
        return min((math.dist(xy, q) for q in there[town]), default=math.inf)

    def side_town(side: list[Outcome]) -> str | None:
        """The town one side of the row says, '' when it says none (an end of the list, or a route
        that resumes elsewhere: its next stop is far from every candidate), None when it disagrees."""
        sites = [places.site(n.match.building) for n in side if n.match.building is not None]
        if not sites or min(to_town(sites[0], t) for t in m.towns) > NEAR_M:
            return ""
        towns = {index.town(n.match.building) for n in side if n.match.building is not None}
        town = towns.pop() if len(towns) == 1 else None
        if town not in m.towns or to_town(sites[0], town) > NEAR_M:
            return None
        if any(to_town(xy, t) < FAR_M for xy in sites for t in m.towns if t != town):
            return None  # another town's street is near: the route could go there
        return town

    def undecided(why: str) -> Match:
        return Match("ambiguous", candidates=m.candidates, why=f"{m.why}; {why}")

    said = [side_town(before), side_town(after)]
    around = f"({_ids(before)} before, {_ids(after)} after)"
    if None in said or len(set(said) - {""}) > 1:
        return undecided(f"the rows around it in walk order {around} are not all in one of its towns, "
                         f"kilometres from {m.street} in the others")
    if "" in said:
        return undecided(f"no matched row on both sides of it near {m.street} in walk order {around}: "
                         "the route may begin or end there")
    town = str(said[0])
    route = f"the rows around it in walk order are in {town} {around}"
    if o.row.lonlat:  # a prior geocode may contradict the route, never decide alone
        g = metres(*o.row.lonlat)
        dist = {t: to_town(g, t) for t in m.towns}
        other = min((t for t in m.towns if t != town), key=dist.__getitem__)
        far = f"{dist[town]:,.0f} m from {m.street} in {town}, {dist[other]:,.0f} m from {other}'s"
        if dist[other] < GEOCODE_RATIO * dist[town]:
            return undecided(f"{route}, but its prior geocode does not point there ({far})")
        route += f"; its prior geocode is {far}"
    evidence = f"town {town}: {route}"
    here = m.towns[town]
    if len(here) == 1:
        return Match(m.street_kind, score=round(m.street_score - EVIDENCE_COST, 3), building=here[0],
                     why=evidence, evidence=evidence)
    if not here:
        return Match("none", evidence=evidence,
                     why=f"no building numbered {o.parsed.numbers[0]} on {m.street} in {town} ({evidence})")
    return Match("ambiguous", candidates=here, evidence=evidence,
                 why=f"{len(here)} buildings fit in {town}: {', '.join(b.id for b in here)} ({evidence})")
