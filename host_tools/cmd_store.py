"""`depot store migrate`, `depot store prune`: the store's schema and its retention, on SQLite or
PostgreSQL alike (`--store PATH` or `--store postgresql://...`, or $DEPOT_STORE)."""

from __future__ import annotations

import argparse
import datetime as dt

from host_tools.errors import DepotError
from host_tools.store import SCHEMA_VERSION, StoreError, open_store, store_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="the store's schema (migrate) and retention (prune)")
    cmds = p.add_subparsers(dest="store_command", required=True)
    m = cmds.add_parser("migrate", help=f"bring the store's schema to version {SCHEMA_VERSION}")
    m.set_defaults(func=run_migrate)
    r = cmds.add_parser("prune", help="delete acknowledged records received before a date")
    r.add_argument("--before", required=True, metavar="YYYY-MM-DD", type=_date,
                   help="UTC day: records received before it go (PostgreSQL drops whole day partitions)")
    r.set_defaults(func=run_prune)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD") from None


def _open(args: argparse.Namespace):
    try:
        return open_store(getattr(args, "store", None))
    except StoreError as exc:
        raise DepotError(str(exc), f"check --store or DEPOT_STORE ({store_name(args.store)})") from None


def run_migrate(args: argparse.Namespace) -> int:
    st = _open(args)  # opening migrates; say from which version
    try:
        print(f"store {st.name}: schema version {st.schema_version()} (this depot knows {SCHEMA_VERSION})")
    finally:
        st.close()
    return 0


def run_prune(args: argparse.Namespace) -> int:
    st = _open(args)
    try:
        n = st.prune(args.before)
    finally:
        st.close()
    print(f"pruned {n} acknowledged records received before {args.before.isoformat()} from {st.name}")
    return 0
