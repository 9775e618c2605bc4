"""Emulated NOR flash chip for `vfs.VfsLfs2`, with power cuts and wear counters.

Runs inside MicroPython (the simulator's boot shim, the journal tests) and on CPython.
The image lives in a host file moved block by block with seek + readinto, so a 2 MiB chip never
sits in the firmware's heap; `path=None` keeps it in a RAM bytearray (tests only).

Power model: `cut_after_writes(n)` lets n more block writes (a program or an erase, one call each)
reach the chip; from the next one on, nothing persists, as when the battery drops mid-operation.
With `ooo=True` the cut also reverts the first block touched since the last sync (ioctl 3), while the
later unsynced writes stay: littlefs's own out-of-order (`OOO`) power-loss model, i.e. a chip or
cache that committed writes in another order than they were issued. Blocks are tracked from the
moment the cut is armed, so arm it before the operation under test (or at a sync).
`halt=True` raises PowerLost from the first dropped write, stopping the program there (in-process
tests); otherwise writes vanish silently and the caller watches `powered` (the simulator kills
the VM). `power_on()` is the next boot of the same chip.
"""

import array

# Plain ints (not const()): this module also runs on CPython under the host's type checker.
_IOCTL_INIT = 1
_IOCTL_DEINIT = 2
_IOCTL_SYNC = 3
_IOCTL_COUNT = 4
_IOCTL_SIZE = 5
_IOCTL_ERASE = 6

_NEVER = -1
_CHUNK = 256  # erase writes 0xFF in pieces this big


class PowerLost(Exception):
    """Raised on the first dropped write when the device was cut with `halt=True`:
    the CPU dies with the chip, so no code after the cut may run (no beep after a lost write)."""


def _zeros(n):
    # MicroPython builds an array from a buffer's raw bytes; CPython takes it item by item.
    a = array.array("I", bytes(4 * n))
    if len(a) != n:
        a = array.array("I", [0] * n)
    return a


class FlashDevice:
    def __init__(self, block_size, block_count, path=None, wear=True):
        self.block_size = block_size
        self.block_count = block_count
        self.path = path
        # Kept small: inside the simulator these live in the firmware's heap and skew its figures.
        self._blank = b"\xff" * (_CHUNK if block_size % _CHUNK == 0 else block_size)
        self._pre = None  # pre-image of the first block written since sync; allocated for OOO only
        self._pre_block = _NEVER
        self._left = _NEVER  # writes still allowed before the cut; _NEVER: no cut armed
        self._ooo = False
        self._halt = False
        self.powered = True
        self.writes = 0
        self.programmed_bytes = 0
        self.erased_blocks = 0
        self.reverts = 0  # OOO cuts that reverted a block (tests check the model was exercised)
        # erases per block (4 bytes each: 2 KB for a 2 MiB chip); wear=False: none, for a heap
        # figure that should hold only what a board's heap holds (sim/vm/appday.py)
        self.wear = _zeros(block_count) if wear else None
        self._f = None
        if path is None:
            self.image = bytearray(block_size * block_count)
            k = 0
            while k < block_count:
                self._fill(k * block_size)
                k += 1
        else:
            self.image = bytearray(0)
            try:
                self._f = open(path, "r+b")
            except OSError:
                self._f = open(path, "w+b")
            self._f.seek(0, 2)
            size = self._f.tell()
            # Grow a new or short image with erased blocks, one block at a time.
            while size < block_size * block_count:
                self._f.write(self._blank)
                size += len(self._blank)
            self._f.flush()

    # --- block protocol used by vfs.VfsLfs2 ---

    def readblocks(self, n, buf, off=0):
        self._get(n * self.block_size + off, buf)

    def writeblocks(self, n, buf, off=None):
        if off is None:
            # Simple protocol: whole blocks, erase implied.
            k = 0
            while k < len(buf) // self.block_size:
                if not self._erase(n + k, False):
                    return
                k += 1
            off = 0
        if not self._tick(n):
            return
        self._put(n * self.block_size + off, buf)
        self.programmed_bytes += len(buf)

    def ioctl(self, op, arg):
        if op == _IOCTL_COUNT:
            return self.block_count
        if op == _IOCTL_SIZE:
            return self.block_size
        if op == _IOCTL_ERASE:
            self._erase(arg, True)
            return 0
        if op == _IOCTL_SYNC:
            if self.powered:
                self._pre_block = _NEVER  # everything before this sync is on the chip for good
                if self._f is not None:
                    self._f.flush()
            return 0
        if op == _IOCTL_INIT or op == _IOCTL_DEINIT:
            return 0
        return None

    # --- power and wear ---

    def cut_after_writes(self, n, ooo=False, halt=False):
        """Let `n` more block writes persist, then lose power (see the module doc)."""
        self._left = n
        self._ooo = ooo
        if ooo and self._pre is None:
            self._pre = bytearray(self.block_size)
        self._halt = halt
        if n <= 0:
            self._cut()

    def power_on(self):
        """A fresh boot of the same chip: writes persist again; the cut is disarmed."""
        self.powered = True
        self._left = _NEVER
        self._pre_block = _NEVER

    def restore(self, data):
        """RAM device: load a saved image (e.g. a pristine copy per power-cut trial) and power on."""
        self.image[:] = data
        self.power_on()

    def close(self):
        if self._f is not None:
            self._f.flush()
            self._f.close()
            self._f = None

    def save_wear(self, path):
        with open(path, "wb") as f:
            f.write(self.wear)

    def load_wear(self, path):
        try:
            with open(path, "rb") as f:
                f.readinto(self.wear)
        except OSError:
            pass  # no history yet: a new chip

    # --- internals ---

    def _erase(self, n, count_op):
        if count_op and not self._tick(n):
            return False
        self._fill(n * self.block_size)
        self.erased_blocks += 1
        if self.wear is not None:
            self.wear[n] += 1
        return True

    def _tick(self, block):
        """Count one block write; return False when it must not reach the chip."""
        if not self.powered:
            return self._dead()
        if self._left == 0:
            self._cut()
            return self._dead()
        if self._left > 0:
            self._left -= 1
        self.writes += 1
        if self._ooo and self._pre_block == _NEVER and self._pre is not None:
            self._pre_block = block
            self._get(block * self.block_size, self._pre)
        return True

    def _dead(self):
        if self._halt:
            self._halt = False  # only once: cleanup after the cut (closing files) then runs harmlessly
            raise PowerLost()
        return False

    def _cut(self):
        self.powered = False
        if self._ooo and self._pre_block != _NEVER and self._pre is not None:
            self._put(self._pre_block * self.block_size, self._pre)
            self.reverts += 1
        self._pre_block = _NEVER
        if self._f is not None:
            self._f.flush()

    def _fill(self, pos):
        end = pos + self.block_size
        while pos < end:
            self._put(pos, self._blank)
            pos += len(self._blank)

    def _put(self, pos, data):
        if self._f is None:
            self.image[pos: pos + len(data)] = data
        else:
            self._f.seek(pos)
            self._f.write(data)

    def _get(self, pos, buf):
        if self._f is None:
            try:
                buf[:] = memoryview(self.image)[pos: pos + len(buf)]
            except MemoryError:
                # Heap locked: a GC finalizer closing a file left open at a power cut. Byte copy.
                img = self.image
                i = 0
                n = len(buf)
                while i < n:
                    buf[i] = img[pos + i]
                    i += 1
        else:
            self._f.seek(pos)
            self._f.readinto(buf)
