"""`python -m sim …`: the virtual handheld and the developer tools that run firmware on the VM.
Each command lives in its own module exposing `register(subparsers)`; `func` runs it."""

import argparse
import importlib
import sys

from host_tools.errors import DepotError

COMMAND_MODULES = [
    "sim.devicecmd",
    "sim.screenshot",
    "sim.fencecheck",
    "sim.nmeadump",
    "sim.runcmd",
    "sim.days",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DepotError as e:  # a user's mistake: one line, as `depot` prints it
        sys.stdout.flush()
        print(f"python -m sim {args.command}: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
