"""What the VM tells the device process besides its console: its state (a FIFO of single bytes
from the shim) and its peripherals' events (a FIFO of `kind value` lines from hal: buzzer patterns,
LED changes), stamped here with host time and kept for the control socket's `events`.

Both FIFOs are opened O_RDWR: the device process is a writer too, so they never report EOF
between one VM's life and the next.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def open_fifo(path: Path) -> int:
    if not path.exists():
        os.mkfifo(path)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


def read_state(fd: int, quit: threading.Event, reported: Callable[[bytes], Any]) -> None:
    """The state thread: hands each batch of state bytes to `reported`."""
    while not quit.is_set():
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(fd, 256)
        except BlockingIOError:
            continue
        reported(data)


class Events:
    """The device's event log: in memory for `events`, and as JSON lines in events.log."""

    def __init__(self, fifo: Path, log: Path) -> None:
        self.fd = open_fifo(fifo)
        self.items: list[dict[str, Any]] = []
        self._log = open(log, "a", buffering=1)
        self._lock = threading.Lock()
        self._pump_lock = threading.Lock()  # one reader of the FIFO at a time, lines kept whole
        self._pending = b""

    def add(self, kind: str, value: str) -> None:
        ev = {"t": round(time.time(), 3), "kind": kind, "value": value}
        with self._lock:
            self.items.append(ev)
        self._log.write(json.dumps(ev) + "\n")

    def since(self, n: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.items[n:]

    def pump(self) -> None:
        """Log every line hal has written so far. Called before the device logs an event of its
        own about the VM (its power failed): what the VM played before it died then comes first,
        as the carrier heard it, whichever thread the scheduler ran first."""
        with self._pump_lock:
            while True:
                try:
                    data = os.read(self.fd, 4096)
                except BlockingIOError:
                    return
                *lines, self._pending = (self._pending + data).split(b"\n")
                for line in lines:
                    kind, _, rest = line.decode(errors="replace").strip().partition(" ")
                    if kind:
                        self.add(kind, rest)

    def read(self, quit: threading.Event) -> None:
        """The events thread: lines from hal, as they come."""
        while not quit.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if ready:
                self.pump()
