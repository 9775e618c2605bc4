"""`python -m sim screenshot`: a running virtual handheld's screen as a PNG (sim/screenshot.py)."""

from __future__ import annotations

import argparse
import os

from sim import screenshot


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("screenshot", help="save a virtual handheld's screen as PNG",
                              description=screenshot.__doc__)
    p.add_argument("--control", required=True, help="the device's control socket")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--scale", type=int, default=2)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from sim.client import Control

    reply = Control(args.control).call("screenshot", path=os.path.abspath(args.out), scale=args.scale)
    print(f"{reply['path']} {reply['width']}x{reply['height']}")
    return 0
