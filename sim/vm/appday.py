"""A day of the real application on the VM, for the heap figure: `main.App` over a littlefs
flash, a route package of N stops, and a plan of GNSS lines, scans and keys read line by line.

Run by sim/app_heap.py with the firmware as .mpy on MICROPYPATH (as on a device: bytecode, not
source) and the dock and modem UARTs open on /dev/null, so their buffers are allocated too.
argv: image package plan device_id key_hex [romfs]. Prints one JSON line of figures.

With a romfs image the modules are imported from `vfs.VfsRom`, as from a board's ROMFS partition,
where the VM runs their bytecode in place. On a device that partition is memory-mapped flash; here
the image is the heap's first allocation, never freed, so the heap above it is the board's.

This file only mounts the image: the day itself is sim/vm/appdayrun.py, which the host puts in the
image beside the firmware, so its bytecode runs in place too (a board's main.py is two lines of
source; the day's driver compiled here would hold some 3 KB of heap a board does not spend).
"""

import os
import sys

import vfs  # type: ignore

rom_bytes = 0
if len(sys.argv) > 6:
    rom_bytes = os.stat(sys.argv[6])[6]
    rom = bytearray(rom_bytes)  # one block at the heap's start (read() would grow and move it)
    with open(sys.argv[6], "rb") as f:
        f.readinto(rom)
    vfs.mount(vfs.VfsRom(rom), "/rom")  # type: ignore[attr-defined]  # MicroPython >= 1.25
    sys.path.insert(0, "/rom")

import appdayrun  # type: ignore  # noqa: E402, F401  # from /rom when mounted, else MICROPYPATH
