"""`python -m sim days`: consecutive days with fences learned every night (sim/days.py)."""

from pathlib import Path

from sim import days


def register(sub) -> None:
    p = sub.add_parser("days", help="consecutive days with fences learned every night (match rate by day)")
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--stops", type=int, default=220)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", help="where the store, routes and review pages go")
    p.add_argument("--facade-ratio", type=float, default=days.FACADE_RATIO,
                   help="GNSS error across / along the wall at a door by a wall (1: the same every way)")
    p.set_defaults(func=_main)


def _main(args) -> int:
    res = days.run(args.days, args.stops, args.seed, Path(args.workdir) if args.workdir else None,
                   scales=days.AREA_SCALES, facade_ratio=args.facade_ratio)
    days.report(res)
    return 0
