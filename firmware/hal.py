"""Hardware boundary. Everything board-specific is read from the board definition (`board.py`
on the device, `boards/<name>.py` in the repo); the rest of the firmware talks only to this module.

On a microcontroller the peripherals are machine.UART/Pin/PWM/SPI. On the unix port (the simulator,
tests) each UART is a file the simulator opened for us, named by SIM_UART_<NAME> in the environment.
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
_clock_offset = 0  # set_time() on the unix port shifts the wall clock instead of the host's


def board(name=None):
    """The board definition dict. `name` ("sim", "esp32s3-sim7600", ...) selects boards/board_<name>.py
    (tests, simulator); otherwise the device's own board.py."""
    global _board
    if name is not None:
        _board = __import__("board_" + name.replace("-", "_")).BOARD
    elif _board is None:
        try:
            import board as b  # type: ignore  # copied to the device's /lib by `depot flash`
        except ImportError:
            import board_sim as b  # the unix port with nothing flashed: the simulator's board
        _board = b.BOARD
    return _board


def open_uart(name):
    """A stream for the named UART (gnss, scanner, modem, dock): read/readinto/write, pollable."""
    cfg = board()["uart"][name]
    if UNIX:
        import os

        path = os.getenv("SIM_UART_" + name.upper())
        if not path:
            return None
        return open(path, "r+b")
    from machine import UART, Pin  # type: ignore[attr-defined]

    if cfg["id"] == "usb":
        return sys.stdin.buffer  # USB CDC: the dock shares the console's interface
    return UART(cfg["id"], baudrate=cfg["baud"], tx=Pin(cfg["tx"]), rx=Pin(cfg["rx"]),
                rxbuf=1024, timeout=0)


def time_s():
    """Wall clock, unix seconds (the dock sets it at the depot; GNSS corrects it in the field)."""
    t = int(time.time()) + _clock_offset
    return t if UNIX else t + _EPOCH_OFFSET


def set_time(unix_s):
    global _clock_offset
    if UNIX:
        _clock_offset = unix_s - int(time.time())
        return
    from machine import RTC  # type: ignore[attr-defined]

    tm = time.gmtime(unix_s - _EPOCH_OFFSET)
    RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))


def ticks_ms():
    return time.ticks_ms()  # type: ignore[attr-defined]
