"""The delivery journal on the real MicroPython VM with real littlefs on the emulated flash chip.

Spec: issue 3 "The journal", docs/journal.md. Every test mounts `vfs.VfsLfs2(FlashDevice(...))` in RAM.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VM = (ROOT / "sim" / "vm",)

PRELUDE = """
import os, vfs
from flashdev import FlashDevice, PowerLost
from firmware import record, journal
from firmware.journal import Journal, JournalFull

def make(i):
    return record.Record(device_id="DEV0001", route_id="R12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i), lat_e6=52000000 + i, lon_e6=4000000)

def boot(dev, **kw):
    try:
        vfs.umount("/f")
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(dev), "/f")
    return Journal("/f/j", **kw)

dev = FlashDevice(4096, BLOCKS)
vfs.VfsLfs2.mkfs(dev)
buf = bytearray(journal.FRAME_MAX)
"""


def run(mpy, body: str, blocks: int = 40) -> str:
    return mpy(PRELUDE.replace("BLOCKS", str(blocks)) + body, heap="1M", extra_paths=VM)


@pytest.mark.parametrize("vm", ["micropython", "cpython"])
def test_flash_device_cuts_counts_and_persists(mpy, tmp_path, vm):
    img = tmp_path / "flash.img"
    code = f"""
from flashdev import FlashDevice
d = FlashDevice(512, 8, {str(img)!r})
b = bytearray(4)
d.readblocks(3, b, 100)
print("blank", bytes(b) == b"\\xff" * 4)
d.ioctl(6, 3)
d.writeblocks(3, b"abcd", 100)
d.ioctl(3, 0)
d.cut_after_writes(2)
d.ioctl(6, 5)                      # write 1: persists
d.writeblocks(5, b"wxyz", 0)       # write 2: persists
d.writeblocks(5, b"LOST", 8)       # write 3: power is gone
print("cut", d.powered, d.writes, d.programmed_bytes, d.erased_blocks, d.wear[3], d.wear[5])
d.save_wear({str(img) + '.wear'!r})
d.close()
d = FlashDevice(512, 8, {str(img)!r})
d.load_wear({str(img) + '.wear'!r})
d.readblocks(3, b, 100); print("kept", bytes(b))
d.readblocks(5, b, 0); print("kept", bytes(b))
d.readblocks(5, b, 8); print("dropped", bytes(b) == b"\\xff" * 4)
print("wear", d.wear[3], d.wear[5], d.ioctl(4, 0), d.ioctl(5, 0))
r = FlashDevice(512, 8)            # RAM, out of order: the first block since the sync reverts
r.writeblocks(1, b"old1", 0)
r.ioctl(3, 0)
r.cut_after_writes(2, ooo=True)
r.writeblocks(1, b"new1", 0)
r.writeblocks(2, b"new2", 0)
r.writeblocks(2, b"gone", 4)
print("ooo", bytes(r.image[512:516]), bytes(r.image[1024:1032]), r.reverts)
"""
    if vm == "micropython":
        out = mpy(code, extra_paths=VM)
    else:  # the simulator's host side and tools may load the same module
        env = dict(os.environ, PYTHONPATH=str(VM[0]))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True).stdout
    assert "blank True" in out
    assert "cut False 4 8 2 1 1" in out
    assert "kept b'abcd'" in out and "kept b'wxyz'" in out and "dropped True" in out
    assert "wear 1 1 8 512" in out
    assert "ooo b'old1' b'new2\\xff\\xff\\xff\\xff' 1" in out
    assert img.stat().st_size == 512 * 8


def test_append_read_acknowledge_reclaim(mpy):
    out = run(mpy, """
j = boot(dev)
seqs = [j.append(make(i)) for i in range(30)]
print("seqs", seqs[0], seqs[-1], j.next_seq, j.pending(), (j.pending(), j.last_seq, j.space()))
print("from25", [s for s, _ in j.records(25, buf)])
s, mv = next(j.records(7, buf))
print("rec7", s, record.decode(mv).item_id)
nseg = len([n for n in os.listdir("/f/j") if n.endswith(".seg")])
j.acknowledge(25)
left = [n for n in os.listdir("/f/j") if n.endswith(".seg")]
print("ack", j.watermark, j.pending(), nseg > len(left), min(s for s, _ in j.records(0, buf)) <= 26)
j = boot(dev)
print("boot", j.watermark, j.pending(), j.last_seq, [s for s, _ in j.records(26, buf)])
j.acknowledge(30)
print("all", j.pending(), [n for n in os.listdir("/f/j") if n.endswith(".seg")], list(j.records(0, buf)))
print("again", j.append(make(31)) > 30)
""")
    assert "seqs 1 30 31 30 (30, 30, 'ok')" in out
    assert "from25 [25, 26, 27, 28, 29, 30]" in out
    assert "rec7 7 RR473124806GB" in out
    assert "ack 25 5 True True" in out
    assert "boot 25 5 30 [26, 27, 28, 29, 30]" in out
    assert "all 0 [] []" in out
    assert "again True" in out


def test_segment_table_grows_past_its_preallocation_and_survives_a_reboot(mpy):
    # One record per segment on a 24-block chip: the table starts at 24 entries and must double.
    out = run(mpy, """
j = boot(dev, seg_max=1)
start = len(j._segs)
for i in range(60):
    j.append(make(i))
print("grew", start, len(j._segs) > start, j._nseg)
j.close()
j = boot(dev, seg_max=1)
print("boot", j._nseg, [s for s, _ in j.records(55, buf)], j.pending())
j.acknowledge(50)
print("ack", j._nseg, [s for s, _ in j.records(0, buf)][:3], j.pending())
""", blocks=24)
    assert "grew 24 True 60" in out
    assert "boot 60 [55, 56, 57, 58, 59, 60] 60" in out
    assert "ack 10 [51, 52, 53] 10" in out


def test_segment_table_holds_u16_offsets_and_widens_when_the_held_seqs_span_more(mpy):
    # A table entry is the segment's first seq less the oldest held one, in 2 bytes: one entry per
    # block of the chip. Seqs held more than 65,535 apart (a lease skipped past on each of many
    # power cuts) widen it to 4 bytes; an acknowledgement that reclaims the old ones rebases it.
    out = run(mpy, """
j = boot(dev, seg_max=1)
print("table", len(bytes(j._segs)), len(j._segs))
for i in range(3):
    j.append(make(i))
j.next_seq = 70001
for i in range(2):
    j.append(make(i))
print("wide", len(bytes(j._segs)) // len(j._segs), [s for s, _ in j.records(0, buf)])
j.close()
j = boot(dev, seg_max=1)
print("boot", len(bytes(j._segs)) // len(j._segs), [s for s, _ in j.records(2, buf)], j.pending())
j.acknowledge(70000)  # seqs 4-70000 were never written: segment 3 ends at 70000
j.append(make(9))  # after the boot: the seq past the lease
print("ack", [s for s, _ in j.records(0, buf)], j.pending())
j.close()
j = boot(dev, seg_max=1)
print("reboot", len(bytes(j._segs)) // len(j._segs), [s for s, _ in j.records(0, buf)])
""")
    assert "table 80 40" in out
    assert "wide 4 [1, 2, 3, 70001, 70002]" in out
    assert "boot 4 [2, 3, 70001, 70002] 5" in out
    assert "ack [70001, 70002, 70129] 3" in out
    assert "reboot 2 [70001, 70002, 70129]" in out


def test_acknowledge_never_runs_ahead_of_records_written(mpy):
    out = run(mpy, """
j = boot(dev)
for i in range(3):
    j.append(make(i))
j.acknowledge(1000)
s = j.append(make(3))
print("wm", j.watermark, "pending", j.pending(), "seq", s)
""")
    assert "wm 3 pending 1 seq 4" in out


def test_recovery_drops_torn_tail_keeps_everything_before(mpy):
    out = run(mpy, """
j = boot(dev)
for i in range(5):
    j.append(make(i))
last = sorted(n for n in os.listdir("/f/j") if n.endswith(".seg"))[-1]
p = "/f/j/" + last
with open(p, "rb") as f:
    data = bytearray(f.read())
data[-3] ^= 0x40                      # a byte inside the last frame's CRC
with open(p, "wb") as f:
    f.write(data)
j = boot(dev)
print("held", [s for s, _ in j.records(0, buf)], "torn", j.torn)
s = j.append(make(5))
print("next", s > 5)
j = boot(dev)
print("after", [x for x, _ in j.records(0, buf)][:4], j.torn, j.last_seq == s)
""")
    assert "held [1, 2, 3, 4] torn 1" in out
    assert "next True" in out
    assert "after [1, 2, 3, 4] 1 True" in out


def test_peek_counts_what_recovery_would_and_writes_nothing(mpy):
    """journal.peek is what `depot flash` runs on a device: the same frame reader, read-only."""
    out = run(mpy, """
print("none", journal.peek("/no/journal"))
j = boot(dev)
for i in range(7):
    j.append(make(i))
j.acknowledge(3)
j.close()

def snapshot():
    return sorted((n, open("/f/j/" + n, "rb").read()) for n in os.listdir("/f/j"))

before = snapshot()
print("peek", journal.peek("/f/j"), "unchanged", snapshot() == before)
last = "/f/j/" + sorted(n for n in os.listdir("/f/j") if n.endswith(".seg"))[-1]
with open(last, "rb") as f:
    data = bytearray(f.read())
data[-3] ^= 0x40                      # a byte inside the last frame's CRC
with open(last, "wb") as f:
    f.write(data)
print("torn", journal.peek("/f/j"))
j = boot(dev)
print("recovered", j.pending(), j.watermark, j.last_seq)
""")
    assert "none (0, 0, 0)" in out
    assert "peek (4, 3, 7) unchanged True" in out
    assert "torn (3, 3, 6)" in out
    assert "recovered 3 3 6" in out


def test_damage_inside_an_older_segment_keeps_its_head_and_every_later_segment(mpy):
    out = run(mpy, """
j = boot(dev)
for i in range(15):
    j.append(make(i))
segs = sorted(n for n in os.listdir("/f/j") if n.endswith(".seg"))
p = "/f/j/" + segs[0]
with open(p, "rb") as f:
    data = bytearray(f.read())
n0 = data[0] | data[1] << 8
data[2 + n0 + 4 + 20] ^= 1            # inside the second frame of the first segment
with open(p, "wb") as f:
    f.write(data)
j = boot(dev)
print("held", [s for s, _ in j.records(0, buf)], "torn", j.torn, "next", j.next_seq > 15)
""")
    # Record 1 stays; 2..5 (the rest of that segment) are untrusted; 6.. in later segments stay.
    assert "held [1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] torn 1 next True" in out


def test_lost_state_file_still_never_reuses_a_sequence(mpy):
    out = run(mpy, """
j = boot(dev)
for i in range(5):
    j.append(make(i))
j.close()
os.remove("/f/j/state")
j = boot(dev)
print("next", j.next_seq, "wm", j.watermark, "held", len(list(j.records(0, buf))))
""")
    assert "next %d wm 0 held 5" % (5 + 1 + 128) in out


def test_sequence_of_a_torn_record_is_never_reused(mpy):
    # The host may already hold seq 5 from before the cut: the next record must not be 5 again.
    out = run(mpy, """
j = boot(dev)
for i in range(5):
    j.append(make(i))
last = sorted(n for n in os.listdir("/f/j") if n.endswith(".seg"))[-1]
p = "/f/j/" + last
with open(p, "rb") as f:
    data = f.read()
with open(p, "wb") as f:
    f.write(data[:-10])               # truncated frame: record 5 lost
for boot_no in range(3):
    j = boot(dev)
    s = j.append(make(10 + boot_no))
    print("boot", boot_no, "last", j.last_seq, "new", s)
""")
    lines = [ln.split() for ln in out.splitlines() if ln.startswith("boot")]
    news = [int(ln[-1]) for ln in lines]
    assert news[0] > 5 and news[0] < news[1] < news[2]


def test_full_flash_refuses_with_journal_full_and_loses_nothing(mpy):
    out = run(mpy, """
j = boot(dev)
confirmed = []
states = set()
try:
    for i in range(5000):
        confirmed.append(j.append(make(i)))
        states.add(j.space())
    print("never full")
except JournalFull:
    print("full after", len(confirmed), "states", sorted(states), j.space())
try:
    j.append(make(0))
except JournalFull:
    print("refused again")
j = boot(dev)
held = [s for s, _ in j.records(0, buf)]
print("intact", held == confirmed, j.space())
j.acknowledge(confirmed[-1])
print("after ack", j.space(), j.append(make(1)) > confirmed[-1])
""", blocks=24)
    assert "never full" not in out
    assert "states ['full', 'low', 'ok'] full" in out  # warned (low) before refusing
    assert "refused again" in out
    assert "intact True full" in out
    assert "after ack ok True" in out




def test_littlefs_no_space_becomes_journal_full_and_loses_nothing(mpy):
    # No reserve (full_blocks=-1): littlefs itself raises ENOSPC inside write/flush.
    out = run(mpy, """
j = boot(dev, full_blocks=-1)
confirmed = []
try:
    for i in range(5000):
        confirmed.append(j.append(make(i)))
except JournalFull as e:
    print("refused:", e, j.space())
try:
    j.append(make(0))
except JournalFull as e:
    print("again:", e)
j = boot(dev)
print("intact", [s for s, _ in j.records(0, buf)] == confirmed)
j.acknowledge(confirmed[-1])
print("after ack", j.space(), j.append(make(1)) > confirmed[-1])
""", blocks=16)
    assert "refused: out of flash space: dock to upload full" in out
    assert "again: flash full: dock to upload" in out
    assert "intact True" in out
    assert "after ack ok True" in out
    assert "Warning" not in out


@pytest.mark.parametrize("lfs", ["{}", "{'progsize': 256}"], ids=["lfs-default", "lfs-progsize256"])
@pytest.mark.parametrize("ooo", [False, True], ids=["in-order", "out-of-order"])
def test_power_cut_after_every_block_write_of_a_session(mpy, ooo, lfs):
    """60 deliveries and 2 acknowledgements; power cut after write N for every N of the session;
    after remount every confirmed record is intact, seqs strictly increase, and new records get
    sequence numbers above anything ever handed out.

    The session runs once on a recording chip; the image a cut after write N leaves is rebuilt from
    the log (littlefs is deterministic), and real mid-operation cuts at a few N must give the very
    same image, so the fast replay is checked against the slow truth in the same run.
    With progsize=256 (rp2's mount) 512-byte segments are inline files inside the directory's
    metadata, a different on-flash path, so both mounts are cut.
    """
    code = POWERCUT_SCRIPT.replace("OOO_FLAG", str(ooo)).replace("LFS_KW", lfs)
    out = mpy(code, heap="2M", extra_paths=VM)
    f = out.strip().splitlines()[-1].split()
    assert f[0] == "CUTS" and int(f[1]) > 60, out  # at least a block write per delivery
    assert f[2:6] == ["CONFIRMED", "60", "FAILS", "0"], out
    assert f[8:] == ["REPLAY_MATCHES", "4", "4"], out
    # OOO: most cuts land between syncs and revert an earlier block; in order none does.
    reverted = int(f[7])
    assert (reverted > int(f[1]) // 8) if ooo else (reverted == 0), out


POWERCUT_SCRIPT = r'''
import binascii
import gc
import vfs
from flashdev import FlashDevice, PowerLost
from firmware import record
from firmware import journal

OOO = OOO_FLAG
LFS = LFS_KW  # mount options: the sim/ESP32 defaults, or rp2's progsize=256 (inline segments)
NREC = 60
ACKS = {20: 9, 41: 30}  # after delivery i, the host acknowledges up to delivery ACKS[i]
BS = 4096
BC = 24
LOG = []  # (block or -1 for a sync, data or None for an erase, offset, session state when issued)
S = [0, 0, 0, 0, None]  # max seq handed out, ack returned, ack in flight, confirmed count, record in flight
CONFIRMED = []  # (seq, delivery index) in the order the beeps sounded


def state():
    r = S[4]
    if r is not None and r.seq > S[0]:
        S[0] = r.seq  # handed out once the record carries it
    return (S[0], S[1], S[2], S[3])


class Recording(FlashDevice):
    # Logs every operation with the session's state at that instant: cutting after write N is then
    # "apply ops up to N, with the state logged at write N+1" (littlefs is deterministic).
    def writeblocks(self, n, buf, off=None):
        LOG.append((n, bytes(buf), off, state()))
        super().writeblocks(n, buf, off)

    def ioctl(self, op, arg):
        if op == 6:
            LOG.append((arg, None, 0, state()))
        elif op == 3:
            LOG.append((-1, None, 0, None))
        return super().ioctl(op, arg)


def make(i):
    return record.Record(device_id="DEV0001", route_id="R12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i), lat_e6=52000000 + i, lon_e6=4000000)


def session(dev):
    vfs.mount(vfs.VfsLfs2(dev, **LFS), "/f")
    j = None
    try:
        j = journal.Journal("/f/j")
        for i in range(NREC):
            r = make(i)
            S[4] = r
            seq = j.append(r)
            S[4] = None
            CONFIRMED.append((seq, i))
            S[3] = len(CONFIRMED)  # the beep
            if i in ACKS:
                a = CONFIRMED[ACKS[i]][0]
                S[2] = a
                j.acknowledge(a)
                S[1] = a
    except PowerLost:
        if j is not None:
            j.close()  # the chip is dead; only keeps the GC from closing it later
    vfs.umount("/f")


def check(dev, st, buf):
    handed, acked, inflight, nconf = st
    vfs.mount(vfs.VfsLfs2(dev, **LFS), "/f")
    j = journal.Journal("/f/j")
    bad = 0
    if j.watermark != acked and j.watermark != inflight:
        bad |= 1
    prev = 0
    found = 0
    k = 0
    for seq, mv in j.records(j.watermark + 1, buf):
        if seq <= prev:
            bad |= 2  # duplicate or out of order
        prev = seq
        while k < nconf and CONFIRMED[k][0] < seq:
            k += 1
        if k < nconf and CONFIRMED[k][0] == seq:
            r = record.decode(mv)
            if r.seq != seq or r.item_id != make(CONFIRMED[k][1]).item_id:
                bad |= 4  # not intact
            found += 1
        elif seq != handed:
            bad |= 8  # only the record in flight at the cut may show up unconfirmed
    if found != len([1 for k in range(nconf) if CONFIRMED[k][0] > j.watermark]):
        bad |= 16  # a confirmed record is missing
    if j.next_seq <= handed:
        bad |= 32
    s = j.append(make(99))
    if s <= handed:
        bad |= 64  # a sequence number handed out again
    vfs.umount("/f")
    return bad


rec = Recording(BS, BC)
vfs.VfsLfs2.mkfs(rec, **LFS)
pristine = bytes(rec.image)
del LOG[:]
session(rec)
final = state()
nconf_total = S[3]
ops = LOG[:]
del LOG[:]
total = len([1 for op in ops if op[0] >= 0])

live = FlashDevice(BS, BC)  # the chip as the first N writes left it
live.restore(pristine)
live.cut_after_writes(1 << 29, OOO)  # never cut: only track the pre-image of the first unsynced block
probe = FlashDevice(BS, BC)  # what the next boot sees
buf = bytearray(journal.FRAME_MAX)
XN = {1: 0, total // 5: 0, total // 2: 0, total - 3: 0}
fails = 0
reverted = 0
n = 0
i = 0
while n < total:
    b, data, off, _ = ops[i]
    i += 1
    if b < 0:
        live.ioctl(3, 0)
        continue
    if data is None:
        live.ioctl(6, b)
    else:
        live.writeblocks(b, data, off)
    n += 1
    while i < len(ops) and ops[i][0] < 0:  # syncs issued before write N+1
        live.ioctl(3, 0)
        i += 1
    st = ops[i][3] if i < len(ops) else final
    probe.restore(live.image)
    if OOO and live._pre_block >= 0:
        probe.image[live._pre_block * BS: (live._pre_block + 1) * BS] = live._pre
        reverted += 1
    if n in XN:
        XN[n] = binascii.crc32(probe.image)
    bad = check(probe, st, buf)
    if bad:
        fails += 1
        print("FAIL at", n, st, bad)
    if n % 64 == 0:
        gc.collect()

# Cross-check the log replay against real cuts mid-operation (PowerLost raised inside littlefs).
same = 0
for n in XN:
    dev = FlashDevice(BS, BC)
    dev.restore(pristine)
    dev.cut_after_writes(n, OOO, True)
    session(dev)
    if binascii.crc32(dev.image) == XN[n]:
        same += 1
print("CUTS", total, "CONFIRMED", nconf_total, "FAILS", fails, "REVERTED", reverted,
      "REPLAY_MATCHES", same, len(XN))
'''
