"""`python -m sim …`: the virtual handheld and the developer tools that run firmware on the VM.
Run it with the project's Python: `make setup`, then `. .venv/bin/activate` (or .venv/bin/python).

Each command `X` lives in sim/cmd_X.py exposing `register(subparsers)`; `func` runs it."""

import argparse
import importlib
import sys
from pathlib import Path

COMMAND_MODULES = [
    "sim.cmd_device",
    "sim.cmd_screenshot",
    "sim.cmd_fence_check",
    "sim.cmd_nmea_dump",
    "sim.cmd_run",
    "sim.cmd_town",
    "sim.cmd_days",
]


DESCRIPTION = """The virtual handheld and the developer tools that run firmware on the MicroPython VM.

Run it with the project's Python, which has the simulator's packages: `make setup` once, then
`. .venv/bin/activate` in each shell (or call .venv/bin/python)."""


def outside_venv(exc: ModuleNotFoundError) -> str:
    venv = Path(__file__).resolve().parent.parent / ".venv" / "bin"
    return (f"this Python ({sys.executable}) lacks the module {exc.name!r} the simulator needs. Run "
            f"`make setup` once, then use {venv}/python (or `. {venv}/activate` to put the tools on PATH).")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(sub)
    except ModuleNotFoundError as exc:  # a Python without the venv's packages
        print(f"python -m sim: error: {outside_venv(exc)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    from host_tools.errors import DepotError

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
