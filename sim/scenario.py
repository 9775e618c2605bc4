"""Scenario files (docs/scenario.md), read and checked before anything boots.

A mistake in a scenario is one line naming the file, the device and the key, with what would be
right: a misspelt key, an index past the stops walked, a route file that is not there, bad TOML.
A scenario that passes green must have tested what it says.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from host_tools.errors import DepotError

ROOT = Path(__file__).resolve().parent.parent
_TOP_KEYS = ("name", "seed", "board", "tls", "device")


class ScenarioError(DepotError):
    """A scenario file that cannot be played as written."""


@dataclass
class Carrier:
    """One device and what its carrier does: stop indices (0-based, route order) where things
    happen."""

    device_id: str
    route: str
    stops: int | None = None
    override_at: list[int] = field(default_factory=list)  # stands 35 m off, confirms with a reason
    # stop -> override reason picked (position in the route's override list); default the second
    override_reason: dict[int, int] = field(default_factory=dict)
    attempt_at: dict[int, int] = field(default_factory=dict)  # stop -> non-delivery reason code
    wrong_stop_at: list[int] = field(default_factory=list)  # scans the next stop's parcel first
    invalid_at: list[int] = field(default_factory=list)  # a misread barcode first
    coverage_gap: list[int] = field(default_factory=list)  # [from, to): modem out of coverage
    power_cut_at: int | None = None  # power fails during this scan's journal write


@dataclass
class Scenario:
    name: str
    seed: int
    board: str
    carriers: list[Carrier]
    tls: bool = False  # uploads over the modem's TLS to `depot serve --tls-cert` (a throwaway CA)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        return load(path)


def load(path: str | Path) -> Scenario:
    """The scenario in `path`, checked; ScenarioError (one line) for the first mistake."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {p}: {exc.strerror}",
                            "check the path (examples/scenarios/ holds the examples)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}", "see docs/scenario.md for the format") from None
    return check(data, p)


def check(data: dict[str, Any], path: Path) -> Scenario:
    where = str(path)
    _known(data, _TOP_KEYS, where)
    name = data.get("name", path.stem)
    seed = data.get("seed", 1)
    board = data.get("board", "sim")
    _type(name, str, where, "name")
    _type(seed, int, where, "seed")
    _type(board, str, where, "board")
    tls = data.get("tls", False)
    _type(tls, bool, where, "tls")
    from host_tools import boards

    try:
        boards.path(board)
    except KeyError:
        raise ScenarioError(f"{where}: board {board!r} does not exist",
                            f"choose one of {', '.join(boards.names())}") from None
    devices = data.get("device")
    if not isinstance(devices, list) or not devices:
        raise ScenarioError(f"{where}: no [[device]] table", "add one per handheld (docs/scenario.md)")
    carriers = [_carrier(d, f"{where}: device {n}") for n, d in enumerate(devices, 1)]
    ids = [c.device_id for c in carriers]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ScenarioError(f"{where}: device_id {dup[0]} is used twice", "give each device its own id")
    return Scenario(name, seed, board, carriers, tls)


def _carrier(d: Any, where: str) -> Carrier:
    if not isinstance(d, dict):
        raise ScenarioError(f"{where}: not a table", "write it as [[device]] with key = value lines")
    if isinstance(d.get("device_id"), str):
        where = f"{where} ({d['device_id']})"
    _known(d, tuple(f.name for f in fields(Carrier)), where)
    for key in ("device_id", "route"):
        if key not in d:
            raise ScenarioError(f"{where}: {key} is missing", f"every [[device]] needs {key}")
        _type(d[key], str, where, key)
    features = _route_features(d["route"], where)
    stops = d.get("stops", len(features))
    _type(stops, int, where, "stops")
    if not 1 <= stops <= len(features):
        raise ScenarioError(f"{where}: stops = {stops}, but {d['route']} has {len(features)}",
                            f"give 1 to {len(features)}, or leave stops out to walk them all")

    def index(value: Any, key: str, last: int = stops - 1) -> int:
        _type(value, int, where, key)
        if not 0 <= value <= last:
            raise ScenarioError(f"{where}: {key} {value} is outside the stops walked",
                                f"stop indices count from 0: give 0 to {last} (stops = {stops})")
        return value

    def positions(key: str, count: int) -> dict[int, int]:
        """A table of stop index = position (from 1) in one of the device's reason lists."""
        table = d.get(key, {})
        _type(table, dict, where, key)
        out = {}
        for k, v in table.items():
            try:
                stop = int(k)
            except ValueError:
                raise ScenarioError(f"{where}: {key} key {k!r} is not a stop index",
                                    f"write {key} = {{ 12 = 1 }}: stop index = reason position") from None
            index(stop, key)
            _type(v, int, where, f"{key} {k}")
            if not 1 <= v <= count:
                raise ScenarioError(f"{where}: {key} {k} = {v}: no such reason",
                                    f"give the reason's position in the device's list, 1 to {count}")
            out[stop] = v
        return out

    lists = {}
    for key in ("override_at", "wrong_stop_at", "invalid_at"):
        value = d.get(key, [])
        _type(value, list, where, key)
        last = stops - 2 if key == "wrong_stop_at" else stops - 1  # it scans the next stop's parcel
        lists[key] = [index(v, key, last) for v in value]
    attempt_at = positions("attempt_at", _reasons(overrides=False))
    override_reason = positions("override_reason", _reasons(overrides=True))
    for stop in override_reason:
        if stop not in lists["override_at"]:
            raise ScenarioError(f"{where}: override_reason for stop {stop}, which is not in override_at",
                                f"add {stop} to override_at, or drop its reason")
    gap = d.get("coverage_gap", [])
    _type(gap, list, where, "coverage_gap")
    if gap:
        if len(gap) != 2:
            raise ScenarioError(f"{where}: coverage_gap needs two stop indices",
                                "write coverage_gap = [FROM, UNTIL]")
        index(gap[0], "coverage_gap", stops - 1)
        index(gap[1], "coverage_gap", stops)
        if gap[0] >= gap[1]:
            raise ScenarioError(f"{where}: coverage_gap {gap} ends before it begins",
                                "write coverage_gap = [FROM, UNTIL] with FROM < UNTIL")
    cut = d.get("power_cut_at")
    if cut is not None:
        index(cut, "power_cut_at")
    return Carrier(d["device_id"], d["route"], d.get("stops"), lists["override_at"], override_reason,
                   attempt_at, lists["wrong_stop_at"], lists["invalid_at"], list(gap), cut)


def _route_features(route: str, where: str) -> list[Any]:
    path = ROOT / route
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{where}: route {route}: {exc.strerror}",
                            "give a GeoJSON route relative to the repository, e.g. "
                            "examples/routes/north.geojson") from None
    except ValueError as exc:
        raise ScenarioError(f"{where}: route {route} is not JSON ({exc})", "give a GeoJSON route") from None
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list) or not features:
        raise ScenarioError(f"{where}: route {route} has no features", "give a GeoJSON FeatureCollection")
    return features


def _reasons(overrides: bool) -> int:
    """How many reasons the device lists for an override, or in attempt mode (attempts and
    actions)."""
    from firmware import route_package
    from host_tools import route_package_writer

    return sum(1 for _, kind, _ in route_package_writer.DEFAULT_REASONS
               if (kind == route_package.K_OVERRIDE) == overrides)


def _known(d: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in d:
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1)
            fix = f"did you mean {near[0]}?" if near else f"the keys are {', '.join(allowed)}"
            raise ScenarioError(f"{where}: unknown key {key!r}", fix)


def _type(value: Any, kind: type, where: str, key: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ScenarioError(f"{where}: {key} = {value!r} is not {_NAMES[kind]}",
                            "see docs/scenario.md for each key's form")


_NAMES = {int: "a whole number", str: "a string", list: "a list", dict: "a table", bool: "true or false"}
