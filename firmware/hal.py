"""Hardware boundary. Everything board-specific is read from the board definition (`board.py`
on the device, `boards/<name>.py` in the repo); the rest of the firmware talks only to this module.

On a microcontroller the peripherals are machine.UART/Pin/PWM/SPI. On the unix port (the simulator,
tests) they come from the simulator's module simhw (sim/vm/simhw.py), which never ships to a device.
"""

import sys
import time

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

UNIX = sys.platform in ("linux", "darwin")
_EPOCH_OFFSET = const(946684800)  # 2000-01-01 in unix seconds: MCU ports count from 2000

_board = None
_display = None
_kept = None  # (buzzer pin, LED pin, battery ADC pin, divider): all the running app reads of the board


def _sim():
    """The simulator's peripherals on the unix port, as `machine` is a board's."""
    import simhw  # type: ignore  # sim/vm/ on the VM's path

    return simhw


def board(name=None):
    """The board definition dict. `name` ("sim", "esp32s3-sim7600", ...) selects boards/board_<name>.py
    (tests, simulator); otherwise the device's own firmware/board.py."""
    global _board
    if name is not None:
        mod = "board_" + name.replace("-", "_")
        _board = getattr(__import__("boards." + mod), mod).BOARD
    elif _board is None:
        try:
            from firmware import board as b  # type: ignore  # written to /lib/firmware/ by `depot flash`

            _board = b.BOARD
        except ImportError:
            _board = _sim_board()
    return _board


def _kept_pins():
    global _kept
    if _kept is None:
        b = board()
        _kept = (b["buzzer"]["pin"], b["led"]["pin"], b["battery"]["adc_pin"], b["battery"]["divider"])
    return _kept


def release_board():
    """Drop the board definition (1.6 KB of nested dicts on the heap) once the app has opened what
    it describes; the pins the buzzer, LED and battery read stay kept, and board() reads it again
    if asked."""
    global _board
    _kept_pins()
    _board = None
    sys.modules.pop("firmware.board", None)
    pkg = sys.modules.get("firmware")
    if pkg is not None and hasattr(pkg, "board"):
        delattr(pkg, "board")


def _sim_board():
    """The unix port with no board.py flashed: the virtual handheld's board (`--board`), else sim."""
    try:
        b = _sim().board
        if b is not None:
            return b
    except ImportError:  # CPython
        pass
    from boards import board_sim

    return board_sim.BOARD


def open_uart(name):
    """A stream for the named UART (gnss, scanner, modem, dock): read/readinto/write, pollable."""
    cfg = board()["uart"][name]
    if UNIX:
        return _sim().uart("SIM_UART_" + name.upper())
    from machine import UART, Pin  # type: ignore[attr-defined]

    if cfg["id"] == "usb":
        return sys.stdin.buffer  # USB CDC: the dock shares the console's interface
    return UART(cfg["id"], baudrate=cfg["baud"], tx=Pin(cfg["tx"]), rx=Pin(cfg["rx"]),
                rxbuf=1024, timeout=0)


def time_s():
    """Wall clock, unix seconds (the dock sets it at the depot; GNSS corrects it in the field)."""
    if UNIX:
        return _sim().time_s()
    return int(time.time()) + _EPOCH_OFFSET


def set_time(unix_s):
    if UNIX:
        _sim().set_time(unix_s)
        return
    from machine import RTC  # type: ignore[attr-defined]

    tm = time.gmtime(unix_s - _EPOCH_OFFSET)
    RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))


def ticks_ms():
    return time.ticks_ms()  # type: ignore[attr-defined]


try:
    from io import IOBase as _IOBase
except ImportError:  # CPython without MicroPython's io
    _IOBase = object


# --- display ---


class Display:
    """The board's screen: draw on `.fb` (framebuf MONO_HLSB, 1 = lit pixel), then `show()`."""

    def __init__(self, cfg):
        import framebuf

        self.width = cfg["width"]
        self.height = cfg["height"]
        self.stride = (self.width + 7) // 8
        self.buf = bytearray(self.stride * self.height)
        self.fb = framebuf.FrameBuffer(self.buf, self.width, self.height, framebuf.MONO_HLSB)
        self._drv = None if UNIX else _SharpLS(cfg, self)

    def show(self):
        if self._drv is not None:
            self._drv.show()
            return
        _sim().show(self.buf)


class _SharpLS:
    """Sharp memory LCD over SPI (LS0xxB7 family): one line per transfer, data inverted (the panel
    shows 0 as black), and VCOM toggled on every update so the liquid crystal never sees DC."""

    def __init__(self, cfg, disp):
        from machine import SPI, Pin  # type: ignore[attr-defined]

        self.d = disp
        if "sck" in cfg:  # boards without fixed SPI pins (ESP32 GPIO matrix) name them
            self.spi = SPI(cfg["spi"], baudrate=2000000, polarity=0, phase=0,
                           sck=Pin(cfg["sck"]), mosi=Pin(cfg["mosi"]))
        else:
            self.spi = SPI(cfg["spi"], baudrate=2000000, polarity=0, phase=0)
        self.cs = Pin(cfg["cs"], Pin.OUT, value=0)
        self.line = bytearray(disp.stride + 2)  # address, pixels, trailer
        self.cmd = bytearray(1)
        self.vcom = 0

    def show(self):
        d = self.d
        self.vcom ^= 0x40
        self.cmd[0] = 0x80 | self.vcom  # write-line command, bit-reversed as the panel reads LSB first
        self.cs(1)
        self.spi.write(self.cmd)
        line = self.line
        y = 0
        while y < d.height:
            a = y + 1
            r = 0
            k = 0
            while k < 8:  # line addresses go out LSB first too
                r = (r << 1) | ((a >> k) & 1)
                k += 1
            line[0] = r
            base = y * d.stride
            x = 0
            while x < d.stride:
                line[1 + x] = d.buf[base + x] ^ 0xFF
                x += 1
            line[d.stride + 1] = 0
            self.spi.write(line)
            y += 1
        self.cmd[0] = 0
        self.spi.write(self.cmd)
        self.cs(0)


def display():
    """The board's display (one instance)."""
    global _display
    if _display is None:
        _display = Display(board()["display"])
    return _display


# --- buzzer and LED ---

# pattern -> (buzzer Hz, on/off durations in ms): a short chirp says "recorded", anything longer
# or lower asks the carrier to look at the screen
PATTERNS = {
    "ready": (3200, (40, 40, 40)),  # at power-up, once every task listens: scanning may start
    "ok": (2700, (80,)),
    "override": (2000, (80, 80, 80)),
    "warn": (1600, (200, 120, 200)),
    "invalid": (900, (120, 80, 120, 80, 120)),
    "error": (500, (500,)),
}
_pwm = None
_led_pin = None


async def _play(out, steps):
    import asyncio

    on = True
    for ms in steps:
        out(on)
        await asyncio.sleep_ms(ms)  # type: ignore[attr-defined]
        on = not on
    out(False)


def _start(out, pattern):
    import asyncio

    asyncio.create_task(_play(out, PATTERNS[pattern][1]))


def buzzer(pattern):
    """Sound a pattern (see PATTERNS) without blocking the caller."""
    global _pwm
    if pattern not in PATTERNS:
        pattern = "error"
    if UNIX:
        _sim().event("buzzer", pattern)
        return
    pin = _kept_pins()[0]
    if pin is None:
        return
    if _pwm is None:
        from machine import PWM, Pin  # type: ignore[attr-defined]

        _pwm = PWM(Pin(pin), freq=2000, duty_u16=0)
    pwm = _pwm
    pwm.freq(PATTERNS[pattern][0])
    _start(lambda on: pwm.duty_u16(32768 if on else 0), pattern)


def led(pattern):
    """Blink the status LED in a pattern (see PATTERNS)."""
    global _led_pin
    if pattern not in PATTERNS:
        pattern = "error"
    if UNIX:
        _sim().event("led", pattern)
        return
    pin = _kept_pins()[1]
    if pin is None:
        return
    if _led_pin is None:
        from machine import Pin  # type: ignore[attr-defined]

        _led_pin = Pin(pin, Pin.OUT, value=0)
    p = _led_pin
    _start(lambda on: p.value(1 if on else 0), pattern)


# --- keys ---


def open_keys():
    """A pollable stream of key names ("ok", "back", "up", "down"), one per line."""
    if UNIX:
        return _sim().uart("SIM_KEYS")
    return _Keys(board()["keys"])

_DEBOUNCE_MS = const(30)


class _Keys(_IOBase):  # type: ignore[misc]
    """Buttons (to ground, pulled up) as a stream asyncio can poll: each poll samples the pins and
    queues a line per debounced press."""

    def __init__(self, keys):
        from machine import Pin  # type: ignore[attr-defined]

        self.pins = [(name, Pin(num, Pin.IN, Pin.PULL_UP)) for name, num in keys.items()]
        self.down = [False] * len(self.pins)
        self.since = [ticks_ms()] * len(self.pins)
        self.queue = []

    def _sample(self):
        now = ticks_ms()
        i = 0
        for name, pin in self.pins:
            pressed = pin.value() == 0
            if pressed != self.down[i] and time.ticks_diff(now, self.since[i]) > _DEBOUNCE_MS:  # type: ignore
                self.down[i] = pressed
                self.since[i] = now
                if pressed and len(self.queue) < 8:
                    self.queue.append(name)
            i += 1

    def ioctl(self, req, arg):
        if req == 3:  # MP_STREAM_POLL
            self._sample()
            return arg & 1 if self.queue else 0  # readable when a press is queued
        return 0

    def readline(self):
        self._sample()
        if not self.queue:
            return b""
        return self.queue.pop(0).encode() + b"\n"

    def read(self, n=-1):
        return self.readline()


# --- battery ---


def battery_mv():
    """Battery voltage in millivolts (the simulator's is scripted through its control socket)."""
    if UNIX:
        return _sim().battery_mv()
    _, _, pin, divider = _kept_pins()
    from machine import ADC, Pin  # type: ignore[attr-defined]

    raw = ADC(Pin(pin)).read_u16()
    return raw * 3300 * divider // 65535


# --- storage ---


def remount_storage():
    """Unmount "/" and mount the same filesystem again, so littlefs starts from what is on flash
    (after it reported no space mid-commit). Every open file is gone: the caller reopens them.
    Returns an error message for the screen, or None."""
    import vfs  # type: ignore

    try:
        for fs, path in vfs.mount():  # type: ignore[call-arg]  # no arguments: the mount table
            if path == "/":
                vfs.umount("/")
                vfs.mount(fs, "/")
                return None
    except OSError as e:
        return "flash: remount failed (%s)" % e
    return "flash: nothing mounted at /"


def mount_storage():
    """Mount littlefs from the board's flash at "/". Never formats: a filesystem that fails to
    mount is left untouched for the depot to recover, and the error comes back as a message for
    the screen. None when mounted (or already mounted: the simulator's shim, a board's _boot.py)."""
    if UNIX:
        return None
    import vfs  # type: ignore

    try:
        if sys.platform == "rp2":
            import rp2  # type: ignore

            bdev = rp2.Flash()
        else:
            import esp32  # type: ignore

            parts = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
            if not parts:
                return "flash: no vfs partition"
            bdev = parts[0]
        fs = vfs.VfsLfs2(bdev)
    except OSError as e:
        return "flash: littlefs mount failed (%s); data kept for the depot" % e
    try:
        vfs.mount(fs, "/")
    except OSError as e:
        if e.args and e.args[0] == 1:  # EPERM: something is already mounted at "/"
            return None
        return "flash: mount failed (%s); data kept for the depot" % e
    return None
