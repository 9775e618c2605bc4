"""`python -m sim nmea-dump LOG`: the firmware's NMEA parser, on the real `micropython`, over a log.

Prints one JSON object per line for each fix the parser accepts: `utc` (ISO 8601, null until an RMC
has brought the date), `lat`, `lon` (decimal degrees), `quality`, `sats`, `hdop`, `sentence` (the
type of the sentence that produced the fix). The log is streamed through the parser's byte path
(`feed`) in UART-sized chunks, as the device reads its receiver.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from sim import mpy

# Runs inside the VM. Numbers are formatted from the parser's ints so the output is exact and the
# same on any VM (no float repr involved).
_VM_CODE = """
import sys
from firmware import nmea, nmea_text

def _deg(v):
    s = "-" if v < 0 else ""
    v = -v if v < 0 else v
    return "%s%d.%06d" % (s, v // 1000000, v % 1000000)

def _fix(p):
    utc = nmea_text.iso(p)
    sys.stdout.write('{"utc": %s, "lat": %s, "lon": %s, "quality": %d, "sats": %d, "hdop": %d.%02d, '
                     '"sentence": "%s"}\\n' % ('"%s"' % utc if utc else "null", _deg(p.lat_e6),
                     _deg(p.lon_e6), p.quality, p.sats, p.hdop // 100, p.hdop % 100,
                     nmea_text.NAMES[p.sentence]))

p = nmea.NMEA(_fix)
buf = bytearray(256)
with open(__LOG__, "rb") as f:
    while True:
        n = f.readinto(buf)
        if not n:
            break
        p.feed(buf, n)
p.feed(b"\\n", 1)  # a last line without its terminator
sys.stderr.write("good=%d bad_checksum=%d malformed=%d unsupported=%d fixes=%d\\n" % (
    p.good, p.bad_checksum, p.malformed, p.unsupported, p.fixes))
"""


def vm_command(log: str | Path, heap: str = mpy.DEFAULT_HEAP) -> list[str]:
    code = _VM_CODE.replace("__LOG__", repr(str(Path(log).resolve())))
    return [mpy.micropython_exe(), "-X", f"heapsize={heap}", "-c", code]


def fixes(log: str | Path, heap: str = mpy.DEFAULT_HEAP) -> list[dict]:
    """The fixes the firmware's parser accepts from `log`, as parsed JSON objects."""
    proc = subprocess.run(vm_command(log, heap), capture_output=True, env=mpy.mpy_env(), timeout=600)
    if proc.returncode != 0 or b"Traceback" in proc.stderr:
        raise mpy.MicroPythonError(proc.stderr.decode(errors="replace"))
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line]
