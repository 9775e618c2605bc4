"""`python -m sim …`: the virtual handheld and the developer tools that run firmware on the VM.
Each command lives in its own module exposing `register(subparsers)`; `func` runs it."""

import argparse
import importlib
import sys

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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
