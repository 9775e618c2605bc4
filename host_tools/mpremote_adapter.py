"""The one place that talks to a device's MicroPython console through mpremote (pinned 1.29.0).

Everything goes through mpremote's Python API (SerialTransport: raw REPL, exec) with small snippets
of our own: files are hashed on the device, written in base64 chunks under a temporary name and
renamed into place, so a cut mid-copy never leaves half a module under its real name. Errors come
out as the typed exceptions below; the snippets' source never appears in them (one carries the key).
"""

from __future__ import annotations

import ast
import base64
import hashlib
from collections.abc import Callable, Iterable

from firmware import layout

_CHUNK = 3072  # raw bytes per exec: raw-paste mode has flow control, so big chunks are safe


class AdapterError(Exception):
    """Anything that went wrong talking to the device."""


class DeviceBusy(AdapterError):
    """The port is held by another program (an open mpremote, a dock sync, a terminal)."""


class ConnectError(AdapterError):
    """No device at the port, or it does not answer with a MicroPython raw REPL."""


class UnreadableJournal(AdapterError):
    """The device holds journal segments but no firmware that can count them."""


class FlashError(AdapterError):
    """A device-side operation failed (file system error, hash mismatch, exception on the device)."""


# Hash files on the device; `None` for a file that is not there.
_HASH_SNIPPET = """
import hashlib, binascii
def _h(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256(); b = bytearray(512); n = 0
    while True:
        k = f.readinto(b)
        if not k: break
        h.update(b if k == 512 else b[:k]); n += k
    f.close()
    return (n, binascii.hexlify(h.digest()).decode())
print(repr([_h(p) for p in %r]))
"""

_MKDIRS_SNIPPET = """
import os
for d in %r:
    try:
        os.mkdir(d)
    except OSError as e:
        if e.args[0] != 17: raise
"""

# Count journal records above the acknowledged watermark with the device's own reader,
# firmware/journal.py peek(): read-only, where constructing a Journal would recover (and may write).
# A device without the firmware package (blank, or flashed before it) answers None if it holds
# journal segments, which no reader here may then interpret.
_PENDING_SNIPPET = """
try:
    from firmware import journal, layout
    print(repr(journal.peek(layout.JOURNAL)))
except ImportError:
    import os
    try:
        held = [n for n in os.listdir(%r) if n.endswith('.seg')]
    except OSError:
        held = []
    print(repr(None if held else (0, 0, 0)))
""" % layout.JOURNAL


# ROMFS partition 0 as mpremote's `romfs query` reads it (MicroPython >= 1.25): (size, erase block,
# whether it holds an image) for a memory-mapped partition; None without vfs.rom_ioctl, without a
# partition, or for a partition given as a block device (no port this project targets does that).
_ROM_QUERY_SNIPPET = """
import vfs
r = None
if hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0:
    d = vfs.rom_ioctl(2, 0)
    if not isinstance(d, int) and not hasattr(d, 'ioctl'):
        b = vfs.rom_ioctl(6, 0)
        r = (len(d), b if isinstance(b, int) and b > 0 else len(d), bytes(d[:3]) == b'\\xd2\\xcd\\x31')
print(repr(r))
"""

_ROM_HASH_SNIPPET = """
import vfs, hashlib, binascii
print(repr(binascii.hexlify(hashlib.sha256(vfs.rom_ioctl(2, 0)[:%d]).digest()).decode()))
"""

_ROM_UMOUNT_SNIPPET = "import vfs\ntry:\n vfs.umount('/rom')\nexcept OSError:\n pass"
_ROM_ERASE_SPAN = 32768  # bytes erased per prepare call, as mpremote's deploy: a call stays short

_RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n"


def _raw_repl(t, soft_reset: bool, timeout: float) -> bool:
    """Interrupt the running program and enter the raw REPL (soft-resetting it as mpremote does)."""
    t.serial.write(b"\r\x03")
    while t.serial.in_waiting:
        t.serial.read(t.serial.in_waiting)
    t.serial.write(b"\r\x01")
    if not t.read_until(1, _RAW_PROMPT + b">", timeout=timeout, timeout_overall=timeout).endswith(
            _RAW_PROMPT + b">"):
        return False
    if soft_reset:
        t.serial.write(b"\x04")
        if not t.read_until(1, b"soft reboot\r\n", timeout=timeout, timeout_overall=timeout).endswith(
                b"soft reboot\r\n"):
            return False
        if not t.read_until(1, _RAW_PROMPT, timeout=timeout, timeout_overall=timeout).endswith(_RAW_PROMPT):
            return False
    t.in_raw_repl = True
    return True


class Device:
    """One open console. Use as a context manager; every method runs in the raw REPL."""

    def __init__(self, port: str, transport: object) -> None:
        self.port = port
        self._t = transport

    # -- connection --------------------------------------------------------------------------

    @classmethod
    def connect(cls, port: str, soft_reset: bool = True, timeout: float = 10.0) -> Device:
        """Open `port` exclusively and enter the raw REPL (interrupting the running firmware)."""
        import time

        import serial
        from mpremote.transport import TransportError  # pyright: ignore[reportMissingImports]
        from mpremote.transport_serial import SerialTransport  # pyright: ignore[reportMissingImports]

        try:
            # A read timeout: on a pty mpremote reads byte by byte and would block for ever on a
            # device that is still rebooting.
            t = SerialTransport(port, baudrate=115200, timeout=2)
        except (TransportError, serial.SerialException, OSError) as exc:
            text = str(exc)
            if "lock" in text.lower() or "busy" in text.lower():
                raise DeviceBusy(f"{port} is in use by another program") from None
            raise ConnectError(f"cannot open {port}: {text}") from None
        # A device just reset may drop what we send while it boots: ask again until the deadline.
        # (Our own handshake rather than enter_raw_repl(), which prints to stdout on failure: not
        # something to do from many threads at once.)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if _raw_repl(t, soft_reset, min(3.0, timeout)):
                    break
                why = "no raw REPL prompt"
            except (TransportError, OSError) as exc:
                why = type(exc).__name__
            if time.monotonic() >= deadline:
                t.close()
                raise ConnectError(f"{port}: no MicroPython raw REPL ({why})")
        return cls(port, t)

    def close(self) -> None:
        """Let go of the port with the application running again, whatever happened before: a
        soft reset from the friendly REPL runs boot.py and main.py, as after `reboot()`. A depot
        command never leaves a handheld stopped at the REPL with its scans unheard."""
        t = self._t
        if t is None:
            return
        try:
            t.serial.write(b"\x03")  # type: ignore[attr-defined]  # whatever still runs, stops
            self.reboot(timeout=3.0)
        except (AdapterError, OSError):
            pass
        finally:
            self._t = None
            try:
                t.close()  # type: ignore[attr-defined]
            except OSError:
                pass

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- primitives --------------------------------------------------------------------------

    def exec(self, code: str, what: str = "command") -> bytes:
        """Run `code` on the device; its stdout. `what` names it in errors (never the code itself)."""
        from mpremote.transport import (  # pyright: ignore[reportMissingImports]
            TransportError,
            TransportExecError,
        )

        if self._t is None:
            raise AdapterError(f"{self.port}: connection closed")
        try:
            return self._t.exec(code)  # type: ignore[attr-defined]
        except TransportExecError as exc:
            last = (exc.error_output.strip().splitlines() or ["error"])[-1]
            raise FlashError(f"{self.port}: {what} failed on the device: {last}") from None
        except (TransportError, OSError) as exc:
            raise FlashError(f"{self.port}: {what}: link error ({type(exc).__name__})") from None

    def _eval(self, code: str, what: str) -> object:
        out = self.exec(code, what).decode(errors="replace").strip().splitlines()
        try:
            return ast.literal_eval(out[-1])
        except (IndexError, ValueError, SyntaxError):
            raise FlashError(f"{self.port}: {what}: unexpected reply") from None

    # -- operations --------------------------------------------------------------------------

    def hashes(self, paths: Iterable[str]) -> dict[str, tuple[int, str] | None]:
        """{path: (size, sha256 hex) computed on the device, or None when absent}."""
        paths = list(paths)
        if not paths:
            return {}
        got = self._eval(_HASH_SNIPPET % (paths,), "hashing files")
        if not isinstance(got, list) or len(got) != len(paths):
            raise FlashError(f"{self.port}: hashing files: unexpected reply")
        return {p: (tuple(h) if h is not None else None) for p, h in zip(paths, got, strict=True)}  # type: ignore[misc]

    def listdir(self, path: str = "/") -> list[tuple[str, bool, int]]:
        """[(name, is_dir, size)] of one directory; [] when it does not exist."""
        got = self._eval(
            "import os\ntry:\n l=[(e[0],e[1]==0x4000,e[3] if len(e)>3 else 0) for e in os.ilistdir(%r)]\n"
            "except OSError:\n l=[]\nprint(repr(l))" % path, "listing " + path)
        return [tuple(x) for x in got]  # type: ignore[union-attr, misc]

    def mkdirs(self, dirs: Iterable[str]) -> None:
        """Create each directory (parents first) that does not exist yet."""
        need: list[str] = []
        for d in dirs:
            parts = [p for p in d.split("/") if p]
            for i in range(1, len(parts) + 1):
                sub = "/" + "/".join(parts[:i])
                if sub not in need:
                    need.append(sub)
        if need:
            self.exec(_MKDIRS_SNIPPET % (need,), "creating directories")

    def put(self, path: str, data: bytes, progress: Callable[[int], None] | None = None,
            what: str | None = None) -> str:
        """Write `data` to `path` (via path + '.part' and a rename); return the device's sha256 hex
        of the file as written, for the caller to compare."""
        label = what or ("writing " + path)
        tmp = path + ".part"
        self.exec("import binascii\n_f=open(%r,'wb')\n_w=_f.write\n_d=binascii.a2b_base64" % tmp, label)
        try:
            for off in range(0, len(data), _CHUNK):
                chunk = base64.b64encode(data[off: off + _CHUNK]).decode()
                self.exec("_w(_d(%r))" % chunk, label)
                if progress:
                    progress(min(off + _CHUNK, len(data)))
            self.exec("_f.close()\nimport os\nos.rename(%r,%r)" % (tmp, path), label)
        except FlashError:
            try:
                self.exec("try:\n _f.close()\nexcept Exception:\n pass\nimport os\nos.remove(%r)" % tmp)
            except FlashError:
                pass
            raise
        got = self.hashes([path])[path]
        return got[1] if got else ""

    def read(self, path: str, limit: int = 65536) -> bytes:
        """A small file's content (base64 on the wire, so any bytes survive)."""
        out = self._eval("import binascii\nwith open(%r,'rb') as f:\n print(repr(binascii.b2a_base64("
                         "f.read(%d)).decode()))" % (path, limit), "reading " + path)
        return base64.b64decode(str(out))

    def remove(self, path: str) -> None:
        self.exec("import os\nos.remove(%r)" % path, "removing " + path)

    def rmdir(self, path: str) -> None:
        """Remove an empty directory; nothing when it is absent or not empty."""
        self.exec("import os\ntry:\n os.rmdir(%r)\nexcept OSError:\n pass" % path, "removing " + path)

    # -- ROMFS partition (vfs.rom_ioctl, the protocol of mpremote's `romfs deploy`) ----------

    def rom_partition(self) -> tuple[int, int, bool] | None:
        """(size, erase block size, holds a ROMFS image) of partition 0; None when there is none."""
        got = self._eval(_ROM_QUERY_SNIPPET, "querying the ROMFS partition")
        if got is None:
            return None
        if not (isinstance(got, tuple) and len(got) == 3):
            raise FlashError(f"{self.port}: querying the ROMFS partition: unexpected reply")
        return int(got[0]), int(got[1]), bool(got[2])

    def rom_sha256(self, length: int) -> str:
        """sha256 hex of the partition's first `length` bytes, read back by the device."""
        return str(self._eval(_ROM_HASH_SNIPPET % length, "hashing the ROMFS partition"))

    def _rom_call(self, args: str, what: str) -> int:
        got = self._eval("import vfs\nprint(vfs.rom_ioctl(%s))" % args, what)
        if not isinstance(got, int) or got < 0:
            raise FlashError(f"{self.port}: {what}: the device answered {got!r}")
        return got

    def _rom_prepare(self, length: int, block: int, size: int) -> int:
        """Erase the partition's first `length` bytes; the minimum write size the port answers."""
        self.exec(_ROM_UMOUNT_SNIPPET, "unmounting /rom")  # nothing may read it while it changes
        if block >= size:  # no ranged erase on this port: one call for the lot
            return self._rom_call(f"3,0,{length}", "erasing the ROMFS partition")
        min_write = 4
        for off in range(0, length, _ROM_ERASE_SPAN):
            span = min(length - off, _ROM_ERASE_SPAN)
            span = (span + block - 1) // block * block
            min_write = self._rom_call(f"3,0,{off},{span}", "erasing the ROMFS partition")
        return min_write

    def rom_write(self, image: bytes, block: int, size: int,
                  progress: Callable[[int], None] | None = None) -> None:
        """Erase and program `image` at the partition's start, as `mpremote romfs deploy` does."""
        min_write = max(1, self._rom_prepare(len(image), block, size))
        chunk = max(4096 // min_write, 1) * min_write
        self.exec("from binascii import a2b_base64", "writing the ROMFS image")
        for off in range(0, len(image), chunk):
            part = image[off: off + chunk]
            part += bytes(-len(part) % min_write)
            self._rom_call(f"4,0,{off},a2b_base64({base64.b64encode(part).decode()!r})",
                           "writing the ROMFS image")
            if progress:
                progress(min(off + chunk, len(image)))
        self._rom_call("5,0", "finishing the ROMFS write")

    def rom_erase(self, block: int, size: int) -> None:
        """Erase the partition's first block: its image header goes, so the device no longer mounts
        it and imports from littlefs."""
        self._rom_prepare(min(block, size), block, size)
        self._rom_call("5,0", "finishing the ROMFS erase")

    def journal_pending(self) -> tuple[int, int, int]:
        """(records above the watermark, watermark, highest seq held) read from /journal, read-only."""
        got = self._eval(_PENDING_SNIPPET, "reading the journal")
        if got is None:
            raise UnreadableJournal(f"{self.port}: a journal is on the device but no firmware package "
                                    "to read it (flashed before the package layout?)")
        if not (isinstance(got, tuple) and len(got) == 3):
            raise FlashError(f"{self.port}: reading the journal: unexpected reply")
        return int(got[0]), int(got[1]), int(got[2])

    def reboot(self, timeout: float = 10.0) -> None:
        """Soft reset from the friendly REPL, so boot.py and main.py run; then let go of the port."""
        t = self._t
        if t is None:
            return
        try:
            t.exit_raw_repl()  # type: ignore[attr-defined]
            t.serial.write(b"\x04")  # type: ignore[attr-defined]
            t.read_until(1, b"soft reboot", timeout=timeout, timeout_overall=timeout)  # type: ignore[attr-defined]
        except OSError as exc:
            raise FlashError(f"{self.port}: reboot: link error ({type(exc).__name__})") from None
        finally:
            self._t = None
            try:
                t.close()  # type: ignore[attr-defined]
            except OSError:
                pass


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
