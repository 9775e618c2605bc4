"""`depot`: the depot staff's command line. Each command group lives in its own module, which
exposes `register(subparsers)`; the parser's `func` attribute runs the chosen command."""

import argparse
import importlib
import sys

from host_tools import __version__
from host_tools.errors import DepotError

# Modules that add subcommands, in the order `depot --help` lists them.
COMMAND_MODULES = [
    "host_tools.cmd_route",
    "host_tools.cmd_serve",
    "host_tools.cmd_sync",
    "host_tools.cmd_keys",
    "host_tools.cmd_flash", "host_tools.cmd_report",
    "host_tools.cmd_fences",
    "host_tools.cmd_store",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depot", description="Depot tools for postal handhelds.")
    parser.add_argument("--store", help="store file (default: $DEPOT_HOME/depot.sqlite3)")
    parser.add_argument("--version", action="version", version=f"depot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DepotError as e:
        sys.stdout.flush()
        print(f"depot: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
