"""The virtual handheld's USB console: a pty relayed to and from the VM's stdin and stdout.

What a board's USB stack does is done here: a Ctrl-C byte while user code runs becomes SIGINT
(the unix port raises it as KeyboardInterrupt, exactly where a board would interrupt), and each LF
the firmware prints goes out as CR LF. The last 64 KiB of output are kept for the control socket's
`console` command, whether or not anyone was attached.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading

from sim.links import Pacer, Pty, paced, write_all
from sim.vmsupervisor import Supervisor

_BARE_LF = re.compile(rb"(?<!\r)\n")
_TAIL = 65536  # bytes of output kept for `console`
_GIVE_UP_S = 0.2  # nobody reading: the oldest output is dropped, the VM is never held up


class Console:
    def __init__(self, vm: Supervisor, baud: int = 0) -> None:
        self.vm = vm
        self.pty = Pty()
        self.path = self.pty.path
        os.set_blocking(self.pty.master, False)
        # USB CDC is not paced; a board whose console is a UART (or a bench comparing mpremote with
        # the dock protocol on the same link) sets a baud rate
        self._out_pacer = Pacer(baud / 10.0)
        self._in_pacer = Pacer(baud / 10.0)
        self._lock = threading.Lock()
        self.tail = bytearray()
        self._out_cr = False  # the output so far ends in CR

    def text(self) -> str:
        with self._lock:
            return self.tail.decode(errors="replace")

    def emit(self, data: bytes) -> None:
        """VM output (or the device's own notices) to whoever holds the console."""
        with self._lock:
            start = 1 if self._out_cr and data[:1] == b"\n" else 0  # its CR ended the last chunk
            data = data[:start] + _BARE_LF.sub(b"\r\n", data[start:])
            self._out_cr = data.endswith(b"\r")
            self.tail += data
            del self.tail[:-_TAIL]
        for chunk in paced(self._out_pacer, data):
            write_all(self.pty.master, chunk, give_up_s=_GIVE_UP_S, on_full=self.pty.drain_input)

    def relay_input(self, quit: threading.Event) -> None:
        """The console thread: keystrokes (or mpremote's bytes) to the VM."""
        fd = self.pty.master
        while not quit.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            for chunk in paced(self._in_pacer, data):
                self._to_vm(chunk)

    def _to_vm(self, data: bytes) -> None:
        with self.vm.lock:
            vm, st = self.vm.vm, self.vm.state
        if vm is None or vm.stdin is None:
            return  # powered off: the keystrokes go nowhere
        start = 0
        for i, b in enumerate(data):
            if b == 3 and st == "booting":
                self.vm.ctrl_c_while_booting()  # the byte goes on too
            if b == 3 and st == "R":
                _write(vm, data[start:i])
                start = i + 1
                self.vm.interrupt()
        _write(vm, data[start:])


def _write(vm: subprocess.Popen[bytes], data: bytes) -> None:
    if data and vm.stdin is not None:
        try:
            vm.stdin.write(data)
        except (OSError, ValueError):
            pass
