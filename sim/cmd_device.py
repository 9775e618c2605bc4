"""`python -m sim device --flash IMAGE [--board sim] [--heap 256K]`: boot one virtual handheld.

Prints one JSON line (console, dock, control, pid, workdir, ...) and runs until SIGINT/SIGTERM or
the control command {"cmd": "stop"}."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from host_tools.errors import DepotError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("device", help="boot a virtual handheld on a flash image", description=__doc__)
    p.add_argument("--flash", required=True, help="flash image file (created blank if missing)")
    p.add_argument("--board", default="sim", help="board definition boards/board_<name>.py")
    p.add_argument("--heap", default="256K", help="MicroPython heap (-X heapsize)")
    p.add_argument("--workdir", default=None, help="directory for sockets and peripheral files")
    p.add_argument("--seed", type=int, default=None, help="seed for misreads and dock faults")
    p.add_argument("--console-baud", type=int, default=0,
                   help="pace the console like a UART at this baud (default: unpaced, as USB CDC)")
    p.set_defaults(func=_run)


def check(image: str, board: str, heap: str) -> None:
    """What would otherwise start a VM that dies at once (and an mpremote that hangs on it)."""
    from host_tools import boards

    folder = Path(image).resolve().parent
    if not folder.is_dir():
        raise DepotError(f"cannot use flash image {image}: no folder {folder}",
                         "create it, or give --flash a path in an existing folder")
    if Path(image).is_dir():
        raise DepotError(f"flash image {image} is a folder", "give --flash a file name")
    boards.check(board)
    if not re.fullmatch(r"[1-9][0-9]*[KkMm]?", heap):
        raise DepotError(f"heap size {heap!r} is not a size",
                         "give bytes, or a number with K or M, e.g. 256K")


def _run(args: argparse.Namespace) -> int:
    from sim.device import run_device

    check(args.flash, args.board, args.heap)
    return run_device(args.flash, args.board, args.heap, args.workdir, args.seed, args.console_baud)
