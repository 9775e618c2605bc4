"""The virtual handheld: one `micropython` VM running the boot shim (sim/vm/shim.py) on an emulated
flash image, wired to ptys and pipes that play its peripherals, driven through a control socket.

    console   pty: the USB console (REPL, raw REPL, mpremote): sim/console.py.
    dock      pty pair: the VM opens one side, the depot the other; a pump between them enforces
              the board's baud rate (8N1: baud/10 bytes/s) and injects drops, bit flips, stalls and
              unplugs (sim/links.py).
    gnss, scanner, modem, keys   ptys whose far side the VM opens through hal.
    screen    a file holding the firmware's MONO_HLSB framebuffer (hal display().show()).
    events    a FIFO of buzzer/LED lines from hal, stamped here with host time (sim/relays.py).
    battery   a file with millivolts that hal reads.

The VM's life (boot, soft resets, power cuts, the reset button) is sim/vmsupervisor.py; the
control socket and its commands are sim/control.py. This module wires them to one image.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import runpy
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from host_tools.errors import DepotError
from sim import mpy
from sim.console import Console
from sim.control import ControlServer
from sim.links import DockLink, Pty
from sim.relays import Events, open_fifo, read_state
from sim.vmsupervisor import Supervisor

VM_DIR = Path(__file__).resolve().parent / "vm"
_POWER_BLANK = b" " * 32


def heap_bytes(heap: str) -> int:
    """`--heap` (256K, 1M, 196608) in bytes."""
    mult = {"k": 1024, "m": 1024 * 1024}.get(heap[-1].lower(), 1)
    return int(heap[:-1] if mult > 1 else heap) * mult


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
        self.board_name = board
        self.board = load_board(board)
        self.heap = heap
        self.rng = random.Random(seed)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="simdev-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
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
        self._state_fd = open_fifo(self.state_fifo)
        self.events = Events(self.events_fifo, self.workdir / "events.log")
        # The ROMFS partition (sim/vm/romdev.py) is the shim's first allocation: the VM's heap is the
        # board's plus the partition (and its share of the GC's tables), so `heap` is left above it.
        self.romfs = self.board.get("romfs") or None
        self.romfs_image = Path(str(self.image) + ".romfs")
        self.rom_fault = self.workdir / "romfault"
        self.rom_fault.write_bytes(b"")
        vm_heap = heap_bytes(heap) + (mpy.heap_for_flash(int(self.romfs["bytes"])) if self.romfs else 0)
        self.vm = Supervisor([mpy.micropython_exe(), "-X", f"heapsize={vm_heap}", str(VM_DIR / "shim.py")],
                             self.workdir, self._env, self._before_boot, self._output)
        self.console = Console(self.vm, console_baud)
        self._gnss_stop = threading.Event()
        self._gnss_thread: threading.Thread | None = None
        self.control_path = str(self.workdir / "control.sock")
        self.control = ControlServer(self.control_path, self)
        self.modem: Any = None
        self._quit = threading.Event()

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
            "romfs": str(self.romfs_image) if self.romfs else None,  # the ROMFS partition's file
            "uart": {name: p.path for name, p in self.uarts.items()} | {"dock": self.dock.device.path},
            "screen": str(self.screen),
        }

    def start(self) -> None:
        self._attach_modem()
        self.control.listen()  # before the start-up line names the socket: attach() works at once
        for target, args in ((self.console.relay_input, (self._quit,)),
                             (read_state, (self._state_fd, self._quit, self._state_reported)),
                             (self.events.read, (self._quit,)), (self.vm.run, ()),
                             (self.control.serve, (self._quit,))):
            threading.Thread(target=target, args=args, daemon=True).start()

    def _attach_modem(self) -> None:
        """The modem emulator (sim/modem_emulator.py) takes the host side of the modem UART:
        `sim.modem_emulator.attach(fd, board, workdir)` returning an object with optional `control(msg)`
        and `close()`. Without it the modem UART stays silent, like a modem that is switched off."""
        try:
            import sim.modem_emulator as modem_mod  # type: ignore[import-not-found]
        except ImportError:
            return
        attach = getattr(modem_mod, "attach", None)
        if attach is not None:
            try:
                self.modem = attach(self.uarts["modem"].master, self.board, str(self.workdir))
            except Exception as exc:  # the handheld still boots without its modem
                self.events.add("modem", f"attach failed: {exc}")

    def wait(self) -> None:
        self._quit.wait()

    def shutdown(self) -> None:
        self.vm.quit()
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
        self.control.close()
        os.close(self._image_lock)
        self._quit.set()

    # --- the VM's surroundings ---

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
        if self.romfs:
            env.update({"SIM_ROMFS": str(self.romfs_image), "SIM_ROMFS_BYTES": str(self.romfs["bytes"]),
                        "SIM_ROMFS_BLOCK": str(self.romfs.get("block_size", 4096)),
                        "SIM_ROM_FAULT": str(self.rom_fault)})
        return env

    def _before_boot(self) -> None:
        """Power-on: no cut armed, and every UART's receive FIFO empty."""
        self.power.write_bytes(_POWER_BLANK)
        for p in self.uarts.values():
            p.drain_input()
        self.dock.device.drain_input()

    def _output(self, data: bytes) -> None:
        self.console.emit(data)

    def _state_reported(self, codes: bytes) -> None:
        if self.vm.reported(codes):
            self.events.pump()  # the beeps it played before its flash died come first
            self.events.add("power", "flash lost power: VM stopped")
            self.vm.kill()

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
        self.uarts[uart].wait_read(timeout=5.0, reading=self.vm.running_user_code)

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

    def screen_text(self) -> list[str]:
        """The screen's rows as the carrier reads them (sim/screentext.py)."""
        from sim import screentext

        return screentext.rows(self.screen.read_bytes(), self.width, self.height)

    def screenshot(self, out: str | os.PathLike, scale: int = 2) -> dict[str, Any]:
        from sim.screenshot import render

        size = render(self.screen.read_bytes(), self.width, self.height, out, scale)
        return {"path": str(out), "width": size[0], "height": size[1]}

    # --- power ---

    def power_cut(self, after_writes: int | None = None, ooo: bool = False) -> None:
        if after_writes is None:
            self.vm.power_off()
            self.events.pump()  # what the VM played before it died, then the cut
            self.events.add("power", "cut now")
            return
        self._power_gen += 1
        cmd = f"{self._power_gen} {int(after_writes)} {1 if ooo else 0}".encode()
        fd = os.open(self.power, os.O_WRONLY)
        try:
            os.pwrite(fd, cmd.ljust(32), 0)
        finally:
            os.close(fd)
        self.events.add("power", f"cut armed after {after_writes} writes ooo={ooo}")

    def power_on(self) -> None:
        self.vm.power_on()

    def reboot(self) -> None:
        self.vm.reboot()

    def status(self) -> dict[str, Any]:
        return self.vm.status() | {"dock": dict(self.dock.bytes)}

    def rom_stuck_byte(self, offset: int | None) -> None:
        """A worn cell in the ROMFS partition: the byte at `offset` no longer programs (None: healed)."""
        if not self.romfs:
            raise ValueError(f"board {self.board_name} has no ROMFS partition")
        fd = os.open(self.rom_fault, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, b"" if offset is None else str(int(offset)).encode())
        finally:
            os.close(fd)

    def wear(self) -> dict[str, Any]:
        import array

        counts = array.array("I")
        try:
            counts.frombytes(Path(str(self.image) + ".wear").read_bytes())
        except (OSError, ValueError):
            pass
        return {"erases_total": sum(counts), "erases_max": max(counts, default=0),
                "blocks": len(counts)}


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
