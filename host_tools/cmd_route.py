"""`depot route ...`: the route command group.

`route compile` lives here. Other modules add their `route` subcommands by appending their dotted
name to ROUTE_COMMAND_MODULES; each exposes `register_route(route_subparsers)`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib

from host_tools import boards, route_compile
from host_tools.errors import DepotError

ROUTE_COMMAND_MODULES: list[str] = [
    "host_tools.assign",
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
