"""Run firmware code on a 32-bit MicroPython: the official WebAssembly port from npm
(`@micropython/micropython-webassembly-pyscript`, installed by `make setup` into node_modules/),
under Node 20. Small ints there have 31 bits and pointers 4 bytes, as on the boards, so a big int
or a float made in a hot path allocates (and fails under heap_lock) as it would on a device.

What the port lacks, and so stays on the unix port (docs/vm32.md): littlefs (`vfs` has only
VfsPosix, over Emscripten's in-memory filesystem), `machine`, `cryptolib`, the host filesystem
(files a run needs are copied in), stdin, and a fixed heap. Its heap is a split heap that grows
on demand, `heapsize` being only the first area, and garbage is collected only between top-level
calls (sim/wasm32.mjs says why): so `heap` bounds nothing here, and live-heap figures are read
between steps (run_steps), after a collection. heap_lock works as on any port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from host_tools import manifest
from sim import mpy

ROOT = Path(__file__).resolve().parents[1]  # the checkout: `make setup` puts node_modules/ there
RUNNER = Path(__file__).resolve().parent / "wasm32.mjs"
PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
LIB = "/lib"  # where the firmware's modules sit in the VM's filesystem
_PYSTACK = 16 * 1024  # bytes of Python stack (the port's default, 2 KiB, is short for the firmware)
_HOST_PATH = re.compile(r"""['"](/(?:tmp|var|work)/[^'"\n]+)['"]""")


class Wasm32Unavailable(RuntimeError):
    """Node or the npm package is missing: `make setup` installs the package."""


def available() -> str | None:
    """None when the VM can run, else why not."""
    if shutil.which("node") is None:
        return "node is not installed (Node 20 runs the WebAssembly port)"
    if not (PACKAGE / "micropython.mjs").exists():
        return f"{PACKAGE.relative_to(ROOT)} is missing: run `make setup` (npm installs it)"
    return None


def heap_bytes(heap: str | int) -> int:
    if isinstance(heap, int):
        return heap
    unit = {"k": 1024, "m": 1024 * 1024}.get(heap[-1].lower(), 1)
    return int(heap[:-1] if unit > 1 else heap) * unit


def _modules() -> list[tuple[str, str]]:
    """What firmware/manifest.py ships, and the board definitions, as packages in /lib."""
    with manifest.firmware() as m:
        out = [(dest, str(src)) for src, dest in m.modules]
    for path in sorted(mpy.BOARDS.glob("*.py")):
        out.append((f"{LIB}/boards/{path.name}", str(path)))
    return out


def run(code: str, *, heap: str | int = mpy.DEFAULT_HEAP, files: dict[str, str | os.PathLike] | None = None,
        timeout: float = 120) -> str:
    """Run `code` on the 32-bit VM, its heap starting at `heap` bytes; return its stdout.

    The firmware and board modules are importable as on the unix port. Host files the code names by
    absolute path (a test's tmp_path) are copied to the same path in the VM's in-memory filesystem,
    and so are `files` ({vm_path: host_path}); what the VM writes stays there.
    Raises mpy.MicroPythonError on a traceback.
    """
    return run_steps([code], heap=heap, files=files, timeout=timeout)[0]


def run_steps(steps: list[str], *, heap: str | int = mpy.DEFAULT_HEAP,
              files: dict[str, str | os.PathLike] | None = None,
              timeout: float = 600) -> tuple[str, list[int]]:
    """Run each step as a top-level call, in one VM (globals carry over): (stdout, the live heap
    in bytes after each step, collected)."""
    why = available()
    if why:
        raise Wasm32Unavailable(why)
    copies = _modules()
    for found in dict.fromkeys(p for code in steps for p in _HOST_PATH.findall(code)):
        if Path(found).is_file():
            copies.append((found, found))
    for vm_path, host in (files or {}).items():
        copies.append((vm_path, str(host)))
    job = {"heap": heap_bytes(heap), "pystack": _PYSTACK, "files": copies, "path": [LIB], "steps": steps}
    proc = subprocess.run(["node", str(RUNNER)], input=json.dumps(job).encode(), capture_output=True,
                          timeout=timeout, cwd=ROOT)
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or "Traceback (most recent call last)" in out + err:
        raise mpy.MicroPythonError(f"micropython (wasm32) exited {proc.returncode}\n--- stdout\n{out}\n"
                                   f"--- stderr\n{err}")
    return out, [int(m) for m in _LIVE.findall(err)]


_LIVE = re.compile(r"^HEAP (\d+) \d+$", re.M)
