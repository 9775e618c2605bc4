"""NMEA sentences parsed per second by firmware/nmea.py on the real micropython (-X heapsize=256K),
with the same parser on CPython beside it as the reference (the ratio is what to quote)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nmea

from sim import gnss, mpy

_ROUTE = [(51.500, -0.120), (51.501, -0.120), (51.501, -0.1185), (51.4995, -0.1185)]

_VM = """
import nmea, time
lines = [l for l in open(__LOG__, "rb").read().split(b"\\r\\n") if l]
p = nmea.NMEA()
n = 0
t0 = time.ticks_us()
while n < 20000:
    i = 0
    while i < len(lines):
        p.parse(lines[i])
        i += 1
    n += len(lines)
dt = time.ticks_diff(time.ticks_us(), t0)
print(n, dt, p.good, p.unsupported)
"""


def run(report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "walk.nmea"
        cond = gnss.Conditions(canyon=[(30, 60)], indoor=[(80, 90)])
        gnss.write_log(log, gnss.Walk(_ROUTE, seed=1, conditions=cond, duration_s=120))
        out = mpy.run(_VM.replace("__LOG__", repr(str(log))), heap="256K")
        n, us, good, unsupported = (int(x) for x in out.split())
        vm_rate = n / (us / 1e6)
        lines = [line.encode() for line in gnss.replay_lines(log)]
    p = nmea.NMEA()
    count = 0
    t0 = time.perf_counter()
    while count < 20000:
        for line in lines:
            p.parse(line)
        count += len(lines)
    cp_rate = count / (time.perf_counter() - t0)
    note = f"micropython 256K heap; {good} parsed, {unsupported} GSV skipped"
    report("nmea_sentences_per_s", vm_rate, "1/s", note)
    report("nmea_sentences_per_s_cpython", cp_rate, "1/s", "same parser on CPython (reference)")
    report("nmea_vm_vs_cpython", vm_rate / cp_rate, "ratio", "a 1 Hz receiver sends ~6-10 sentences/s")
