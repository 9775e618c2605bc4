"""Make a compiled route the next one a device loads (`depot route assign`, in cmd_route.py).

A package is compiled once and signed per device: the depot re-signs it with the device's own key
(a device refuses a package signed for another), keeps a copy for the reports, and stores it as
the device's next route, which `depot sync` pushes over the dock.
"""

from __future__ import annotations

from pathlib import Path

from host_tools import ids, private, route_package_writer, routes
from host_tools.store import AssignedRoute, Storage, UnknownDevice


def assign(store: Storage, package: str | Path, device_id: str) -> AssignedRoute:
    key = store.key(device_id)
    if key is None:
        raise UnknownDevice(device_id)
    data = Path(package).read_bytes()
    signed = route_package_writer.resign(data, key)
    route = routes.load(package)
    ids.check("route id", route.route_id)  # a package from elsewhere: its id becomes a file name
    private.folder(routes.folder(store.path))
    private.write(routes.folder(store.path) / f"{route.route_id}.pkg", signed)
    return store.assign_route(device_id, signed, route.route_id)

