"""`python -m sim run SCENARIO` and `python -m sim demo`: a carrier's day on virtual handhelds."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "scenarios" / "demo.toml"


def register(sub) -> None:
    p = sub.add_parser("run", help="play a scenario (docs/scenario.md) on virtual handhelds")
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--workdir", help="where images, store, reports and screenshots go")
    p.set_defaults(func=_run)
    p = sub.add_parser("demo", help="the demo day: two carriers, 220 stops each")
    p.add_argument("--workdir")
    p.set_defaults(func=_demo)


def _demo(args) -> int:
    """The demo day, then three days of fences that learn (docs/fence-learning.md)."""
    code = _run(args, DEMO)
    if code == 0:
        from sim import days

        print("\n== fences that learn: three days on a town whose data disagree with the ground ==")
        days.report(days.run(days=3, workdir=Path(args.workdir) / "days" if args.workdir else None))
    return code


def _run(args, scenario=None) -> int:
    from sim import day

    return day.main(str(scenario or args.scenario), args.workdir)
