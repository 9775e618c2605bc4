"""Serial links of the virtual handheld: ptys, a pacer that clocks bytes out at a baud rate, and
the dock link (two ptys and a paced pump between them, with drops, bit flips, stalls, unplugs)."""

from __future__ import annotations

import fcntl
import os
import pty
import random
import select
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterator

_SLACK_S = 0.01


class Pty:
    """A pty whose slave the far end opens by path; we keep the slave open too, so the master
    never sees EIO when the far end closes it, and so its termios stays raw."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)

    def unread(self) -> int:
        """Bytes written to the master that the far end has not read yet. A write to a pty master
        reaches the slave's input queue later, from a kernel worker (the tty flip buffer): FIONREAD
        alone can say 0 for bytes still on their way. Polling the slave first waits for that push
        (n_tty's poll flushes the pending work), so the count includes every byte written."""
        poll = select.poll()  # one per call: the control socket's threads may ask at once
        poll.register(self.slave, select.POLLIN)
        poll.poll(0)
        return struct.unpack("i", fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0"))[0]

    def wait_read(self, timeout: float = 10.0, reading: Callable[[], bool] = lambda: True) -> bool:
        """Until the far end has read everything written so far (a UART's FIFO emptied by the
        firmware), so what is sent next on another line is seen after it. False on timeout, or
        as soon as `reading` says the far end stopped (its power failed: the bytes wait in vain)."""
        end = time.monotonic() + timeout
        while self.unread():
            if time.monotonic() > end or not reading():
                return False
            time.sleep(0.002)
        return True

    def drain_input(self) -> None:
        """Forget what the far end has not read yet (a UART's FIFO is empty at power-on)."""
        termios.tcflush(self.slave, termios.TCIFLUSH)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def write_all(fd: int, data: bytes, give_up_s: float = 1.0,
              on_full: Callable[[], None] | None = None) -> None:
    """Write to a (non-blocking) fd; when nobody drains it for give_up_s, call on_full (drop)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
            view = view[n:]
        except BlockingIOError:
            _, ready, _ = select.select([], [fd], [], give_up_s)
            if not ready:
                if on_full is None:
                    return
                on_full()
        except OSError:
            return


class Pacer:
    """Lets bytes leave no faster than a serial line clocks them out (rate in bytes/s, 0: unpaced)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.due = time.monotonic()
        self.lock = threading.Lock()

    def wait(self, n: int) -> None:
        if not self.rate:
            return
        with self.lock:
            now = time.monotonic()
            # Keep the schedule through our own loop overhead (else each slice loses it and the
            # link runs ~5% slow); only an idle line (due far behind) restarts it from now.
            if self.due < now - _SLACK_S:
                self.due = now
            self.due += n / self.rate
            delay = self.due - now
        if delay > 0:
            time.sleep(delay)


def paced(pacer: Pacer, data: bytes, slice_len: int = 64) -> Iterator[bytes]:
    for i in range(0, len(data), slice_len):
        chunk = data[i:i + slice_len]
        pacer.wait(len(chunk))
        yield chunk


class DockLink:
    """Relays bytes between the device's and the host's dock ptys at the board's baud rate."""

    def __init__(self, baud: int, seed: int | None = None) -> None:
        self.rate = baud / 10.0  # 8N1: a start bit, 8 data bits, a stop bit
        self.pacers = {"to_host": Pacer(self.rate), "to_device": Pacer(self.rate)}
        self.device = Pty()
        self.host = Pty()
        self.drop = 0.0
        self.flip = 0.0
        self.stall_until = 0.0
        self.unplugged = False
        self.rng = random.Random(seed)
        self.bytes = {"to_host": 0, "to_device": 0, "dropped": 0, "flipped": 0}
        self._stop = threading.Event()
        for src, dst, key in ((self.device, self.host, "to_host"), (self.host, self.device, "to_device")):
            threading.Thread(target=self._pump, args=(src, dst, key), daemon=True).start()

    def fault(self, drop: float | None = None, flip: float | None = None, stall: float | None = None,
              unplug: bool | None = None) -> None:
        if drop is not None:
            self.drop = float(drop)
        if flip is not None:
            self.flip = float(flip)
        if stall:
            self.stall_until = time.monotonic() + float(stall)
        if unplug is not None:
            self.unplugged = bool(unplug)

    def _pump(self, src: Pty, dst: Pty, key: str) -> None:
        pacer = self.pacers[key]
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([src.master], [], [], 0.2)
                if not ready:
                    continue
                data = bytearray(os.read(src.master, 64))  # 64 B = 5.6 ms of line time
            except OSError:
                return
            if self.unplugged:
                self.bytes["dropped"] += len(data)
                continue  # the cable is out: the bytes go nowhere
            now = time.monotonic()
            if now < self.stall_until:
                time.sleep(self.stall_until - now)
            out = bytearray()
            for b in data:
                if self.drop and self.rng.random() < self.drop:
                    self.bytes["dropped"] += 1
                    continue
                if self.flip and self.rng.random() < self.flip:
                    b ^= 1 << self.rng.randrange(8)
                    self.bytes["flipped"] += 1
                out.append(b)
            pacer.wait(len(data))  # the bytes leave only when the line has clocked them out
            self.bytes[key] += len(out)
            if out:
                write_all(dst.master, bytes(out), on_full=dst.drain_input)

    def close(self) -> None:
        self._stop.set()
        self.device.close()
        self.host.close()
