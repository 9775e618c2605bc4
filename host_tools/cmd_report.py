"""`depot report --route ID [--format text|csv|geojson|html] [--out PATH] [--route-file PKG|GEOJSON]`"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from host_tools import private, report, routes


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

    path = store_mod.default_path(args.store)
    if not path.exists():
        print(f"depot report: no store at {path} (set --store or DEPOT_HOME)", file=sys.stderr)
        return 2
    st = store_mod.open_store(path)
    try:
        if args.route_file:
            routes.register(path, args.route_file, args.route)
        route = find_route(st, path, args.route)
        text = report.render(report.build(route, st), args.format)
    except routes.RouteError as exc:
        print(f"depot report: {exc}", file=sys.stderr)
        return 2
    finally:
        st.close()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"report written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0
