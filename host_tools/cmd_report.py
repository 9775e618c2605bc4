"""`depot report --route ID [--format text|csv|geojson|html] [--out PATH] [--route-file PKG|GEOJSON]`"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_tools import private, report, routes
from host_tools.errors import DepotError


def register(sub) -> None:
    p = sub.add_parser("report", help="per-stop report, match rates and reconciliation of a route")
    p.add_argument("--route", required=True, help="route id")
    p.add_argument("--format", choices=report.FORMATS, default="text")
    p.add_argument("--out", help="write here instead of standard output")
    p.add_argument("--route-file", help="the route's package or source GeoJSON, when the store does "
                   "not know the route yet (it is then kept beside the store for later reports)")
    p.set_defaults(func=run)


def find_route(store, store_path: Path, route_id: str) -> routes.Route:
    """The registry beside the store first, then any package the store assigned under that id."""
    try:
        return routes.find(store_path, route_id)
    except routes.RouteError as first:
        for dev in store.devices():
            assigned = store.assigned_route(dev.device_id)
            if assigned is not None and assigned.route_id == route_id:
                path = private.write(routes.folder(store_path) / "assigned.pkg.tmp", assigned.package)
                try:
                    return routes.from_package(path, store.key(dev.device_id))
                finally:
                    path.unlink(missing_ok=True)
        raise first


def run(args: argparse.Namespace) -> int:
    from host_tools import store as store_mod

    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise DepotError(f"cannot write {out}: no folder {out.parent}", "create it, or choose another --out")
    if args.route_file and not Path(args.route_file).is_file():
        raise DepotError(f"no route file {args.route_file}", "give the route's .pkg or its source .geojson")
    st = store_mod.open_existing(args.store)
    try:
        if args.route_file:
            routes.register(st.path, args.route_file, args.route)
        route = find_route(st, st.path, args.route)
        text = report.render(report.build(route, st), args.format)
    except routes.RouteError as exc:
        fix = "give its package with --route-file" if args.route_file is None else "check the route file"
        raise DepotError(str(exc), fix) from None
    finally:
        st.close()
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DepotError(f"cannot write {out}: {exc.strerror}", "choose another --out") from None
    print(f"report written to {out}")
    return 0
