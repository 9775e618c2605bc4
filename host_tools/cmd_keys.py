"""`depot revoke` and `depot rotate-key`: end a device's key, or replace it.

Both hold at once: the ingest server and the dock read the key from the store for every request.
A rotated key reaches the device at its next `depot flash` or authenticated dock sync (the dock
proves the key the device still holds, then sends the new one sealed under that session); until
then its cellular uploads are refused and wait on the device. The route assigned to it is
re-signed with the new key, so the same sync pushes it again.
"""

from __future__ import annotations

import argparse

from host_tools import ids, private, route_package_writer, routes
from host_tools.errors import DepotError
from host_tools.store import StoreError, UnknownDevice, open_existing


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser("revoke", help="refuse a device from now on (lost or stolen handheld)")
    r.add_argument("--device-id", required=True)
    r.set_defaults(func=run_revoke)
    k = subparsers.add_parser("rotate-key",
                              help="give a device a new key (delivered at its next flash or sync)")
    k.add_argument("--device-id", required=True)
    k.set_defaults(func=run_rotate)


def run_revoke(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        store.revoke(args.device_id)
    except UnknownDevice:
        raise DepotError(f"device {args.device_id} is not enrolled in {store.name}",
                         "check the device id, --store or DEPOT_HOME") from None
    finally:
        store.close()
    print(f"revoked {args.device_id}: its uploads and dock syncs are refused from now on")
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    try:
        key = store.rotate_key(args.device_id)
        assigned = store.assigned_route(args.device_id)
        if assigned is not None:  # signed for the old key: the device would refuse it
            signed = route_package_writer.resign(assigned.package, key)
            store.assign_route(args.device_id, signed, assigned.route_id)
            if assigned.route_id and not ids.problem("route id", assigned.route_id):
                private.folder(routes.folder(store.path))
                private.write(routes.folder(store.path) / f"{assigned.route_id}.pkg", signed)
    except UnknownDevice:
        raise DepotError(f"device {args.device_id} is not enrolled in {store.name}",
                         "check the device id, --store or DEPOT_HOME") from None
    except StoreError as exc:
        raise DepotError(str(exc), "a revoked device cannot get a new key; enrol it again") from None
    finally:
        store.close()
    print(f"new key for {args.device_id}, in force now; the handheld gets it at its next depot flash or "
          "dock sync (its cellular uploads wait until then)")
    return 0
