"""Boot shim of the virtual handheld: what a board's C `main()` does, in MicroPython.

Run by `python -m sim device` as `micropython -X heapsize=N shim.py` with MICROPYPATH giving
board_<name>.py, flashdev.py and simhw.py. It mounts littlefs from the emulated flash (the image
file) at "/", runs /boot.py and /main.py from it, then serves the REPL on stdin/stdout, which the
device process relays to the console pty.

The REPL is written here rather than borrowed from the unix port because the unix port's REPL
cannot soft-reset (Ctrl-D exits the process) and ignores Ctrl-C bytes. Protocol kept byte-exact
with MicroPython's pyexec.c so that mpremote works unchanged: raw REPL (Ctrl-A), raw-paste with
its flow-control window, Ctrl-B, Ctrl-C, Ctrl-D soft reboot.

Talks to the device process through:
  exit status  3 = soft reboot into the friendly REPL (runs main.py), 4 = into the raw REPL
               (main.py skipped, as on a board), 0 = console closed;
  SIM_STATE    a FIFO: b"R" running user code (a console Ctrl-C becomes SIGINT, which the unix
               port raises as KeyboardInterrupt), b"I" idle in the REPL (Ctrl-C is a byte),
               b"X" leaving, b"P" the flash lost power (the device kills the VM);
  SIM_POWER    a small file the flash reads before each block write: "<gen> <n> <ooo>", a new
               generation arms a power cut after n more block writes.
"""

import os
import sys
import time

import simhw  # type: ignore  # sim/vm on MICROPYPATH
import vfs  # type: ignore  # MicroPython
from flashdev import FlashDevice  # type: ignore

_RAW = 4
_FRIENDLY = 3

_out = sys.stdout.buffer
_in = sys.stdin.buffer
_state = None
_one = bytearray(1)


def w(b):
    _out.write(b)


def state(code):
    if _state is not None:
        try:
            _state.write(code)
        except OSError:
            pass


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
            state(b"P")
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
    return execute(src, ns, False, path)


def execute(src, ns, raw, filename="<stdin>", single=False):
    try:
        try:
            state(b"R")  # inside the try: the Ctrl-C it invites may strike before it returns
            if not isinstance(src, str):
                src = bytes(src).decode()
            code = compile(src, filename, "single" if single else "exec")
            exec(code, ns)
        except SystemExit:
            pass
        except BaseException as e:  # KeyboardInterrupt too: Ctrl-C stops user code, not the REPL
            if raw:
                w(b"\x04")
            sys.print_exception(e)  # type: ignore[attr-defined]
            if raw:
                w(b"\x04")
            return False
        if raw:
            w(b"\x04\x04")
        return True
    finally:
        state(b"I")


def getc():
    while True:
        try:
            n = _in.readinto(_one)  # type: ignore[attr-defined]
        except KeyboardInterrupt:
            return 3  # a Ctrl-C that arrived as SIGINT just as we went idle
        if not n:
            state(b"X")
            sys.exit(0)
        return _one[0]


def soft_reboot(mode, dev):
    state(b"X")
    dev.close()
    w(b"MPY: soft reboot\r\n")
    sys.exit(mode)


def raw_paste(ns):
    window = 256
    w(b"R\x01")
    w(bytes((window & 255, window >> 8, 1)))
    remain = window
    src = bytearray()
    while True:
        c = getc()
        if c == 3 or c == 4:
            w(b"\x04")
            if c == 3:
                w(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: \r\n\x04")
                return
            break
        src.append(c)
        remain -= 1
        if remain == 0:
            w(b"\x01")
            remain = window
    execute(src, ns, True)


def raw_repl(ns, dev):
    w(b"raw REPL; CTRL-B to exit\r\n")
    while True:
        w(b">")
        line = bytearray()
        while True:
            c = getc()
            if c == 1:
                if len(line) == 2 and line[0] == 5:
                    if line[1] == 65:  # "A"
                        raw_paste(ns)
                    else:
                        w(b"R\x00")
                    line = None
                    break
                return _RAW  # Ctrl-A again: reset the raw REPL
            if c == 2:
                w(b"\r\n")
                return _FRIENDLY
            if c == 3:
                line = bytearray()
            elif c == 4:
                break
            else:
                line.append(c)
        if line is None:
            continue
        w(b"OK")
        if not line:
            w(b"\r\n")
            soft_reboot(_RAW, dev)
        execute(line, ns, True)


def readline(prompt):
    """Line editor: returns (control char or 0, text)."""
    w(prompt)
    line = bytearray()
    while True:
        c = getc()
        if c == 13:
            w(b"\r\n")
            return 0, bytes(line).decode()
        if c in (1, 2, 3, 5) or (c == 4 and not line):
            return c, ""
        if c in (8, 127):
            if line:
                line.pop()
                w(b"\x08 \x08")
        elif c >= 32 or c == 9:
            line.append(c)
            _one[0] = c
            w(_one)


def friendly_repl(ns, dev):
    w(BANNER)
    while True:
        c, text = readline(b">>> ")
        if c == 1:
            w(b"\r\n")
            return _RAW
        if c == 2:
            w(b"\r\n" + BANNER)
        elif c == 3:
            w(b"\r\n")
        elif c == 4:
            w(b"\r\n")
            soft_reboot(_FRIENDLY, dev)
        elif c == 5:
            w(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
            src = bytearray()
            while True:
                k = getc()
                if k == 3:
                    src = None
                    w(b"\r\n")
                    break
                if k == 4:
                    w(b"\r\n")
                    break
                src.append(k)
                _one[0] = k
                w(b"\r\n=== " if k == 13 else _one)
            if src:
                execute(src, ns, False)
        elif text.strip():
            if text.rstrip().endswith(":"):
                more = text
                while True:
                    c2, t2 = readline(b"... ")
                    if c2 == 3:
                        more = None
                        w(b"\r\n")
                        break
                    if not t2.strip():
                        break
                    more += "\n" + t2
                if more is None:
                    continue
                execute(more + "\n", ns, False)
            else:
                execute(text, ns, False, "<stdin>", True)


BANNER = b'MicroPython (unix port) on sim; virtual handheld\r\nType "help()" for more information.\r\n'


def main():
    global _state
    board_name = os.getenv("SIM_BOARD") or "sim"
    board = __import__("board_" + board_name.replace("-", "_")).BOARD
    simhw.board = board
    image = os.getenv("SIM_FLASH")
    mode = _RAW if os.getenv("SIM_BOOT_MODE") == "raw" else _FRIENDLY
    sp = os.getenv("SIM_STATE")
    if sp:
        _state = open(sp, "wb")
    simhw.preopen()
    fl = board["flash"]
    dev = SimFlash(fl["block_size"], fl["block_count"], image, os.getenv("SIM_POWER"),
                   image + ".wear" if image else None)
    err = mount(dev, image)
    sys.path[:] = ["", ".frozen", "/lib"]
    ns = {"__name__": "__main__"}
    if err:
        w(b"sim: " + err.encode() + b"\r\n")
    else:
        # As on a board: main.py only after a soft reset into the friendly REPL, and only when
        # boot.py did not fail (boot.py stops the boot on a storage fault this way).
        if run_file("boot.py", ns) and mode == _FRIENDLY:
            run_file("main.py", ns)
    state(b"I")
    while True:
        try:
            if mode == _RAW:
                mode = raw_repl(ns, dev)
            else:
                mode = friendly_repl(ns, dev)
        except KeyboardInterrupt:
            w(b"\r\n")


if __name__ == "__main__":
    main()
