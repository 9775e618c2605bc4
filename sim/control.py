"""The virtual handheld's control socket: JSON lines on a unix socket, one request
`{"cmd": NAME, ...}` per line, one reply `{"ok": true, ...}` or `{"ok": false, "error": ...}`.
COMMANDS maps each name to what it does to the device (docs/simulator.md lists them)."""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from sim.device import VirtualDevice

Reply = dict[str, Any] | None
Command: TypeAlias = "Callable[[VirtualDevice, dict[str, Any]], Any]"


def _scan(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
    return {"sent": dev.scan(m["code"], m.get("symbology"), m.get("suffix", "\r"),
                             float(m.get("misread", 0.0)))}


def _power_cut(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
    dev.power_cut(None if m.get("now") else m.get("after_writes"), bool(m.get("ooo")))
    return None


def _dock_fault(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
    dev.dock.fault(m.get("drop"), m.get("flip"), m.get("stall"), m.get("unplug"))
    return {"dock": dict(dev.dock.bytes)}


def _modem(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
    if dev.modem is None or not hasattr(dev.modem, "control"):
        raise RuntimeError("no modem emulator attached")
    return dev.modem.control(m)


def _stop(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
    threading.Thread(target=dev.shutdown, daemon=True).start()  # after this reply goes out
    return None


def _gnss(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
    from sim import gnss

    period = float(m.get("period", 1.0))
    if m.get("stop"):
        dev.gnss_stop()
    elif "lines" in m:
        dev.gnss_lines(list(m["lines"]))
    elif "replay" in m:
        dev.gnss_feed(gnss.replay(m["replay"]), period)
    elif "walk" in m:
        spec = dict(m["walk"])
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
        dev.gnss_feed(iter(gnss.walk(points, **spec)), period)
    else:
        raise ValueError("gnss needs lines, replay, walk or stop")
    return None


def _none(action: Command) -> Command:
    """A command whose reply is just {"ok": true}."""

    def run(dev: VirtualDevice, m: dict[str, Any]) -> Reply:
        action(dev, m)
        return None
    return run


COMMANDS: dict[str, Command] = {
    "info": lambda dev, m: dev.info(),
    "status": lambda dev, m: dev.status(),
    "scan": _scan,
    "key": _none(lambda dev, m: dev.key(m["name"])),
    "gnss": _gnss,
    "battery": _none(lambda dev, m: dev.set_battery(int(m["mv"]))),
    "screenshot": lambda dev, m: dev.screenshot(m["path"], int(m.get("scale", 2))),
    "screen": lambda dev, m: {"rows": dev.screen_text()},
    "events": lambda dev, m: {"events": dev.events.since(int(m.get("since", 0)))},
    "console": lambda dev, m: {"text": dev.console.text()},
    "power_cut": _power_cut,
    "power_on": _none(lambda dev, m: dev.vm.power_on()),
    "reboot": _none(lambda dev, m: dev.vm.reboot()),
    "dock_fault": _dock_fault,
    "wear": lambda dev, m: dev.wear(),
    "rom_fault": _none(lambda dev, m: dev.rom_stuck_byte(m.get("stuck_byte"))),
    "modem": _modem,
    "stop": _stop,
}


def handle(dev: VirtualDevice, msg: dict[str, Any]) -> Reply:
    cmd = msg.get("cmd")
    action = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if action is None:
        raise ValueError(f"unknown command {cmd!r}")
    return action(dev, msg)


class ControlServer:
    def __init__(self, path: str, dev: VirtualDevice) -> None:
        self.path = path
        self.dev = dev
        self._server: socket.socket | None = None

    def listen(self) -> None:
        """Bind the socket: once this returns, a client may connect (before the serving thread runs)."""
        try:
            os.unlink(self.path)
        except OSError:
            pass
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(self.path)
        srv.listen(8)
        self._server = srv

    def serve(self, quit: threading.Event) -> None:
        """The control thread: one more thread per connected client."""
        if self._server is None:
            self.listen()
        srv = self._server
        assert srv is not None
        while not quit.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for raw in f:
                try:
                    reply = {"ok": True} | (handle(self.dev, json.loads(raw)) or {})
                except Exception as exc:  # a bad request must not take the device down
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                try:
                    f.write(json.dumps(reply).encode() + b"\n")
                    f.flush()
                except OSError:
                    return

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
