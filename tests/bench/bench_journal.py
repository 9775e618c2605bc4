"""The delivery journal on the real micropython (-X heapsize=256K), real littlefs, on the emulated
flash backed by an image file with the sim board's geometry (4096-byte blocks, 512 blocks).

Reference measured in the same run: the same records appended to one growing file with a flush after
each (what a naive journal does). Segment sizes 256..2048 are swept to justify journal.SEG_MAX.

Wear model: littlefs levels wear dynamically (copy-on-write data blocks come from a rotating
allocator over all free blocks; a metadata pair moves after block_cycles erases, 100 in
MicroPython's port). So the projection spreads the measured erases per record over the blocks that
are free for the journal: years = 10% * 100,000 * free_blocks / (erases_per_record * 300 * 365).
A 10-day run (300 deliveries a day, docked and acknowledged daily) measures how uneven wear really is
(most-worn block over mean) and gives the pessimistic figure from the most-worn block's own rate.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sim import mpy

ROOT = Path(__file__).resolve().parents[2]
VM_PATHS = (ROOT / "sim" / "vm",)
PER_DAY = 300
ENDURANCE = 100_000

_VM = """
import gc, os, sys, time, vfs
from flashdev import FlashDevice
from firmware import record, journal

IMG = sys.argv[1]
N = int(sys.argv[2])
SEGS = [int(x) for x in sys.argv[3].split(",")]
DAYS = int(sys.argv[4])
BS = 4096
BC = 512


def make(i):
    return record.Record(device_id="DEV0001", route_id="R2026-11-27-12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i % 1000), outcome=1, verdict=1, match=1,
                         device_time=1795000000 + 30 * i, gnss_time=1795000000 + 30 * i,
                         lat_e6=52370000 + i, lon_e6=4890000 + i, accuracy_dm=42, fix_age_s=1,
                         distance_dm=85)


def fresh(**kw):
    try:
        os.remove(IMG)
    except OSError:
        pass
    dev = FlashDevice(BS, BC, IMG)
    vfs.VfsLfs2.mkfs(dev, **kw)
    vfs.mount(vfs.VfsLfs2(dev, **kw), "/f")
    dev.programmed_bytes = 0
    dev.erased_blocks = 0
    return dev, os.statvfs("/f")[3]


def done(dev, tag, nrec, nbytes, times, free0):
    worst = 0
    for x in dev.wear:
        worst = max(worst, x)
    times.sort()
    print(tag, nrec, nbytes, dev.programmed_bytes, dev.erased_blocks, worst, free0,
          times[len(times) // 2], times[(len(times) * 95) // 100])
    vfs.umount("/f")
    dev.close()


buf = bytearray(record.MAX_LEN)
nbytes = 0
for i in range(N):
    nbytes += make(i).encode_into(buf)

dev, free0 = fresh()
times = []
f = open("/f/one.bin", "ab")
for i in range(N):
    n = make(i).encode_into(buf)
    t = time.ticks_us()
    f.write(memoryview(buf)[:n])
    f.flush()
    times.append(time.ticks_diff(time.ticks_us(), t))
f.close()
done(dev, "onefile", N, nbytes, times, free0)

def heap_of_a_day():
    # The journal's own RAM: before it exists, and with a day's records pending and a segment open.
    dev, free0 = fresh()
    gc.collect()
    h0 = gc.mem_alloc()
    jr = journal.Journal("/f/journal")
    i = 0
    while i < N:
        jr.append(make(i))
        i += 1
    gc.collect()
    print("heap", gc.mem_alloc() - h0, jr.pending())
    jr.close()
    vfs.umount("/f")
    vfs.mount(vfs.VfsLfs2(dev), "/f")
    t = time.ticks_us()
    jr = journal.Journal("/f/journal")  # boot: recovery reads every frame held
    print("boot", time.ticks_diff(time.ticks_us(), t), jr.pending())
    vfs.umount("/f")
    dev.close()


heap_of_a_day()

for seg in SEGS + [0]:
    # seg 0: the default segment size on rp2's mount (progsize=256: segments become inline files)
    dev, free0 = fresh(progsize=256) if seg == 0 else fresh()
    j = journal.Journal("/f/journal", seg_max=seg or journal.SEG_MAX)
    times = []
    for i in range(N):
        r = make(i)
        t = time.ticks_us()
        j.append(r)
        times.append(time.ticks_diff(time.ticks_us(), t))
    j.acknowledge(j.last_seq)  # the day's dock: all acknowledged, segments reclaimed
    done(dev, "seg%d" % seg if seg else "rp2", N, nbytes, times, free0)

dev, free0 = fresh()
j = journal.Journal("/f/journal")
times = [0]
total = 0
for d in range(DAYS):
    for i in range(N):
        r = make(d * N + i)
        j.append(r)
        total += r.encode_into(buf)
    j.acknowledge(j.last_seq)
done(dev, "days", N * DAYS, total, times, free0)

"""


def run(report) -> None:
    from firmware import journal  # firmware/journal.py on CPython: only for SEG_MAX

    segs = sorted({256, 512, 1024, 2048, journal.SEG_MAX})
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench_journal_vm.py"
        script.write_text(_VM)
        out = mpy.run(script=script, args=(str(Path(tmp) / "flash.img"), str(PER_DAY),
                                            ",".join(map(str, segs)), "10"),
                      heap="256K", extra_paths=VM_PATHS, timeout=600)
    rows = {}
    for line in out.splitlines():
        tag, *nums = line.split()
        rows[tag] = [int(x) for x in nums]
    boot_us, held = rows.pop("boot")
    report("journal_boot_ms", boot_us / 1000, "ms", "Journal() recovery with %d records pending" % held)
    heap, held = rows.pop("heap")
    report("journal_heap_bytes", heap, "B",
           "gc.mem_alloc growth: Journal + open segment with %d records pending (a day undocked)" % held)

    def per_record(tag):
        nrec, nbytes, prog, erased, worst, free0, p50, p95 = rows[tag]
        return prog / nrec, erased / nrec, prog / nbytes, p50 / 1000, p95 / 1000, worst, free0

    one = per_record("onefile")
    cur = per_record("seg%d" % journal.SEG_MAX)
    report("scan_to_durable_ms_p50", cur[3], "ms",
           "journal.append incl. flush, %d records, file-backed emulated flash; one growing file %.2f ms"
           % (PER_DAY, one[3]))
    report("scan_to_durable_ms_p95", cur[4], "ms", "one growing file %.2f ms" % one[4])
    report("flash_bytes_per_record", cur[0], "B",
           "one growing file %.0f B (%.1fx more)" % (one[0], one[0] / cur[0]))
    report("flash_erases_per_record", cur[1], "blocks", "one growing file %.2f" % one[1])
    report("journal_write_amplification", cur[2], "x",
           "programmed / record bytes; one growing file %.1fx" % one[2])
    report("journal_vs_onefile_bytes_ratio", cur[0] / one[0], "",
           "flash bytes per record, journal / one file")
    rp2 = per_record("rp2")
    report("flash_bytes_per_record_rp2_mount", rp2[0], "B",
           "VfsLfs2(progsize=256) as rp2 mounts it: %.2f erases/record, p50 %.2f ms, p95 %.2f ms"
           % (rp2[1], rp2[3], rp2[4]))
    for seg in segs:
        s = per_record("seg%d" % seg)
        report("journal_bytes_per_record_seg%d" % seg, s[0], "B",
               "%.2f erases/record, write amplification %.1fx" % (s[1], s[2]))

    nrec, nbytes, prog, erased, worst, free0, _, _ = rows["days"]
    erases_per_rec = erased / nrec
    mean_wear = erased / free0
    days = nrec / PER_DAY
    years = 0.1 * ENDURANCE * free0 / (erases_per_rec * PER_DAY * 365)
    report("flash_years_to_10pct_wear", years, "years",
           "mean wear over %d free blocks at %.2f erases/record, %d deliveries/day (10-day run)"
           % (free0, erases_per_rec, PER_DAY))
    report("flash_wear_max_over_mean", worst / mean_wear, "x",
           "most-worn block %d erases vs mean %.1f after %d days" % (worst, mean_wear, days))
    report("flash_years_to_10pct_wear_hottest", 0.1 * ENDURANCE / (worst / days) / 365, "years",
           "pessimistic: the most-worn block keeps its 10-day erase rate (no further levelling)")
