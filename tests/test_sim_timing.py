"""What a script driving a virtual handheld can rely on: what it wrote to a UART is counted until the
firmware has read it (so a key or a fix is handled before the scan sent after it), and the event log
is in the order things happened (a beep the VM played before its flash died comes before the power
event, so the beep after power-up is the new boot's)."""

from __future__ import annotations

import os
from pathlib import Path

from sim.device import VirtualDevice
from sim.links import Pty


def test_a_pty_counts_every_byte_written_until_the_far_end_reads_it() -> None:
    # A write to a pty master reaches the slave from a kernel worker; until then FIONREAD said 0,
    # and `sim device` took a key as read by the firmware before it had even arrived.
    p = Pty()
    try:
        for i in range(3000):
            os.write(p.master, b"down\n")
            assert p.unread() == 5, f"write {i}: the key was counted as read before it arrived"
            assert os.read(p.slave, 64) == b"down\n"
            assert p.unread() == 0
    finally:
        p.close()


def _hal_writes(dev: VirtualDevice, line: bytes) -> None:
    """What firmware/hal does for a beep inside the VM: one line on the events FIFO."""
    fd = os.open(dev.events_fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def test_a_beep_played_before_the_flash_died_is_logged_before_the_power_event(tmp_path: Path) -> None:
    # The VM writes the beep, then its next block write finds the power cut and reports "P". The
    # device's events thread and state thread read those FIFOs independently; here the state
    # thread runs first (the events thread is not started), as a loaded machine may schedule it.
    dev = VirtualDevice(tmp_path / "flash.img", workdir=tmp_path / "run")
    try:
        _hal_writes(dev, b"buzzer override\n")
        dev._state_reported(b"P")
        _hal_writes(dev, b"buzzer ok\n")
        dev.power_cut()  # and a cut "now" while a beep waits in the FIFO
        got = [(e["kind"], e["value"]) for e in dev.events.since(0)]
        assert got == [("buzzer", "override"), ("power", "flash lost power: VM stopped"),
                       ("buzzer", "ok"), ("power", "cut now")]
    finally:
        dev.shutdown()
