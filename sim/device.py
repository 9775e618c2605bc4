"""The virtual handheld: one `micropython` VM running the boot shim (sim/vm/shim.py) on an emulated
flash image, wired to ptys and pipes that play its peripherals, driven through a control socket.

    console   pty: the USB console (REPL, raw REPL, mpremote). Bytes are relayed to the VM's stdin,
              except a Ctrl-C while user code runs, which becomes SIGINT (the unix port raises it
              as KeyboardInterrupt) exactly where a board's USB stack would interrupt.
    dock      pty pair: the VM opens one side, the depot the other; a pump between them enforces
              the board's baud rate (8N1: baud/10 bytes/s) and injects drops, bit flips, stalls and
              unplugs.
    gnss, scanner, modem, keys   ptys whose far side the VM opens through hal.
    screen    a file holding the firmware's MONO_HLSB framebuffer (hal display().show()).
    events    a FIFO of buzzer/LED lines from hal, stamped here with host time.
    battery   a file with millivolts that hal reads.

The VM's exit status says what the shim wants: 3 soft reboot to the friendly REPL (main.py runs),
4 soft reboot to the raw REPL (main.py skipped), as pyexec does on a board.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import random
import re
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host_tools.errors import DepotError
from sim import mpy
from sim.links import DockLink, Pacer, Pty, paced, write_all

VM_DIR = Path(__file__).resolve().parent / "vm"
SOFT_FRIENDLY = 3
SOFT_RAW = 4
_POWER_BLANK = b" " * 32
_BARE_LF = re.compile(rb"(?<!\r)\n")


def load_board(name: str) -> dict[str, Any]:
    path = mpy.BOARDS / f"board_{name.replace('-', '_')}.py"
    if not path.exists():
        raise SystemExit(f"unknown board {name!r}: no {path}")
    return dict(runpy.run_path(str(path))["BOARD"])


def lock_image(image: Path) -> int:
    """Hold the flash image for this process's life: two devices on one chip would corrupt it.
    The lock dies with the process, so a crashed device never leaves a stale one."""
    fd = os.open(image, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DepotError(f"flash image {image} is in use by another sim device",
                         "stop that one first, or give another --flash image") from None
    return fd


class VirtualDevice:
    def __init__(self, image: str | os.PathLike, board: str = "sim", heap: str = "256K",
                 workdir: str | os.PathLike | None = None, seed: int | None = None,
                 console_baud: int = 0) -> None:
        self.image = Path(image).resolve()
        self._image_lock = lock_image(self.image)  # first: a second device on it never starts
        # USB CDC is not paced; a board whose console is a UART (or a bench comparing mpremote with
        # the dock protocol on the same link) sets console_baud
        self._console_out = Pacer(console_baud / 10.0)
        self._console_in_pacer = Pacer(console_baud / 10.0)
        self.board_name = board
        self.board = load_board(board)
        self.heap = heap
        self.rng = random.Random(seed)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="simdev-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.console = Pty()
        for p in (self.console.master,):
            os.set_blocking(p, False)
        self.uarts = {name: Pty() for name in ("gnss", "scanner", "modem", "keys")}
        self.dock = DockLink(self.board["uart"]["dock"]["baud"], seed)
        os.set_blocking(self.dock.device.master, False)
        os.set_blocking(self.dock.host.master, False)
        disp = self.board["display"]
        self.width, self.height = int(disp["width"]), int(disp["height"])
        self.screen = self.workdir / "screen.fb"
        self.screen.write_bytes(bytes(self.width * self.height // 8))
        self.battery = self.workdir / "battery"
        self.set_battery(4000)
        self.power = self.workdir / "power"
        self.power.write_bytes(_POWER_BLANK)
        self._power_gen = 0
        self.state_fifo = self.workdir / "state.fifo"
        self.events_fifo = self.workdir / "events.fifo"
        for f in (self.state_fifo, self.events_fifo):
            if not f.exists():
                os.mkfifo(f)
        # O_RDWR: we are a writer too, so the FIFO never reports EOF between VM lifetimes
        self._state_fd = os.open(self.state_fifo, os.O_RDWR | os.O_NONBLOCK)
        self._events_fd = os.open(self.events_fifo, os.O_RDWR | os.O_NONBLOCK)
        self.events: list[dict[str, Any]] = []
        self.events_log = open(self.workdir / "events.log", "a", buffering=1)
        self.console_tail = bytearray()
        self._out_cr = False  # the console output so far ends in CR
        self.vm: subprocess.Popen[bytes] | None = None
        self.vm_state = "off"  # off | booting | R (user code) | I (REPL idle) | X | P (power lost)
        self.boots = 0
        self.last_exit: int | None = None
        self._lock = threading.RLock()
        self._want = "run"  # run | off | quit
        self._next_mode = "friendly"
        self._wake = threading.Condition(self._lock)
        self._gnss_stop = threading.Event()
        self._gnss_thread: threading.Thread | None = None
        self.control_path = str(self.workdir / "control.sock")
        self.modem: Any = None
        self._server: socket.socket | None = None
        self._quit = threading.Event()
        self._pending_intr = 0.0  # when a Ctrl-C reached a VM still booting

    # --- lifecycle ---

    def info(self) -> dict[str, Any]:
        return {
            "console": self.console.path,
            "dock": self.dock.host.path,
            "control": self.control_path,
            "pid": os.getpid(),
            "workdir": str(self.workdir),
            "board": self.board_name,
            "flash": str(self.image),
            "uart": {name: p.path for name, p in self.uarts.items()} | {"dock": self.dock.device.path},
            "screen": str(self.screen),
        }

    def start(self) -> None:
        self._attach_modem()
        for target in (self._console_in, self._read_state, self._read_events, self._supervise,
                       self._serve_control):
            threading.Thread(target=target, daemon=True).start()

    def _attach_modem(self) -> None:
        """The modem emulator (sim/modem.py) takes the host side of the modem UART:
        `sim.modem.attach(fd, board, workdir)` returning an object with optional `control(msg)`
        and `close()`. Without it the modem UART stays silent, like a modem that is switched off."""
        try:
            import sim.modem as modem_mod  # type: ignore[import-not-found]
        except ImportError:
            return
        attach = getattr(modem_mod, "attach", None)
        if attach is not None:
            try:
                self.modem = attach(self.uarts["modem"].master, self.board, str(self.workdir))
            except Exception as exc:  # the handheld still boots without its modem
                self._log_event("modem", f"attach failed: {exc}")

    def wait(self) -> None:
        self._quit.wait()

    def shutdown(self) -> None:
        with self._lock:
            self._want = "quit"
            self._wake.notify_all()
        self._kill_vm()
        self._gnss_stop.set()
        try:
            fd = os.open(self.image, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass
        if self.modem is not None and hasattr(self.modem, "close"):
            try:
                self.modem.close()
            except Exception:
                pass
        if self._server is not None:
            self._server.close()
        os.close(self._image_lock)
        try:
            os.unlink(self.control_path)
        except OSError:
            pass
        self._quit.set()

    # --- the VM ---

    def _env(self, mode: str) -> dict[str, str]:
        env = dict(os.environ)
        env["MICROPYPATH"] = ":".join([str(VM_DIR), *mpy.package_paths()])  # the shim reads the board
        env.update({
            "SIM_BOARD": self.board_name,
            "SIM_FLASH": str(self.image),
            "SIM_BOOT_MODE": mode,
            "SIM_STATE": str(self.state_fifo),
            "SIM_POWER": str(self.power),
            "SIM_UART_GNSS": self.uarts["gnss"].path,
            "SIM_UART_SCANNER": self.uarts["scanner"].path,
            "SIM_UART_MODEM": self.uarts["modem"].path,
            "SIM_UART_DOCK": self.dock.device.path,
            "SIM_KEYS": self.uarts["keys"].path,
            "SIM_SCREEN": str(self.screen),
            "SIM_EVENTS": str(self.events_fifo),
            "SIM_BATTERY": str(self.battery),
        })
        return env

    def _supervise(self) -> None:
        while True:
            with self._lock:
                while self._want == "off":
                    self._wake.wait()
                if self._want == "quit":
                    return
                mode = self._next_mode
                self._next_mode = "friendly"
                self.power.write_bytes(_POWER_BLANK)
                for p in self.uarts.values():
                    p.drain_input()
                self.dock.device.drain_input()
                self.vm_state = "booting"
                self.vm = subprocess.Popen(
                    [mpy.micropython_exe(), "-X", f"heapsize={self.heap}", str(VM_DIR / "shim.py")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    env=self._env(mode), cwd=self.workdir, bufsize=0,
                )
                self.boots += 1
                vm = self.vm
            outs = [threading.Thread(target=self._vm_output, args=(s,), daemon=True)
                    for s in (vm.stdout, vm.stderr)]
            for t in outs:
                t.start()
            rc = vm.wait()
            for t in outs:
                t.join(timeout=2)
            with self._lock:
                self.last_exit = rc
                self.vm = None
                self.vm_state = "off"
                if self._want == "quit":
                    return
                if self._want == "run" and rc in (SOFT_FRIENDLY, SOFT_RAW):
                    self._next_mode = "raw" if rc == SOFT_RAW else "friendly"
                    continue
                if self._want == "reboot":
                    self._want = "run"
                    continue
                if self._want == "run":  # crashed, killed, or powered off: stays off until told
                    self._want = "off"
                    if rc not in (0, -signal.SIGKILL):
                        self._emit_console(f"\r\nsim: VM exited with status {rc}\r\n".encode())

    def _kill_vm(self) -> None:
        vm = self.vm
        if vm is not None and vm.poll() is None:
            vm.kill()
            try:
                vm.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def _vm_output(self, stream: Any) -> None:
        while True:
            try:
                data = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            except (OSError, ValueError):
                return
            if not data:
                return
            self._emit_console(data)

    def _emit_console(self, data: bytes) -> None:
        with self._lock:
            # A board's console driver sends each LF the firmware prints as CR LF (a terminal
            # would draw a staircase otherwise); the VM's stdout is a plain pipe, so do it here.
            start = 1 if self._out_cr and data[:1] == b"\n" else 0  # its CR ended the last chunk
            data = data[:start] + _BARE_LF.sub(b"\r\n", data[start:])
            self._out_cr = data.endswith(b"\r")
            self.console_tail += data
            del self.console_tail[:-65536]
        for chunk in paced(self._console_out, data):
            # nobody attached: after 0.2 s the oldest output is dropped, the VM is never held up
            write_all(self.console.master, chunk, give_up_s=0.2, on_full=self.console.drain_input)

    def _console_in(self) -> None:
        fd = self.console.master
        while not self._quit.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            for chunk in paced(self._console_in_pacer, data):
                self._to_vm(chunk)

    def _to_vm(self, data: bytes) -> None:
        with self._lock:
            vm, st = self.vm, self.vm_state
        if vm is None or vm.stdin is None:
            return  # powered off: the keystrokes go nowhere
        start = 0
        for i, b in enumerate(data):
            if b == 3 and st == "booting":
                # Ctrl-C while the VM is still starting: a board would take it as soon as
                # boot.py/main.py run, so interrupt them when they do (the byte goes on too).
                with self._lock:
                    self._pending_intr = time.monotonic()
            if b == 3 and st == "R":
                self._vm_write(vm, data[start:i])
                start = i + 1
                try:
                    vm.send_signal(signal.SIGINT)
                except OSError:
                    pass
        self._vm_write(vm, data[start:])

    @staticmethod
    def _vm_write(vm: subprocess.Popen[bytes], data: bytes) -> None:
        if data and vm.stdin is not None:
            try:
                vm.stdin.write(data)
            except (OSError, ValueError):
                pass

    def _read_state(self) -> None:
        while not self._quit.is_set():
            ready, _, _ = select.select([self._state_fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(self._state_fd, 256)
            except BlockingIOError:
                continue
            with self._lock:
                for b in data:
                    self.vm_state = chr(b)
                    if b == ord("R") and time.monotonic() - self._pending_intr < 3.0:
                        self._pending_intr = 0.0
                        if self.vm is not None:
                            try:
                                self.vm.send_signal(signal.SIGINT)
                            except OSError:
                                pass
                    elif b == ord("I"):
                        self._pending_intr = 0.0
                    if b == ord("P"):
                        self._want = "off"
                        self._log_event("power", "flash lost power: VM stopped")
                self._wake.notify_all()
            if b"P" in data:
                self._kill_vm()

    def _read_events(self) -> None:
        pending = b""
        while not self._quit.is_set():
            ready, _, _ = select.select([self._events_fd], [], [], 0.5)
            if not ready:
                continue
            try:
                pending += os.read(self._events_fd, 4096)
            except BlockingIOError:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                kind, _, rest = line.decode(errors="replace").strip().partition(" ")
                if kind:
                    self._log_event(kind, rest)

    def _log_event(self, kind: str, value: str) -> None:
        ev = {"t": round(time.time(), 3), "kind": kind, "value": value}
        with self._lock:
            self.events.append(ev)
        self.events_log.write(json.dumps(ev) + "\n")

    # --- peripherals ---

    def scan(self, code: str, symbology: str | None = None, suffix: str = "\r", misread: float = 0.0) -> str:
        """Type `code` on the scanner UART as a scan engine does: its AIM symbology identifier (by
        default the one this code is printed in: GS1-128 `]C1` for a GS1 element string, all
        digits; Code 128 `]C0` otherwise, as S10 labels are), the data, then `suffix`."""
        if symbology is None:
            symbology = "]C1" if code.isdigit() else "]C0"
        data = code
        if misread and self.rng.random() < misread and code:
            i = self.rng.randrange(len(code))
            data = code[:i] + chr(((ord(code[i]) - 32 + 1 + self.rng.randrange(90)) % 95) + 32) + code[i + 1:]
        line = (symbology or "") + data + suffix
        os.write(self.uarts["scanner"].master, line.encode("latin-1"))
        return data

    def key(self, name: str) -> None:
        if name not in self.board["keys"]:
            raise ValueError(f"unknown key {name!r} (board has {sorted(self.board['keys'])})")
        os.write(self.uarts["keys"].master, name.encode() + b"\n")
        self._settle("keys")

    def gnss_lines(self, lines: list[str]) -> None:
        os.write(self.uarts["gnss"].master, "".join(line + "\r\n" for line in lines).encode("ascii"))
        self._settle("gnss")

    def _settle(self, uart: str) -> None:
        """While the firmware runs, return once it has read what was just written: a key pressed or
        a fix sent before a scan is then handled before that scan, as a carrier's eyes would have
        ensured (the key and scanner lines are separate UARTs, read by separate tasks)."""
        with self._lock:
            running = self.vm is not None and self.vm_state == "R"
        if running:
            self.uarts[uart].wait_read(timeout=5.0)

    def gnss_feed(self, seconds: Iterator[tuple[Any, list[str]]], period: float = 1.0) -> None:
        """Play (t, [sentences]) groups at `period` seconds each (1 Hz receiver cadence)."""
        self.gnss_stop()
        self._gnss_stop = stop = threading.Event()

        def run() -> None:
            due = time.monotonic()
            for _, lines in seconds:
                if stop.is_set():
                    return
                self.gnss_lines(lines)
                due += period
                if stop.wait(max(0.0, due - time.monotonic())):
                    return

        self._gnss_thread = threading.Thread(target=run, daemon=True)
        self._gnss_thread.start()

    def gnss_stop(self) -> None:
        self._gnss_stop.set()

    def set_battery(self, mv: int) -> None:
        # In place, fixed width: the VM keeps this file open and re-reads it from offset 0.
        mode = "r+b" if self.battery.exists() else "wb"
        with open(self.battery, mode) as f:
            f.write(f"{int(mv):>15}\n".encode())

    def screenshot(self, out: str | os.PathLike, scale: int = 2) -> dict[str, Any]:
        from sim.screenshot import render

        size = render(self.screen.read_bytes(), self.width, self.height, out, scale)
        return {"path": str(out), "width": size[0], "height": size[1]}

    # --- power ---

    def power_cut(self, after_writes: int | None = None, ooo: bool = False) -> None:
        if after_writes is None:
            with self._lock:
                self._want = "off"
            self._kill_vm()  # writes are unbuffered in the VM: the image is what the chip holds
            self._log_event("power", "cut now")
            return
        self._power_gen += 1
        cmd = f"{self._power_gen} {int(after_writes)} {1 if ooo else 0}".encode()
        fd = os.open(self.power, os.O_WRONLY)
        try:
            os.pwrite(fd, cmd.ljust(32), 0)
        finally:
            os.close(fd)
        self._log_event("power", f"cut armed after {after_writes} writes ooo={ooo}")

    def power_on(self) -> None:
        with self._lock:
            if self.vm is None:
                self._want = "run"
                self._next_mode = "friendly"
                self._wake.notify_all()

    def reboot(self) -> None:
        """A hard reset (reset button): the VM dies and boots again from the same image."""
        with self._lock:
            running = self.vm is not None
            self._want = "reboot" if running else "run"
            self._next_mode = "friendly"
            self._wake.notify_all()
        if running:
            self._kill_vm()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"vm": "off" if self.vm is None else "on", "state": self.vm_state, "boots": self.boots,
                    "last_exit": self.last_exit, "dock": dict(self.dock.bytes)}

    def wear(self) -> dict[str, Any]:
        import array

        counts = array.array("I")
        try:
            counts.frombytes(Path(str(self.image) + ".wear").read_bytes())
        except (OSError, ValueError):
            pass
        return {"erases_total": sum(counts), "erases_max": max(counts, default=0),
                "blocks": len(counts)}

    # --- control socket ---

    def _serve_control(self) -> None:
        try:
            os.unlink(self.control_path)
        except OSError:
            pass
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.control_path)
        srv.listen(8)
        self._server = srv
        while not self._quit.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for raw in f:
                try:
                    msg = json.loads(raw)
                    reply = {"ok": True} | (self.handle(msg) or {})
                except Exception as exc:  # a bad request must not take the device down
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                try:
                    f.write(json.dumps(reply).encode() + b"\n")
                    f.flush()
                except OSError:
                    return

    def handle(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        cmd = msg.get("cmd")
        if cmd == "info":
            return self.info()
        if cmd == "status":
            return self.status()
        if cmd == "scan":
            return {"sent": self.scan(msg["code"], msg.get("symbology"), msg.get("suffix", "\r"),
                                      float(msg.get("misread", 0.0)))}
        if cmd == "key":
            self.key(msg["name"])
            return None
        if cmd == "gnss":
            return self._gnss_cmd(msg)
        if cmd == "battery":
            self.set_battery(int(msg["mv"]))
            return None
        if cmd == "screenshot":
            return self.screenshot(msg["path"], int(msg.get("scale", 2)))
        if cmd == "events":
            with self._lock:
                return {"events": self.events[int(msg.get("since", 0)):]}
        if cmd == "console":
            with self._lock:
                return {"text": self.console_tail.decode(errors="replace")}
        if cmd == "power_cut":
            self.power_cut(None if msg.get("now") else msg.get("after_writes"), bool(msg.get("ooo")))
            return None
        if cmd == "power_on":
            self.power_on()
            return None
        if cmd == "reboot":
            self.reboot()
            return None
        if cmd == "dock_fault":
            self.dock.fault(msg.get("drop"), msg.get("flip"), msg.get("stall"), msg.get("unplug"))
            return {"dock": dict(self.dock.bytes)}
        if cmd == "wear":
            return self.wear()
        if cmd == "modem":
            if self.modem is None or not hasattr(self.modem, "control"):
                raise RuntimeError("no modem emulator attached")
            return self.modem.control(msg)
        if cmd == "stop":
            threading.Thread(target=self.shutdown, daemon=True).start()
            return None
        raise ValueError(f"unknown command {cmd!r}")

    def _gnss_cmd(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        from sim import gnss

        period = float(msg.get("period", 1.0))
        if msg.get("stop"):
            self.gnss_stop()
        elif "lines" in msg:
            self.gnss_lines(list(msg["lines"]))
        elif "replay" in msg:
            self.gnss_feed(gnss.replay(msg["replay"]), period)
        elif "walk" in msg:
            spec = dict(msg["walk"])
            points = [tuple(p) for p in spec.pop("waypoints")]
            # the receiver's clock is the world's: UTC now, or a unix time the caller gives
            t0 = spec.pop("start", None)
            spec["start"] = datetime.datetime.fromtimestamp(int(t0 if t0 is not None else time.time()),
                                                            datetime.UTC)
            if isinstance(spec.get("conditions"), dict):
                cond = dict(spec["conditions"])
                for k in ("canyon", "indoor"):
                    if k in cond:
                        cond[k] = [tuple(iv) for iv in cond[k]]
                spec["conditions"] = gnss.Conditions(**cond)
            self.gnss_feed(iter(gnss.walk(points, **spec)), period)
        else:
            raise ValueError("gnss needs lines, replay, walk or stop")
        return None


def run_device(image: str, board: str = "sim", heap: str = "256K", workdir: str | None = None,
               seed: int | None = None, console_baud: int = 0) -> int:
    dev = VirtualDevice(image, board, heap, workdir, seed, console_baud)
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    dev.start()
    sys.stdout.write(json.dumps(dev.info()) + "\n")
    sys.stdout.flush()
    while not done.is_set() and not dev._quit.is_set():
        done.wait(0.5)
    dev.shutdown()
    return 0
