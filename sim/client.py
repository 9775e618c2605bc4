"""Python API over a virtual handheld's control socket (JSON lines), for tests, scenarios, demos.

    with Device.start("day.img") as dev:
        subprocess.run(["mpremote", "connect", dev.console, "fs", "ls"])
        dev.scan("RR473124829GB")
        dev.screenshot("screen.png")
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


class ControlError(RuntimeError):
    pass


class Control:
    """One connection to a control socket; `call(cmd, **args)` returns the reply dict."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        self._sock, self._file = sock, sock.makefile("rwb")

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        with self._lock:
            if self._file is None:
                self._connect()
            f = self._file
            assert f is not None
            f.write(json.dumps({"cmd": cmd} | args).encode() + b"\n")
            f.flush()
            line = f.readline()
        if not line:
            raise ControlError(f"{cmd}: control socket closed")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise ControlError(f"{cmd}: {reply.get('error')}")
        return reply

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = self._file = None


class Device:
    """A running `python -m sim device` process."""

    def __init__(self, proc: subprocess.Popen[bytes] | None, info: dict[str, Any]) -> None:
        self.proc = proc
        self.info = info
        self.console: str = info["console"]
        self.dock: str = info["dock"]
        self.control = Control(info["control"])
        self.workdir = Path(info["workdir"])

    @classmethod
    def start(cls, image: str | os.PathLike, board: str = "sim", heap: str = "256K",
              workdir: str | os.PathLike | None = None, seed: int | None = None,
              timeout: float = 20.0, console_baud: int = 0) -> Device:
        """Spawn `python -m sim device` on `image` and wait until its control socket answers.
        console_baud paces the console pty like a UART (e.g. 115200 to compare mpremote with the
        dock protocol on the same link); 0 leaves it unpaced, as USB CDC."""
        # the device process runs in the repository: paths are the caller's, so resolve them here
        cmd = [sys.executable, "-m", "sim", "device", "--flash", str(Path(image).resolve()), "--board", board,
               "--heap", heap]
        if workdir is not None:
            cmd += ["--workdir", str(Path(workdir).resolve())]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        if console_baud:
            cmd += ["--console-baud", str(console_baud)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout)
            raise ControlError(f"sim device exited with status {proc.returncode} before it started")
        dev = cls(proc, json.loads(line))
        dev.wait_for(lambda s: True, timeout)  # the control socket answers
        return dev

    @classmethod
    def attach(cls, control: str) -> Device:
        """A device someone else started, by its control socket."""
        return cls(None, Control(control).call("info"))

    # --- helpers ---

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        return self.control.call(cmd, **args)

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def wait_for(self, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        """Poll status() until pred(status) holds."""
        end = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < end:
            try:
                last = self.status()
                if pred(last):
                    return last
            except (OSError, ControlError) as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"device did not reach the state in {timeout}s: {last}")

    def wait_idle(self, timeout: float = 20.0) -> dict[str, Any]:
        """Until the VM sits in its REPL (main.py ended or was interrupted)."""
        return self.wait_for(lambda s: s["vm"] == "on" and s["state"] == "I", timeout)

    def wait_running(self, boots: int | None = None, timeout: float = 20.0) -> dict[str, Any]:
        """Until user code (boot.py/main.py) runs, optionally in boot number >= `boots`."""
        return self.wait_for(lambda s: s["vm"] == "on" and s["state"] == "R"
                             and (boots is None or s["boots"] >= boots), timeout)

    def wait_ready(self, since: int = 0, timeout: float = 30.0) -> None:
        """Until the application's power-up `ready` beep (every task listening), counting events
        from index `since` (len(events()) before a reboot)."""
        end = time.monotonic() + timeout
        while not any(e["kind"] == "buzzer" and e["value"] == "ready" for e in self.events(since)):
            if time.monotonic() > end:
                raise TimeoutError(f"no ready beep in {timeout}s: {self.status()}")
            time.sleep(0.05)

    def wait_off(self, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_for(lambda s: s["vm"] == "off", timeout)

    # --- peripherals ---

    def scan(self, code: str, symbology: str | None = None, suffix: str = "\r", misread: float = 0.0) -> str:
        """A scan of `code`; the symbology identifier defaults to the one its barcode would carry
        (`]C0` Code 128 for an S10 id, `]C1` GS1-128 for digits such as `00` + an SSCC)."""
        return self.call("scan", code=code, symbology=symbology, suffix=suffix, misread=misread)["sent"]

    def key(self, name: str) -> None:
        self.call("key", name=name)

    def gnss(self, lines: list[str]) -> None:
        self.call("gnss", lines=list(lines))

    def gnss_walk(self, waypoints: list[tuple[float, float]], period: float = 1.0, **walk_args: Any) -> None:
        self.call("gnss", walk={"waypoints": [list(p) for p in waypoints]} | walk_args, period=period)

    def gnss_replay(self, path: str | os.PathLike, period: float = 1.0) -> None:
        self.call("gnss", replay=str(Path(path).resolve()), period=period)

    def gnss_stop(self) -> None:
        self.call("gnss", stop=True)

    def set_battery(self, mv: int) -> None:
        self.call("battery", mv=mv)

    def screenshot(self, path: str | os.PathLike, scale: int = 2) -> dict[str, Any]:
        return self.call("screenshot", path=str(Path(path).resolve()), scale=scale)

    def screen_text(self) -> list[str]:
        """The screen's text rows as the carrier reads them; an inverse row starts with "*"."""
        return self.call("screen")["rows"]

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        return self.call("events", since=since)["events"]

    def console_text(self) -> str:
        """The last 64 KiB the VM wrote to its console (whether or not anyone was attached)."""
        return self.call("console")["text"]

    def dock_fault(self, drop: float | None = None, flip: float | None = None, stall: float | None = None,
                   unplug: bool | None = None) -> dict[str, Any]:
        return self.call("dock_fault", drop=drop, flip=flip, stall=stall, unplug=unplug)["dock"]

    def wear(self) -> dict[str, Any]:
        return self.call("wear")

    def rom_fault(self, stuck_byte: int | None) -> None:
        """The ROMFS partition's byte at `stuck_byte` no longer programs, as a worn cell (None: healed)."""
        self.call("rom_fault", stuck_byte=stuck_byte)

    # --- power ---

    def power_cut(self, after_writes: int | None = None, ooo: bool = False) -> None:
        """Now (after_writes=None), or once `after_writes` more block writes reached the chip."""
        if after_writes is None:
            self.call("power_cut", now=True)
        else:
            self.call("power_cut", after_writes=after_writes, ooo=ooo)

    def power_on(self) -> None:
        self.call("power_on")

    def reboot(self) -> None:
        self.call("reboot")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            self.call("stop")
            self.control.close()
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.control.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
