"""The heap day (sim/vm/appdayrun.py) on the firmware as `depot flash --romfs` left it on a virtual
handheld: its ROMFS partition file, mounted at /rom as the device's boot shim mounts it
(sim/vm/romdev.py), the firmware imported from /rom/lib, bytecode run in place.

argv: image package plan device_id key_hex partition harness. Prints appdayrun's JSON line.
The partition file is read, never written.

Two allocations come first and stay for the run, standing for memory-mapped flash outside a
board's heap: the partition (as on the virtual handheld) and the harness, a second ROMFS image the
host builds of the day's driver and the simulator's hardware and flash driver (on a board, C code
in the firmware: none of it is the application's heap). `rom_bytes` is both, for appdayrun to
report; the VM's heap is the board's heap plus them.
"""

import os
import sys

import vfs  # type: ignore

_part = bytearray(os.stat(sys.argv[6])[6])  # first: the partition, as the shim allocates it
_harness = bytearray(os.stat(sys.argv[7])[6])
for _path, _mem in ((sys.argv[6], _part), (sys.argv[7], _harness)):
    with open(_path, "rb") as _f:
        _f.readinto(_mem)
whole_app = True  # appdayrun: every stream open and every task started, as main.run() does
rom_bytes = sum((len(m) + 31) // 32 * 32 for m in (_part, _harness))  # as the GC holds them
# Mounted as a board's C start-up mounts its partition (the shim's romdev.install, without the
# rom_ioctl stand-in the day does not use): /rom, then /rom and /rom/lib first on sys.path.
vfs.mount(vfs.VfsRom(_part), "/rom")  # type: ignore[attr-defined]
vfs.mount(vfs.VfsRom(_harness), "/harness")  # type: ignore[attr-defined]
sys.path[:0] = ["/rom", "/rom/lib", "/harness"]

import appdayrun  # type: ignore  # noqa: E402, F401  # from /harness
