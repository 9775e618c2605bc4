"""`depot route assign ROUTE.pkg --device ID`: make a compiled route the next one a device loads.

A package is compiled once and signed per device: the depot re-signs it with the device's own key
(a device refuses a package signed for another), keeps a copy for the reports, and stores it as
the device's next route, which `depot sync` pushes over the dock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import routepack
import routepkg

from host_tools import private, routes
from host_tools.store import AssignedRoute, Store, UnknownDevice, open_store


def assign(store: Store, package: str | Path, device_id: str) -> AssignedRoute:
    key = store.key(device_id)
    if key is None:
        raise UnknownDevice(device_id)
    data = Path(package).read_bytes()
    signed = routepack.resign(data, key)
    route = routes.load(package)
    private.folder(routes.folder(store.path))
    private.write(routes.folder(store.path) / f"{route.route_id}.pkg", signed)
    return store.assign_route(device_id, signed, route.route_id)


def register_route(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser("assign", help="re-sign a compiled route for a device; pushed at its next sync")
    p.add_argument("package", metavar="ROUTE.pkg")
    p.add_argument("--device", required=True, action="append", help="device id (repeatable)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    rc = 0
    for dev in args.device:
        try:
            a = assign(store, args.package, dev)
        except UnknownDevice:
            print(f"error: device {dev!r} is not enrolled (depot enrol --device-id {dev})", file=sys.stderr)
            rc = 2
            continue
        except (OSError, ValueError, routepkg.PackageError) as exc:
            print(f"error: {args.package}: {exc}", file=sys.stderr)
            return 2
        print(f"{dev}: route {a.route_id} assigned ({len(a.package)} bytes, sha256 {a.sha256.hex()[:16]}); "
              "pushed at the next `depot sync`")
    return rc
