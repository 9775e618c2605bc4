"""NMEA sentences parsed per second by firmware/nmea.py on the real micropython (-X heapsize=256K),
with the same parser on CPython beside it as the reference (the ratio is what to quote); and the
share of RMC and GGA fixes in the receivers' corpus (tests/nmea_corpus.py) that the parser, run on
the VM, reads as pynmea2 does (position to the micro-degree, validity, time, date)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from firmware import nmea
from sim import gnss, mpy
from tests import nmea_corpus

_ROUTE = [(51.500, -0.120), (51.501, -0.120), (51.501, -0.1185), (51.4995, -0.1185)]

_VM = """
import time
from firmware import nmea
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
    note = f"micropython 256K heap; {good} parsed, {unsupported} unsupported"
    report("nmea_sentences_per_s", vm_rate, "1/s", note)
    report("nmea_sentences_per_s_cpython", cp_rate, "1/s", "same parser on CPython (reference)")
    report("nmea_vm_vs_cpython", vm_rate / cp_rate, "ratio", "a 1 Hz receiver sends ~6-10 sentences/s")
    _agreement_on_the_vm(report)


_VM_CORPUS = """
from firmware import nmea
p = nmea.NMEA()
for line in open(__LOG__, "rb"):
    if line == b"\\n":
        p = nmea.NMEA()
        continue
    c = p.parse(line)
    print(c, p.valid, p.lat_e6, p.lon_e6, p.quality, p.sats, p.days, p.ms)
"""


def _agreement_on_the_vm(report) -> None:
    streams = nmea_corpus.corpus()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "corpus.nmea"
        log.write_bytes(b"".join(("\n".join(lines) + "\n\n").encode() for lines in streams.values()))
        rows = iter(mpy.run(_VM_CORPUS.replace("__LOG__", repr(str(log))), heap="256K").splitlines())
    agree = total = 0
    for lines in streams.values():
        for line in lines:
            c, valid, lat, lon, quality, sats, days, ms = (int(x) for x in next(rows).split())
            if line[3:6] not in ("RMC", "GGA"):
                continue
            state = SimpleNamespace(valid=valid, lat_e6=lat, lon_e6=lon, quality=quality, sats=sats,
                                    days=days, ms=ms)
            total += 1
            agree += nmea_corpus.fix_agrees(line, state, c)
    note = f"{agree} of {total} fixes, {len(streams)} receiver styles, pynmea2 the oracle"
    report("nmea_pynmea2_agreement", agree / total, "ratio", note)
