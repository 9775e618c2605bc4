"""Hypothesis writes programs over scan, flush, power cut, remount, upload, lost acknowledgement and
acknowledgement; each program runs on the real micropython with real littlefs on the emulated chip
(one VM per example) and prints what happened; the model here checks the journal's promises:

- nothing confirmed is lost: every record whose append returned is on the device or at the host,
  byte for byte the same record;
- no duplicates: a seq never names two different records, at the host or on the device;
- seqs strictly increase on the device and are never handed out twice, across cuts and boots;
- the journal always remounts, and accepts records after every remount unless the flash is full
  (then it refuses with JournalFull, losing nothing).

Default: 30 programs. TORTURE=long: 400 programs of up to 60 steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from sim import mpy

VM = (Path(__file__).resolve().parents[1] / "sim" / "vm",)
LONG = os.environ.get("TORTURE") == "long"

# Runs a program of space-separated ops; prints one event per line for the model below.
# s<n>: scan n parcels; f: close the open segment; c<k>[o]: power dies after k more block writes
# (o: out-of-order loss), or at the next reboot if sooner; r: reboot (clean unless a cut is
# pending); b<k>[o]: reboot, the power failing again after k writes from the recovery on;
# u<n>: upload up to n records above the watermark; a: the host's acknowledgement of the last
# upload arrives; l: it is lost.
_VM = """
import gc
import vfs
from flashdev import FlashDevice, PowerLost
from firmware import record, journal

dev = FlashDevice(4096, 28)
vfs.VfsLfs2.mkfs(dev)
buf = bytearray(journal.FRAME_MAX)
j = None
alive = False
host_ack = 0
item = 0
armed = 0  # a cut is pending: 1 in order, 2 out of order


def make(i):
    return record.Record(device_id="DEV0001", route_id="R1", stop_id="S%04d" % (i // 4),
                         item_id="RR%08dGB" % i, lat_e6=52000000 + i, lon_e6=4000000)


def boot(cut=""):
    global j, alive, armed
    if armed and alive:
        dev.cut_after_writes(0, armed == 2)  # the armed cut strikes now: no clean shutdown
        print("X")
    armed = 0
    if j is not None:
        j.close()  # on a cut chip this only settles the file object
    j = None
    try:
        vfs.umount("/f")
    except OSError:
        pass
    # Files the cut left open belong to the dead mount: let the GC finalise them while the chip is
    # still unpowered, or their close would write that mount's stale state onto the new boot's chip.
    gc.collect()
    dev.power_on()
    if cut:  # and the power fails again, this time while the journal recovers
        dev.cut_after_writes(int(cut.rstrip("o")), cut[-1] == "o", True)
        armed = 2 if cut[-1] == "o" else 1
    vfs.mount(vfs.VfsLfs2(dev), "/f")
    alive = True
    j = journal.Journal("/f/j")
    held = " ".join("%d:%s" % (s, record.decode(mv).item_id[2:10])
                    for s, mv in j.records(j.watermark + 1, buf))
    print("B", j.watermark, j.next_seq, j.pending(), held)


boot()
for op in PROGRAM.split():
    if not alive and op[0] not in "rb":
        continue  # no power: nothing runs until the reboot
    try:
        if op[0] == "s":
            for _ in range(int(op[1:])):
                r = make(item)
                item += 1
                try:
                    seq = j.append(r)
                finally:
                    if r.seq:
                        print("H", r.seq)
                print("C", seq, "%08d" % (item - 1))
        elif op == "f":
            j.close()
        elif op[0] == "c":
            dev.cut_after_writes(int(op[1:].rstrip("o")), op[-1] == "o", True)
            armed = 2 if op[-1] == "o" else 1
        elif op == "r":
            boot()
        elif op[0] == "b":
            boot(op[1:])
        elif op[0] == "u":
            n = int(op[1:])
            it = j.records(j.watermark + 1, buf)
            for s, mv in it:
                if n == 0:
                    break
                n -= 1
                print("U", s, record.decode(mv).item_id[2:10])
                host_ack = s
            it.close()  # batch full: let the reader close its segment now, not at GC
        elif op == "a":
            if host_ack:
                print("P", host_ack)
                j.acknowledge(host_ack)
                print("A", host_ack, j.pending())
        elif op == "l":
            host_ack = 0
    except PowerLost:
        print("X")
        alive = False
        armed = 0
    except journal.JournalFull:
        print("F")
boot()
try:
    j.append(make(item))  # accepts records after the last remount...
    print("H", j.last_seq)
except journal.JournalFull:
    print("F", j.space())  # ...unless the flash is full and nothing was acknowledged
print("END")
"""


def check(events: list[str]) -> None:
    confirmed: dict[int, str] = {}
    handed: list[int] = []
    host: dict[int, str] = {}
    acked = 0
    inflight_ack = 0
    held: dict[int, str] = {}
    for line in events:
        kind, *f = line.split()
        if kind == "H":
            seq = int(f[0])
            assert not handed or seq > handed[-1], f"seq {seq} handed out again after {handed[-1]}"
            handed.append(seq)
        elif kind == "C":
            seq, item = int(f[0]), f[1]
            assert handed and handed[-1] == seq
            confirmed[seq] = item
            held[seq] = item
        elif kind == "U":
            seq, item = int(f[0]), f[1]
            assert host.setdefault(seq, item) == item, f"seq {seq} names two records"
        elif kind == "F":
            assert not f or f[0] == "full", "refused a record without being full"
        elif kind == "P":
            inflight_ack = max(acked, int(f[0]))
        elif kind == "A":
            acked = max(acked, int(f[0]))
            assert int(f[1]) == len([x for x in held if x > acked]), "pending() miscounted"
            assert all(s in host for s in confirmed if s <= acked), "acknowledged what the host lacks"
        elif kind == "B":
            wm, next_seq, pending = int(f[0]), int(f[1]), int(f[2])
            held = {int(s): it for s, it in (p.split(":") for p in f[3:])}
            assert pending == len(held), f"pending() {pending} but {len(held)} held above the watermark"
            seqs = list(held)
            assert seqs == sorted(set(seqs)), f"held seqs not strictly increasing: {seqs}"
            assert wm in (acked, inflight_ack), f"watermark {wm}: neither {acked} nor {inflight_ack}"
            acked = inflight_ack = wm
            assert not handed or next_seq > handed[-1], f"next_seq {next_seq} <= handed {handed[-1]}"
            for s, it in confirmed.items():
                if s > wm:
                    assert held.get(s) == it, f"confirmed seq {s} lost or changed after a cut"
                else:
                    assert host.get(s) == it, f"confirmed seq {s} reclaimed before the host stored it"
            inflight = handed[-1] if handed and handed[-1] not in confirmed else None
            for s, it in held.items():
                assert s in confirmed or s == inflight, f"seq {s} on the device was never handed out"
                if s in host:
                    assert host[s] == it, f"seq {s} differs between host and device"
    assert events[-1] == "END"
    for s, it in confirmed.items():
        assert held.get(s) == it or host.get(s) == it, f"confirmed seq {s} lost"


class JournalPrograms(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.ops: list[str] = []

    @rule(n=st.integers(1, 6))
    def scan(self, n: int) -> None:
        self.ops.append(f"s{n}")

    @rule()
    def flush(self) -> None:
        self.ops.append("f")

    @rule(k=st.integers(0, 40), ooo=st.booleans())
    def power_cut(self, k: int, ooo: bool) -> None:
        self.ops.append(f"c{k}{'o' if ooo else ''}")

    @rule()
    def remount(self) -> None:
        self.ops.append("r")

    @rule(k=st.integers(0, 12), ooo=st.booleans())
    def power_fails_during_recovery(self, k: int, ooo: bool) -> None:
        self.ops.append(f"b{k}{'o' if ooo else ''}")

    @rule(batch=st.integers(1, 8))
    def upload(self, batch: int) -> None:
        self.ops.append(f"u{batch}")

    @rule()
    def acknowledgement(self) -> None:
        self.ops.append("a")

    @rule()
    def lost_acknowledgement(self) -> None:
        self.ops.append("l")

    def teardown(self) -> None:
        program = " ".join(getattr(self, "ops", []))
        out = mpy.run(_VM.replace("PROGRAM", repr(program)), heap="1M", extra_paths=VM)
        check(out.splitlines())


JournalPrograms.TestCase.settings = settings(
    max_examples=400 if LONG else 30,
    stateful_step_count=60 if LONG else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_journal_programs = JournalPrograms.TestCase
if LONG:
    test_journal_programs = pytest.mark.torture(test_journal_programs)


def test_model_catches_a_lost_confirmed_record():
    # The checker itself: a confirmed record missing after a boot must fail.
    with pytest.raises(AssertionError, match="lost"):
        check(["B 0 1 0", "H 1", "C 1 00000000", "X", "B 0 2 0", "END"])
