"""`depot fences learn`: propose learned fences from the store's confirmed deliveries; review; apply.

    depot fences learn --route ROUTE_ID [--since DATE] --out ROUTE.geojson [--html review.html]
                       [--apply] [--from ROUTE.geojson] [--footprints BUILDINGS.geojson]

The route learned from is --from, else the version the store kept at the last --apply. Without
--apply nothing is written but the review page: --apply writes the next route GeoJSON (which
`depot route compile` turns into the next package) and keeps it, with each stop's change, as the
route's next version in the store. Rules: docs/fence-learning.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from host_tools import learn, learn_propose
from host_tools.errors import DepotError


def register(sub: argparse._SubParsersAction) -> None:
    fences = sub.add_parser("fences", help="learn fences from confirmed deliveries")
    fsub = fences.add_subparsers(dest="fences_command", required=True)
    p = fsub.add_parser("learn", help="propose keep/extend/move/create per stop; --apply writes them")
    p.add_argument("--route", required=True, metavar="ROUTE_ID")
    p.add_argument("--since", metavar="YYYY-MM-DD", help="learn only from deliveries on or after this day")
    p.add_argument("--out", required=True, metavar="ROUTE.geojson", help="the next route (with --apply)")
    p.add_argument("--html", metavar="review.html", help="review page: old and new fences, evidence")
    p.add_argument("--apply", action="store_true", help="write --out and keep it as the next version")
    p.add_argument("--from", dest="source", metavar="ROUTE.geojson",
                   help="the route GeoJSON in use (default: the store's last applied version)")
    p.add_argument("--footprints", metavar="BUILDINGS.geojson",
                   help="building footprints, to move a fence to the building its deliveries cluster at")
    p.set_defaults(func=run)


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DepotError(f"cannot read {what} {path}: {exc}", f"Give a GeoJSON file as {what}") from None


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise DepotError(f"--since {value!r} is not a date", "Write it as YYYY-MM-DD") from None


def _write(path: Path, text: str) -> None:
    """Atomically: a compile started at the same time never reads half a route."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def detail(p: learn_propose.Proposal) -> str:
    """What the store keeps of a proposal in the route's fence history (JSON)."""
    ev = p.evidence
    return json.dumps({"why": p.why, "evidence": ev.summary(), "deliveries": ev.deliveries,
                       "fixes": ev.used, "days": ev.days, "spread_m": round(ev.spread_m, 1),
                       "distance_m": round(ev.distance_m, 1) if ev.point is not None else None,
                       "reasons": ev.reasons, "old_building": p.old_building,
                       "new_building": p.new_building, "old_area_m2": round(p.old_area, 1),
                       "new_area_m2": round(p.new_area, 1)}, sort_keys=True)


def run(args: argparse.Namespace) -> int:
    from host_tools import learn_review
    from host_tools import store as store_mod

    path = store_mod.default_path(args.store)
    if not path.exists():
        raise DepotError(f"no store at {path}", "Set --store or DEPOT_HOME")
    since = _since(args.since)
    st = store_mod.open_store(path)
    try:
        kept = st.route_version(args.route)
        if args.source:
            fc = _read_json(args.source, "--from")
        elif kept is not None:
            fc = json.loads(kept[2])
        else:
            raise DepotError(f"the store has no learned version of route {args.route}",
                             "Pass --from ROUTE.geojson, the GeoJSON the route was compiled from")
        rid = fc.get("route_id") if isinstance(fc, dict) else None
        if rid and rid != args.route:
            raise DepotError(f"{args.source or 'the stored route'} is route {rid}, not {args.route}",
                             "Pass the route's own GeoJSON")
        footprints = _read_json(args.footprints, "--footprints") if args.footprints else None
        try:
            learned = learn.learn(fc, st.records(route_id=args.route), footprints, since)
        except learn.LearnError as exc:
            raise DepotError(str(exc), "Check the --from route and the --footprints file") from None
        for p in learned.proposals:
            if p.action != "keep" and not p.routine:
                print(f"  {p.stop_id:<12} {p.action:<6} {p.why} [{p.evidence.summary()}]")
        print(learned.summary())
        print(learned.walls())
        print(learned.review())
        if args.html:
            Path(args.html).write_text(learn_review.render(learned, fc), encoding="utf-8")
            print(f"review written to {args.html}")
        if not args.apply:
            print(f"nothing applied: --apply writes {args.out} and keeps it as the route's next version")
            return 0
        days = [f.day for ev in (p.evidence for p in learned.proposals) for f in ev.fixes]
        night = max(days) if days else datetime.date.today().isoformat()
        if kept is None:  # the route as it was before any learning is version 1
            st.add_route_version(args.route, json.dumps(fc), "initial")
        version = (kept[0] if kept else 1) + 1
        nxt = learn.apply(fc, learned, version, night)
        text = json.dumps(nxt, separators=(",", ":")) + "\n"
        _write(Path(args.out), text)
        changes = [(p.stop_id, p.action, detail(p)) for p in learned.proposals if p.action != "keep"]
        version = st.add_route_version(args.route, text, night, changes)
        n = sum(1 for p in learned.proposals if p.changes)
        print(f"{args.out}: version {version} of route {args.route}, {n} fence(s) changed; "
              f"next: depot route compile {args.out} --out {args.route}.pkg")
    finally:
        st.close()
    return 0
