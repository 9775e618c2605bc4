"""`python -m sim nmea-dump`: the firmware's NMEA parser over a log (sim/nmea_dump.py)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from sim import mpy, nmea_dump


def _run(args: argparse.Namespace) -> int:
    log = Path(args.log)
    if not log.is_file():
        print(f"nmea-dump: no such file: {log}", file=sys.stderr)
        return 2
    # stream: a day's log is long and the caller may be piping into head
    proc = subprocess.Popen(nmea_dump.vm_command(log, args.heap), stdout=subprocess.PIPE, env=mpy.mpy_env())
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stdout.write(line.decode())
    except BrokenPipeError:
        proc.kill()
        return 0
    return proc.wait()


def register(subparsers) -> None:
    p = subparsers.add_parser("nmea-dump", help="run the firmware's NMEA parser on micropython over a log",
                              description=nmea_dump.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", metavar="LOG", help="NMEA 0183 log file (one sentence a line)")
    p.add_argument("--heap", default=mpy.DEFAULT_HEAP, help="micropython -X heapsize (default %(default)s)")
    p.set_defaults(func=_run)
