"""`depot route ...`: the route command group.

`route compile` and `route assign` live here (their logic in route_compile.py and route_assign.py).
Other modules add their `route` subcommands by appending their dotted name to ROUTE_COMMAND_MODULES;
each exposes `register_route(route_subparsers)`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
from pathlib import Path

from firmware import route_package
from host_tools import boards, route_assign, route_compile
from host_tools.errors import DepotError
from host_tools.store import open_existing

ROUTE_COMMAND_MODULES: list[str] = [
    "host_tools.address_build",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    route = subparsers.add_parser("route", help="compile and manage route packages")
    rsub = route.add_subparsers(dest="route_command", required=True)
    c = rsub.add_parser("compile", help="compile a GeoJSON route into a signed route package")
    c.add_argument("geojson", metavar="ROUTE.geojson")
    c.add_argument("--out", required=True, metavar="ROUTE.pkg")
    c.add_argument("--key", metavar="KEYFILE",
                   help="device key (32 raw bytes or 64 hex); default: all-zero key, re-sign per device")
    c.add_argument("--board", default="sim", help="board whose fence_vertex_budget applies")
    c.add_argument("--route-id", help="overrides the collection's route_id")
    c.add_argument("--date", help="service date YYYY-MM-DD (overrides the collection's)")
    c.set_defaults(func=run_compile)
    _register_assign(rsub)
    for name in ROUTE_COMMAND_MODULES:
        importlib.import_module(name).register_route(rsub)


def run_compile(args: argparse.Namespace) -> int:
    boards.check(args.board)
    try:
        key = route_compile.read_key(args.key) if args.key else None
        date = route_compile.parse_date(args.date, "--date") if args.date is not None else None
        res = route_compile.compile_file(args.geojson, board=args.board, route_id=args.route_id,
                                         service_date=date, key=key)
    except route_compile.CompileError as exc:
        raise DepotError(exc.what, f"{exc.fix}. Nothing written") from None
    except OSError as exc:  # an unreadable key file
        raise DepotError(f"cannot read {exc.filename}: {exc.strerror}",
                         "Check the options. Nothing written") from None
    except (KeyError, ValueError) as exc:
        what = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise DepotError(str(what), "Check the options. Nothing written") from None
    for line in res.repairs:
        print(f"repair: {line}")
    for line in res.warnings:
        print(f"warning: {line}")
    route_compile.write_package(res.package, args.out)
    digest = hashlib.sha256(res.package).hexdigest()[:16]
    signed = "signed with " + args.key if key else "signed with the all-zero key (re-sign per device)"
    print(f"{args.out}: route {res.route_id}, service date {res.service_date}, {res.stops} stops, "
          f"{len(res.package)} bytes, hash {digest}, {signed}; {len(res.repairs)} repair(s), "
          f"{len(res.warnings)} warning(s)")
    return 0


def _register_assign(rsub: argparse._SubParsersAction) -> None:
    p = rsub.add_parser("assign", help="re-sign a compiled route for a device; pushed at its next sync")
    p.add_argument("package", metavar="ROUTE.pkg")
    p.add_argument("--device", required=True, action="append", help="device id (repeatable)")
    p.set_defaults(func=run_assign)


def run_assign(args: argparse.Namespace) -> int:
    if not Path(args.package).is_file():
        raise DepotError(f"no route package {args.package}", "compile it first: depot route compile")
    store = open_existing(args.store)
    for dev in args.device:  # every device checked before any is assigned
        if store.key(dev) is None:
            raise DepotError(f"device {dev} is not enrolled", f"run `depot enrol --device-id {dev}` first")
    for dev in args.device:
        try:
            a = route_assign.assign(store, args.package, dev)
        except (OSError, ValueError, route_package.PackageError) as exc:
            raise DepotError(f"{args.package}: {exc}", "give a package made by depot route compile") from None
        print(f"{dev}: route {a.route_id} assigned ({len(a.package)} bytes, sha256 {a.sha256.hex()[:16]}); "
              "pushed at the next `depot sync`")
    return 0
