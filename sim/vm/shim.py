"""Boot shim of the virtual handheld: what a board's C `main()` does, in MicroPython.

Run by `python -m sim device` as `micropython -X heapsize=N shim.py` with MICROPYPATH giving
the boards package, flashdev.py and simhw.py. It mounts littlefs from the emulated flash (the image
file) at "/", runs /boot.py and /main.py from it, then serves the REPL on stdin/stdout, which the
device process relays to the console pty.

The REPL itself is sim/vm/repl.py (pyexec.c's friendly and raw REPLs, in MicroPython).

Talks to the device process through:
  exit status  3 = soft reboot into the friendly REPL (runs main.py), 4 = into the raw REPL
               (main.py skipped, as on a board), 0 = console closed;
  SIM_STATE    a FIFO: b"R" running user code (a console Ctrl-C becomes SIGINT, which the unix
               port raises as KeyboardInterrupt), b"I" idle in the REPL (Ctrl-C is a byte),
               b"X" leaving, b"P" the flash lost power (the device kills the VM);
  SIM_POWER    a small file the flash reads before each block write: "<gen> <n> <ooo>", a new
               generation arms a power cut after n more block writes;
  SIM_ROMFS    the ROMFS partition's file (with SIM_ROMFS_BYTES, SIM_ROMFS_BLOCK, SIM_ROM_FAULT),
               for a board that has one: sim/vm/romdev.py, mounted at /rom.
"""

import os

# The board's ROMFS partition, first of all: nothing else is on the heap yet but this script's own
# bytecode, so the partition sits below everything the firmware allocates and never moves, as a
# board's memory-mapped flash sits outside its heap (sim/vm/romdev.py).
_rom_bytes = int(os.getenv("SIM_ROMFS_BYTES") or 0)
_rom_mem = bytearray(_rom_bytes) if _rom_bytes else None

import sys  # noqa: E402
import time  # noqa: E402

import repl  # type: ignore  # noqa: E402  # sim/vm on MICROPYPATH
import simhw  # type: ignore  # noqa: E402
import vfs  # type: ignore  # noqa: E402  # MicroPython
from flashdev import FlashDevice  # type: ignore  # noqa: E402


class SimFlash(FlashDevice):
    """The flash chip plus the device process's power switch and a wear log on the host."""

    def __init__(self, block_size, block_count, path, power_path, wear_path):
        super().__init__(block_size, block_count, path)
        self._cmd = bytearray(32)
        self._seen = bytearray(b" " * 32)  # the device process blanks the file before each boot
        self._power = open(power_path, "rb") if power_path else None
        self._wear_f = None
        if wear_path:
            self.load_wear(wear_path)
            try:
                self._wear_f = open(wear_path, "r+b")
            except OSError:
                self._wear_f = open(wear_path, "w+b")

    def _poll_power(self):
        # Read in place: a block write must not allocate (the firmware's heap figures include it).
        if self._power is None:
            return
        self._power.seek(0)
        self._power.readinto(self._cmd)
        if self._cmd != self._seen:
            self._seen[:] = self._cmd
            parts = bytes(self._cmd).split()
            if len(parts) >= 3:
                self.cut_after_writes(int(parts[1]), ooo=parts[2] == b"1")

    def _check_alive(self):
        if not self.powered:
            repl.state(b"P")
            while True:  # the CPU died with the chip: nothing after the cut may run
                try:
                    time.sleep(1)
                except KeyboardInterrupt:
                    pass

    def writeblocks(self, n, buf, off=None):
        self._poll_power()
        super().writeblocks(n, buf, off)
        self._check_alive()

    def ioctl(self, op, arg):
        if op == 6:
            self._poll_power()
        r = super().ioctl(op, arg)
        self._check_alive()
        if op == 3 and self._wear_f is not None:
            self._wear_f.seek(0)
            self._wear_f.write(self.wear)
        return r


def mount(dev, image):
    """Mount littlefs at "/"; format only a blank (factory) chip. Returns an error string or None."""
    blank = True
    buf = bytearray(256)
    for blk in (0, 1):
        for off in range(0, dev.block_size, 256):
            dev.readblocks(blk, buf, off)
            if buf != b"\xff" * 256:
                blank = False
                break
        if not blank:
            break
    if blank:
        print("sim: blank flash, formatting littlefs (factory state)")
        vfs.VfsLfs2.mkfs(dev)
    try:
        fs = vfs.VfsLfs2(dev)
    except OSError as e:
        return "littlefs mount failed on %s (%r): NOT reformatting, image kept" % (image, e)
    vfs.umount("/")  # the unix port's host filesystem: a device sees only its flash
    vfs.mount(fs, "/")
    os.chdir("/")
    return None


def run_file(path, ns):
    """Run a file from the flash like pyexec_file: False only when it raised."""
    try:
        with open(path, "rb") as f:
            src = f.read()
    except OSError:
        return True
    return repl.execute(src, ns, False, path)


def main():
    board_name = os.getenv("SIM_BOARD") or "sim"
    mod = "board_" + board_name.replace("-", "_")
    board = getattr(__import__("boards." + mod), mod).BOARD
    simhw.board = board
    image = os.getenv("SIM_FLASH")
    mode = repl.RAW if os.getenv("SIM_BOOT_MODE") == "raw" else repl.FRIENDLY
    sp = os.getenv("SIM_STATE")
    if sp:
        repl.open_state(sp)
    simhw.preopen()
    fl = board["flash"]
    dev = SimFlash(fl["block_size"], fl["block_count"], image, os.getenv("SIM_POWER"),
                   image + ".wear" if image else None)
    rom = romdev = None
    if _rom_mem is not None:  # opened while the host's filesystem is still mounted
        import romdev  # type: ignore  # only where the board has a partition (2.9 KB of heap)

        rom = romdev.Partition(_rom_mem, os.getenv("SIM_ROMFS"), int(os.getenv("SIM_ROMFS_BLOCK") or 4096),
                               os.getenv("SIM_ROM_FAULT"))
    err = mount(dev, image)
    # As a MicroPython >= 1.25 board: ROMFS at /rom, and /rom, /rom/lib before /lib on sys.path, so
    # a firmware image in ROMFS wins over a copy on littlefs.
    if romdev is not None and romdev.install(rom):
        sys.path[:] = ["", ".frozen", "/rom", "/rom/lib", "/lib"]
    else:
        sys.path[:] = ["", ".frozen", "/lib"]
    ns = {"__name__": "__main__"}
    if err:
        repl.w(b"sim: " + err.encode() + b"\r\n")
    else:
        # As on a board: main.py only after a soft reset into the friendly REPL, and only when
        # boot.py did not fail (boot.py stops the boot on a storage fault this way).
        if run_file("boot.py", ns) and mode == repl.FRIENDLY:
            run_file("main.py", ns)
    repl.state(b"I")
    while True:
        try:
            if mode == repl.RAW:
                mode = repl.raw_repl(ns, dev)
            else:
                mode = repl.friendly_repl(ns, dev)
        except KeyboardInterrupt:
            repl.w(b"\r\n")


if __name__ == "__main__":
    main()
