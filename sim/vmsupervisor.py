"""The virtual handheld's power and reset: one `micropython` process at a time running the boot
shim (sim/vm/shim.py) on the flash image, started again on every soft reset, killed by a power cut
or the reset button.

The VM's exit status says what the shim wants: 3 soft reboot into the friendly REPL (main.py
runs), 4 into the raw REPL (main.py skipped), as pyexec does on a board. What the device wants is
`want`: run (follow soft resets), off (powered down until power_on), reboot (once), quit.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SOFT_FRIENDLY = 3
SOFT_RAW = 4
_INTR_WINDOW_S = 3.0  # a Ctrl-C typed while the VM boots still stops the boot.py/main.py it reaches


class Supervisor:
    """Runs the VM; `state` is what the shim last reported: booting, R (user code runs), I (REPL
    idle), X (leaving), P (the flash lost power), off."""

    def __init__(self, command: list[str], cwd: Path, env: Callable[[str], dict[str, str]],
                 before_boot: Callable[[], None], output: Callable[[bytes], None]) -> None:
        self.command = command
        self.cwd = cwd
        self.env = env  # boot mode ("friendly" or "raw") -> the VM's environment
        self.before_boot = before_boot  # the lines and switches a fresh VM must find idle
        self.output = output  # the VM's stdout and stderr, as they come
        self.lock = threading.RLock()
        self._wake = threading.Condition(self.lock)
        self.vm: subprocess.Popen[bytes] | None = None
        self.state = "off"
        self.boots = 0
        self.last_exit: int | None = None
        self.want = "run"
        self._next_mode = "friendly"
        self._pending_intr = 0.0  # when a Ctrl-C reached a VM still booting

    def run(self) -> None:
        """The supervisor thread: boot, wait for the exit, decide whether to boot again."""
        while True:
            with self.lock:
                while self.want == "off":
                    self._wake.wait()
                if self.want == "quit":
                    return
                mode, self._next_mode = self._next_mode, "friendly"
                self.before_boot()
                self.state = "booting"
                self.vm = vm = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=self.env(mode), cwd=self.cwd,
                                                bufsize=0)
                self.boots += 1
            outs = [threading.Thread(target=self._relay, args=(s,), daemon=True)
                    for s in (vm.stdout, vm.stderr)]
            for t in outs:
                t.start()
            rc = vm.wait()
            for t in outs:
                t.join(timeout=2)
            if not self._after_exit(rc):
                return

    def _after_exit(self, rc: int) -> bool:
        with self.lock:
            self.last_exit = rc
            self.vm = None
            self.state = "off"
            if self.want == "quit":
                return False
            if self.want == "run" and rc in (SOFT_FRIENDLY, SOFT_RAW):
                self._next_mode = "raw" if rc == SOFT_RAW else "friendly"
            elif self.want == "reboot":
                self.want = "run"
            elif self.want == "run":  # crashed, killed, or powered off: stays off until told
                self.want = "off"
                if rc not in (0, -signal.SIGKILL):
                    self.output(f"\r\nsim: VM exited with status {rc}\r\n".encode())
        return True

    def _relay(self, stream: Any) -> None:
        while True:
            try:
                data = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            except (OSError, ValueError):
                return
            if not data:
                return
            self.output(data)

    # --- what the device asks of it ---

    def kill(self) -> None:
        vm = self.vm
        if vm is not None and vm.poll() is None:
            vm.kill()
            try:
                vm.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def power_off(self) -> None:
        with self.lock:
            self.want = "off"
        self.kill()  # writes are unbuffered in the VM: the image is what the chip holds

    def power_on(self) -> None:
        with self.lock:
            if self.vm is None:
                self.want = "run"
                self._next_mode = "friendly"
                self._wake.notify_all()

    def reboot(self) -> None:
        """A hard reset (reset button): the VM dies and boots again from the same image."""
        with self.lock:
            running = self.vm is not None
            self.want = "reboot" if running else "run"
            self._next_mode = "friendly"
            self._wake.notify_all()
        if running:
            self.kill()

    def quit(self) -> None:
        with self.lock:
            self.want = "quit"
            self._wake.notify_all()
        self.kill()

    # --- what the shim and the console tell it ---

    def interrupt(self) -> None:
        """SIGINT to the VM: the unix port raises KeyboardInterrupt in the code that runs."""
        vm = self.vm
        if vm is not None:
            try:
                vm.send_signal(signal.SIGINT)
            except OSError:
                pass

    def ctrl_c_while_booting(self) -> None:
        """A board takes a Ctrl-C as soon as boot.py/main.py run: interrupt them when they do."""
        with self.lock:
            self._pending_intr = time.monotonic()

    def reported(self, codes: bytes) -> bool:
        """State bytes from the shim; True when the flash lost power (the caller cuts the VM)."""
        with self.lock:
            for b in codes:
                self.state = chr(b)
                if b == ord("R") and time.monotonic() - self._pending_intr < _INTR_WINDOW_S:
                    self._pending_intr = 0.0
                    self.interrupt()
                elif b == ord("I"):
                    self._pending_intr = 0.0
                if b == ord("P"):
                    self.want = "off"
            self._wake.notify_all()
        return b"P" in codes

    def running_user_code(self) -> bool:
        with self.lock:
            return self.vm is not None and self.state == "R"

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"vm": "off" if self.vm is None else "on", "state": self.state, "boots": self.boots,
                    "last_exit": self.last_exit}
