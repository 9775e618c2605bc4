"""The virtual handheld's ROMFS partition: a second emulated flash region, as a MicroPython >= 1.25
board has beside its littlefs one, exposed as `vfs.rom_ioctl` and mounted with `vfs.VfsRom` at /rom.

On a board the partition is memory-mapped flash: `vfs.rom_ioctl(2, 0)` is a memoryview of it and
the VM runs the .mpy bytecode it holds in place. Here it is a bytearray the boot shim allocates
before anything else (sim/vm/shim.py), so it sits below the heap the firmware sees and never moves;
the VM's `-X heapsize` is the board's heap plus the partition. The bytes live in a host file
(`<image>.romfs`), read at every boot and written through on every program, so the partition
survives reboots and power cuts as the littlefs image does.

It behaves as NOR flash: an erase (prepare) sets whole blocks to 0xFF, a write can only clear bits
(new = old & data), so a write over unerased bytes corrupts as it would on a chip. A stuck byte can
be armed (SIM_ROM_FAULT: a file holding an offset) to stand for a worn cell that no longer programs.

The unix port has `vfs.VfsRom` but no `vfs.rom_ioctl`: `install()` puts this module in
sys.modules['vfs'] with every name of the real one plus `rom_ioctl`, so `import vfs` (mpremote's
`romfs deploy`, `depot flash`) finds the ioctl as on a board. Ops as in MicroPython's ports:
1 partitions, 2 memoryview, 3 erase (prepare), 4 write, 5 write complete, 6 erase block size.
"""

import sys

import vfs as _vfs  # type: ignore  # MicroPython's own
from vfs import *  # type: ignore  # noqa: F401, F403  # the stand-in is vfs plus rom_ioctl

_EINVAL = 22
_MIN_WRITE = 4  # bytes a program must be a multiple of, as the ports answer prepare
_HEADER = b"\xd2\xcd\x31"  # ROMFS image signature (mpremote.romfs.VfsRomWriter)

_part = None


class Partition:
    def __init__(self, mem, path, block_size, fault_path=None):
        self.mem = mem  # the shim's first allocation: the "memory-mapped" flash
        self.size = len(mem)
        self.block_size = block_size
        self._fault = None
        self._fault_buf = bytearray(16)
        if fault_path:
            try:
                self._fault = open(fault_path, "rb")
            except OSError:
                pass
        try:
            f = open(path, "r+b")
        except OSError:
            f = open(path, "w+b")
        self._f = f
        n = f.readinto(mem)  # what the chip held at power-off
        k = n or 0
        while k < self.size:  # a new or short file: erased flash
            mem[k] = 0xFF
            k += 1
        if k != (n or 0):
            self._f.seek(0)
            self._f.write(mem)

    def holds_image(self):
        return bytes(self.mem[:3]) == _HEADER

    def _stuck(self):
        """The offset of a byte that no longer programs, or -1 (read at each write, as the power file)."""
        if self._fault is None:
            return -1
        self._fault.seek(0)
        n = self._fault.readinto(self._fault_buf)
        text = bytes(self._fault_buf[:n]).strip()
        return int(text) if text else -1

    def erase(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size:
            return -_EINVAL
        bs = self.block_size
        start = offset // bs * bs
        end = min(self.size, (offset + length + bs - 1) // bs * bs)
        blank = b"\xff" * bs
        pos = start
        while pos < end:
            self.mem[pos: pos + bs] = blank
            self._f.seek(pos)
            self._f.write(blank)
            pos += bs
        return _MIN_WRITE

    def program(self, offset, buf):
        n = len(buf)
        if offset < 0 or offset + n > self.size:
            return -_EINVAL
        mem = self.mem
        stuck = self._stuck()
        i = 0
        while i < n:
            if offset + i != stuck:
                mem[offset + i] &= buf[i]
            i += 1
        self._f.seek(offset)
        self._f.write(memoryview(mem)[offset: offset + n])
        return 0

    def ioctl(self, op, args):
        if op == 1:
            return 1
        if not args or args[0] != 0:
            return -_EINVAL
        if op == 2:
            return memoryview(self.mem)
        if op == 3:  # (id, length) erases from 0; (id, offset, length) a range
            if len(args) == 2:
                return self.erase(0, args[1])
            if len(args) == 3:
                return self.erase(args[1], args[2])
            return -_EINVAL
        if op == 4 and len(args) == 3:
            return self.program(args[1], args[2])
        if op == 5:
            return 0  # written through already
        if op == 6:
            return self.block_size
        return -_EINVAL


def rom_ioctl(op, *args):
    if _part is None:
        return 0 if op == 1 else -_EINVAL
    return _part.ioctl(op, args)


def install(partition):
    """Make `import vfs` find rom_ioctl, and mount the partition at /rom when it holds an image.
    True when mounted (the shim then puts /rom and /rom/lib on sys.path, before /lib)."""
    global _part
    _part = partition
    sys.modules["vfs"] = sys.modules[__name__]
    if not partition.holds_image():
        return False
    try:
        _vfs.mount(_vfs.VfsRom(memoryview(partition.mem)), "/rom")  # type: ignore[attr-defined]
    except OSError:  # a header but a broken image: boot from littlefs, as a board would
        return False
    return True
