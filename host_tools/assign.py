"""`depot route assign ROUTE.pkg --device ID`: make a compiled route the next one a device loads.

A package is compiled once and signed per device: the depot re-signs it with the device's own key
(a device refuses a package signed for another), keeps a copy for the reports, and stores it as
the device's next route, which `depot sync` pushes over the dock.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from firmware import routepkg
from host_tools import ids, private, routepack, routes
from host_tools.errors import DepotError
from host_tools.store import AssignedRoute, Storage, UnknownDevice, open_existing


def assign(store: Storage, package: str | Path, device_id: str) -> AssignedRoute:
    key = store.key(device_id)
    if key is None:
        raise UnknownDevice(device_id)
    data = Path(package).read_bytes()
    signed = routepack.resign(data, key)
    route = routes.load(package)
    ids.check("route id", route.route_id)  # a package from elsewhere: its id becomes a file name
    private.folder(routes.folder(store.path))
    private.write(routes.folder(store.path) / f"{route.route_id}.pkg", signed)
    return store.assign_route(device_id, signed, route.route_id)


def register_route(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser("assign", help="re-sign a compiled route for a device; pushed at its next sync")
    p.add_argument("package", metavar="ROUTE.pkg")
    p.add_argument("--device", required=True, action="append", help="device id (repeatable)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not Path(args.package).is_file():
        raise DepotError(f"no route package {args.package}", "compile it first: depot route compile")
    store = open_existing(args.store)
    for dev in args.device:  # every device checked before any is assigned
        if store.key(dev) is None:
            raise DepotError(f"device {dev} is not enrolled", f"run `depot enrol --device-id {dev}` first")
    for dev in args.device:
        try:
            a = assign(store, args.package, dev)
        except (OSError, ValueError, routepkg.PackageError) as exc:
            raise DepotError(f"{args.package}: {exc}", "give a package made by depot route compile") from None
        print(f"{dev}: route {a.route_id} assigned ({len(a.package)} bytes, sha256 {a.sha256.hex()[:16]}); "
              "pushed at the next `depot sync`")
    return 0
