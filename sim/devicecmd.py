"""`python -m sim device --flash IMAGE [--board sim] [--heap 256K]`: boot one virtual handheld.

Prints one JSON line (console, dock, control, pid, workdir, ...) and runs until SIGINT/SIGTERM or
the control command {"cmd": "stop"}."""

from __future__ import annotations

import argparse


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


def _run(args: argparse.Namespace) -> int:
    from sim.device import run_device

    return run_device(args.flash, args.board, args.heap, args.workdir, args.seed, args.console_baud)
