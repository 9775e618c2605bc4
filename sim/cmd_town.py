"""`python -m sim town`: a synthetic town's route GeoJSON, any size (sim/town.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sim import town

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "routes"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("town", help="generate a synthetic town's route GeoJSON (any size)",
                              description=town.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    p.set_defaults(func=run)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="ROUTE.geojson", help="where to write the route")
    p.add_argument("--stops", type=int, default=220, help="number of stops (default 220)")
    p.add_argument("--seed", type=int, default=7, help="the town's seed (default 7, the examples')")
    p.add_argument("--area", choices=("north", "south"), default="north", help="which side of town")
    p.add_argument("--route-id", help="route id (default AREA-SEED, e.g. NORTH-7)")
    p.add_argument("--irregular", action="store_true", help="surveyed-looking footprints, 10-32 vertices")
    p.add_argument("--examples", action="store_true",
                   help="rewrite examples/routes/north.geojson and south.geojson (seed 7, 220 stops)")


def run(args: argparse.Namespace) -> int:
    from host_tools.errors import DepotError

    if args.examples:
        for area in ("north", "south"):
            print(town.write_geojson(town.town(seed=7, stops=220, area=area), EXAMPLES / f"{area}.geojson"))
        return 0
    if not args.out:
        raise DepotError("no --out given", "name the GeoJSON file to write, e.g. --out big.geojson")
    if args.stops < 1:
        raise DepotError(f"--stops {args.stops}", "give 1 or more stops")
    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        raise DepotError(f"cannot write {out}: no folder {out.resolve().parent}", "create it first")
    fc = town.town(seed=args.seed, stops=args.stops, area=args.area, route_id=args.route_id,
              irregular=args.irregular)
    town.write_geojson(fc, out)
    print(f"{out}: route {fc['route_id']}, {len(fc['features'])} stops, "
          f"{sum(len(f['properties']['items']) for f in fc['features'])} items")
    return 0
