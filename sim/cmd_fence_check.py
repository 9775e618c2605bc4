"""`python -m sim fence-check`: the firmware's geofence engine on points (sim/fence_check.py)."""

from __future__ import annotations

import argparse

from sim import fence_check, mpy


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fence-check", help="run the firmware geofence engine on points (CSV)")
    p.add_argument("package", metavar="ROUTE.pkg")
    p.add_argument("points", metavar="POINTS.csv")
    p.add_argument("--key", metavar="KEYFILE", help="device key (default: zero key)")
    p.add_argument("--heap", default=mpy.DEFAULT_HEAP)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from host_tools.errors import DepotError
    from host_tools.route_compile import CompileError, read_key

    try:
        key = read_key(args.key) if args.key else bytes(32)
        lines = fence_check.fence_check(args.package, args.points, key, heap=args.heap)
    except (CompileError, fence_check.FenceCheckError, OSError) as exc:
        raise DepotError(str(exc), "give a route package compiled by `depot route compile` and its key") \
            from None
    print(fence_check.HEADER)
    for line in lines:
        print(line)
    return 0
