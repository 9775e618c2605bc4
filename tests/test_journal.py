"""The delivery journal on the real MicroPython VM with real littlefs on the emulated flash chip.

Spec: issue 3 "The journal", docs/journal.md. Every test mounts `vfs.VfsLfs2(FlashDevice(...))` in RAM.
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VM = (ROOT / "sim" / "vm",)

PRELUDE = """
import os, vfs
from flashdev import FlashDevice, PowerLost
import record, journal
from journal import Journal, JournalFull

def make(i):
    return record.Record(device_id="DEV0001", route_id="R12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i), lat_e6=52000000 + i, lon_e6=4000000)

def boot(dev):
    try:
        vfs.umount("/f")
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(dev), "/f")
    return Journal("/f/j")

dev = FlashDevice(4096, BLOCKS)
vfs.VfsLfs2.mkfs(dev)
buf = bytearray(journal.FRAME_MAX)
"""


def run(mpy, body: str, blocks: int = 40) -> str:
    return mpy(PRELUDE.replace("BLOCKS", str(blocks)) + body, heap="1M", extra_paths=VM)


def test_append_read_acknowledge_reclaim(mpy):
    out = run(mpy, """
j = boot(dev)
seqs = [j.append(make(i)) for i in range(30)]
print("seqs", seqs[0], seqs[-1], j.next_seq, j.pending(), j.read_state())
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




@pytest.mark.parametrize("ooo", [False, True], ids=["in-order", "out-of-order"])
def test_power_cut_after_every_block_write_of_a_session(mpy, ooo):
    """55 deliveries and 2 acknowledgements; power cut after write N for every N of the session;
    after remount every confirmed record is intact, seqs strictly increase, and new records get
    sequence numbers above anything ever handed out."""
    code = POWERCUT_SCRIPT.replace("OOO_FLAG", str(ooo))
    out = mpy(code, heap="1M", extra_paths=VM)
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "CUTS" and int(last[1]) > 300, out
    assert last[2:] == ["FAILS", "0"], out


POWERCUT_SCRIPT = r'''
import gc
import vfs
from flashdev import FlashDevice, PowerLost
import record
import journal

OOO = OOO_FLAG
NREC = 55
ACKS = {20: 9, 41: 30}  # after the i-th delivery, the host acknowledges up to this delivery's seq
dev = FlashDevice(4096, 24)
vfs.VfsLfs2.mkfs(dev)
pristine = bytes(dev.image)


def make(i):
    return record.Record(device_id="DEV0001", route_id="R12", stop_id="S%04d" % (i // 3),
                         item_id="RR%08dGB" % (473124800 + i), lat_e6=52000000 + i, lon_e6=4000000)


def session(st):
    # st: [max seq handed out, acks returned, ack in flight, confirmed {seq: i}]
    vfs.mount(vfs.VfsLfs2(dev), "/f")
    j = None
    try:
        j = journal.Journal("/f/j")
        for i in range(NREC):
            r = make(i)
            try:
                seq = j.append(r)
            finally:
                st[0] = max(st[0], r.seq)  # handed out once the record carries it
            st[3][seq] = i  # the beep
            if i in ACKS:
                a = [s for s in st[3] if st[3][s] == ACKS[i]][0]
                st[2] = a
                j.acknowledge(a)
                st[1] = a
    except PowerLost:
        if j is not None:
            j.close()  # the chip is dead: this only stops the GC from closing it later
    vfs.umount("/f")


def check(st, buf):
    dev.power_on()
    vfs.mount(vfs.VfsLfs2(dev), "/f")
    j = journal.Journal("/f/j")
    bad = 0
    if not (j.watermark == st[1] or j.watermark == st[2]):
        bad += 1
    prev = 0
    found = 0
    for seq, mv in j.records(j.watermark + 1, buf):
        if seq <= prev:
            bad += 1  # duplicate or out of order
        prev = seq
        if seq in st[3]:
            r = record.decode(mv)
            if r.seq != seq or r.item_id != make(st[3][seq]).item_id:
                bad += 1  # not intact
            found += 1
        elif seq != st[0]:
            bad += 1  # only the record in flight at the cut may appear unconfirmed
    if found != len([s for s in st[3] if s > j.watermark]):
        bad += 1  # a confirmed record is missing
    if j.next_seq <= st[0]:
        bad += 1
    s = j.append(make(99))
    if s <= st[0]:
        bad += 1
    vfs.umount("/f")
    return bad


st = [0, 0, 0, {}]
session(st)
total = dev.writes
buf = bytearray(journal.FRAME_MAX)
fails = 0
n = 1
while n <= total:
    dev.restore(pristine)
    dev.cut_after_writes(n, OOO, True)
    st = [0, 0, 0, {}]
    session(st)
    if check(st, buf):
        fails += 1
        print("FAIL at", n, st[0], st[1], st[2], len(st[3]))
    n += 1
    gc.collect()
print("CUTS", total, "FAILS", fails)
'''
