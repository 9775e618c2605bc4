"""The virtual handheld's peripherals, as `machine` is a board's: firmware/hal.py asks this module
for them on the unix port (sim/vm/ is on the VM's MICROPYPATH), so none of it ships to a device.

Each peripheral is a host file the simulator names in an environment variable: a UART or the key
stream is a pty, the screen a framebuffer file, the buzzer and LED an event pipe, the battery a
small file. A real device sees only its own flash at "/", so the boot shim opens every channel
(preopen) while host paths are still reachable and then mounts littlefs over "/"; firmware run
straight on `micropython` (the `mpy` test fixture) has them opened here on first use.
"""

import os
import time

try:
    from io import IOBase as _IOBase
except ImportError:  # CPython (the journal tests load flashdev beside this module)
    _IOBase = object

# env var -> open mode; UART and key channels are ptys (bidirectional, pollable)
CHANNELS = (
    ("SIM_UART_GNSS", "r+b"),
    ("SIM_UART_SCANNER", "r+b"),
    ("SIM_UART_MODEM", "r+b"),
    ("SIM_UART_DOCK", "r+b"),
    ("SIM_KEYS", "r+b"),
    ("SIM_SCREEN", "r+b"),
    ("SIM_EVENTS", "wb"),
    ("SIM_BATTERY", "rb"),
)

streams = {}
board = None  # type: dict | None  # the board definition the device runs (`python -m sim device --board`)
clock_offset = 0  # set_time() shifts the VM's wall clock, never the host's
_uarts = {}


def preopen():
    for var, mode in CHANNELS:
        path = os.getenv(var)
        if path:
            try:
                streams[var] = open(path, mode)
            except OSError as e:
                print("sim: cannot open", var, path, e)


def get(var):
    return streams.get(var)


def channel(var, mode):
    """The host file named by env `var`: pre-opened by the shim, else opened now. None when the
    variable is unset."""
    f = streams.get(var)
    if f is None:
        path = os.getenv(var)  # type: ignore[attr-defined]
        if not path:
            return None
        f = streams[var] = open(path, mode)
    return f


class Uart(_IOBase):  # type: ignore[misc]
    """A simulator pty with a UART's read semantics. The unix port's read(n)/readinto(buf) on a
    file wait until the buffer is full; machine.UART returns what has arrived. So read byte by
    byte while poll says more is there (a handful of syscalls per scan line or NMEA sentence)."""

    def __init__(self, f):
        import select

        self.f = f
        self.p = select.poll()
        self.p.register(f, select.POLLIN)
        self.one = bytearray(1)

    def fileno(self):
        return self.f.fileno()

    def ioctl(self, req, arg):
        if req == 10:  # MP_STREAM_GET_FILENO: the unix poller then waits on the real fd
            return self.f.fileno()
        if req == 3:  # MP_STREAM_POLL
            return arg & 1 if self._ready() else 0
        return 0

    def _ready(self):
        for _ in self.p.ipoll(0):  # ipoll: no result list allocated per byte
            return True
        return False

    def readinto(self, buf, n=-1):
        if n < 0 or n > len(buf):
            n = len(buf)
        got = 0
        one = self.one
        while got < n and self._ready():
            if not self.f.readinto(one):
                break
            buf[got] = one[0]
            got += 1
        return got if got else None

    def read(self, n=-1):
        buf = bytearray(n if n > 0 else 256)
        got = self.readinto(buf)
        return bytes(buf[:got]) if got else None

    def readline(self):
        return self.f.readline()

    def write(self, data):
        return self.f.write(data)

    def close(self):
        self.f.close()


def uart(var):
    """The UART (or key stream) the simulator named in env `var`, one instance each; None if unset."""
    s = _uarts.get(var)
    if s is None:
        f = channel(var, "r+b")
        if f is None:
            return None
        s = _uarts[var] = Uart(f)
    return s


def show(buf):
    """The screen: the framebuffer goes to the host file as it is (the host reads it at once: the
    unix port does not buffer files)."""
    f = channel("SIM_SCREEN", "r+b")
    if f is not None:
        f.seek(0)
        f.write(buf)


def event(kind, pattern):
    """A buzzer or LED pattern, one line on the event pipe."""
    f = channel("SIM_EVENTS", "wb")
    if f is not None:
        f.write(kind + " " + pattern + "\n")  # unbuffered; flush() would fsync, EINVAL on a FIFO


def battery_mv():
    """The battery voltage the simulator scripts through its control socket (4000 without one)."""
    f = channel("SIM_BATTERY", "rb")
    if f is None:
        return 4000
    f.seek(0)
    try:
        return int(f.read(16))
    except ValueError:
        return 0


def time_s():
    return int(time.time()) + clock_offset


def set_time(unix_s):
    global clock_offset
    clock_offset = unix_s - int(time.time())
