"""The dock port (spec: docs/dock-protocol.md): one asyncio task parked on the dock stream.

A handheld spends its day undocked, so the session that answers a host (firmware/dock_session.py
with dock_wire, and dock_route_inbox for a route push: about 10 KB of RAM with its buffers) is
imported when a host's first bytes arrive and let go, modules and all, once the host has been
quiet for idle_ms or the line dropped; the next bytes load it again. What a session proved of the
host outlives it (see dock_session.Session.proof): a host that pauses a sync longer than idle_ms
goes on as before.
"""

import asyncio
import sys

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_IDLE_MS = const(10000)  # no byte from the host for this long (and no stream running): session over
_SESSION = ("firmware.dock_session", "firmware.dock_wire", "firmware.dock_route_inbox")


def make_raw(stream):
    """On the unix port the dock is a pty file: raw mode, and reads return what is there (VMIN=0)
    instead of waiting for the whole count, which would stall every task."""
    try:
        import termios  # type: ignore  # unix port only

        fd = stream.fileno()
        termios.setraw(fd)
        attrs = termios.tcgetattr(fd)
        attrs[6][6] = 0  # VMIN
        attrs[6][5] = 0  # VTIME
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (ImportError, AttributeError, OSError):
        pass  # a machine.UART opened with timeout=0 already behaves so


def _unload():
    """Forget the session's modules, so their code and constants go back to the heap."""
    pkg = sys.modules.get("firmware")
    for name in _SESSION:
        sys.modules.pop(name, None)
        short = name[9:]
        if pkg is not None and hasattr(pkg, short):
            delattr(pkg, short)


class Dock:
    """The arguments are the session's (dock_session.Session), kept here between sessions."""

    def __init__(self, stream, journal, device_id, key, route_dir="/route", status=None,
                 firmware="", board="", battery=None, set_time=None, window=8, route_max=1 << 20,
                 save_key=None, signer=None, idle_ms=_IDLE_MS, lender=None):
        self.s = stream
        self.key = key
        self._args = (journal, device_id, route_dir, status, firmware, board, battery, set_time,
                      window, route_max, save_key, signer, idle_ms, lender)
        self._rx = bytearray(256)  # the port's read buffer, lent to each session
        self.session = None  # the running dock_session.Session
        self._proof = None  # Session.proof() of the last session, for the next one
        self.no_memory = 0  # host bytes dropped for want of heap for a session

    @property
    def inbox(self):
        """The running session's route inbox (the app closes its file before a remount). Without a
        push under way no inbox file is open, and this port stands in with a close() that does nothing."""
        ses = self.session
        return ses.inbox if ses is not None and ses.inbox is not None else self

    def close(self):
        pass

    def _open(self):
        """A session for the host that just spoke, or None when the heap has no room for it (the
        bytes are dropped; the host repeats its request)."""
        j, dev, route_dir, status, fw, board, battery, set_time, window, route_max, save_key, signer, \
            idle_ms, lender = self._args
        try:
            from firmware import dock_session

            ses = dock_session.Session(self.s, j, dev, self.key, route_dir, status, fw, board, battery,
                                       set_time, window, route_max, save_key, signer, idle_ms, lender,
                                       self._rx)
        except MemoryError:
            _unload()
            self.no_memory += 1
            return None
        if self._proof is not None:
            ses.resume(self._proof)
        return ses

    async def run(self):
        make_raw(self.s)
        reader = asyncio.StreamReader(self.s)
        rxv = memoryview(self._rx)
        while True:
            try:
                n = await reader.readinto(rxv)  # type: ignore[attr-defined]
            except OSError:  # unplugged: wait for the line to come back
                await asyncio.sleep_ms(200)  # type: ignore[attr-defined]
                continue
            if not n:
                await asyncio.sleep_ms(50)  # type: ignore[attr-defined]  # a hung-up line: do not spin
                continue
            ses = self.session = self._open()
            if ses is None:
                continue
            try:
                await ses.serve(n)
            finally:
                self.key = ses.key  # rotated during the session, perhaps
                self._proof = ses.proof()
                self.session = ses = None
                _unload()
