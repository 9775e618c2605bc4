"""Scanned from one spot: a carrier scanning from a parked van (docs/fence-learning.md).

A van parked at the kerb is as close to a house as its mailbox, so distance alone cannot tell
them apart. What can: from a van the carrier scans the items of several houses from one spot in a
few minutes, where a carrier on foot scans each house at its own door. Per device and day, a
stop's visit (its fixes' mean position and time) is *from one spot* when the visits of at least
VAN_OTHERS stops of other buildings lie within VAN_SPOT_M of it and VAN_WINDOW_S of it in time
(flats of one building share their door, so they do not count). A stop visited so on most of its
days is flagged for a person, not learned. Pure functions over the learner's fixes.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

VAN_SPOT_M = 5.0  # visits' mean positions this close: one spot
VAN_WINDOW_S = 180  # ...and this close in time: one stop of the van
VAN_OTHERS = 2  # other buildings' stops scanned from the spot (three houses from one spot)


@dataclass
class Visit:
    stop_id: str
    building: str  # the stop's building id ("" for none: counted as its own)
    device_id: str
    day: str
    x: float
    y: float
    t: float


def visits(fixes: Iterable[tuple[str, str, str, str, float, float, int]]) -> list[Visit]:
    """(stop_id, building, device_id, day, x, y, t) per fix -> one Visit per stop, device and day."""
    groups: dict[tuple[str, str, str], list[tuple[float, float, int]]] = defaultdict(list)
    building: dict[str, str] = {}
    for sid, bid, dev, day, x, y, t in fixes:
        groups[(sid, dev, day)].append((x, y, t))
        building[sid] = bid
    out = []
    for (sid, dev, day), pts in groups.items():
        n = len(pts)
        out.append(Visit(sid, building[sid], dev, day, sum(p[0] for p in pts) / n,
                         sum(p[1] for p in pts) / n, sum(p[2] for p in pts) / n))
    return out


def from_one_spot(all_visits: list[Visit]) -> dict[str, set[str]]:
    """stop_id -> the days its visit was made from one spot with VAN_OTHERS other buildings' stops."""
    by_run: dict[tuple[str, str], list[Visit]] = defaultdict(list)
    for v in all_visits:
        by_run[(v.device_id, v.day)].append(v)
    out: dict[str, set[str]] = defaultdict(set)
    for run in by_run.values():
        run.sort(key=lambda v: v.t)
        times = [v.t for v in run]
        for v in run:
            lo = bisect.bisect_left(times, v.t - VAN_WINDOW_S)
            near = run[lo:bisect.bisect_right(times, v.t + VAN_WINDOW_S)]
            others = {w.building or w.stop_id for w in near
                      if w.stop_id != v.stop_id and (w.building != v.building or not v.building)
                      and math.hypot(w.x - v.x, w.y - v.y) <= VAN_SPOT_M}
            if len(others) >= VAN_OTHERS:
                out[v.stop_id].add(v.day)
    return out
