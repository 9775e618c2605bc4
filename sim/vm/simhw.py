"""Host files the virtual handheld's boot shim opened for the firmware before it unmounted the
host filesystem.

A real device sees only its own flash at "/". The shim therefore opens every host-side channel
(UART ptys, key stream, screen, event pipe, battery file) while host paths are still reachable,
files them here by their environment variable name, and then mounts littlefs over "/". `hal`
asks this module first and falls back to opening the path itself when it runs without the shim
(the `mpy` test fixture).
"""

import os

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
board = None  # the board definition the device runs (`python -m sim device --board`)


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
