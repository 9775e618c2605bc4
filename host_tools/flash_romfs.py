"""The ROMFS half of `depot flash` (host_tools/flash.py): the firmware's /lib files as one ROMFS
image, and its deployment to a device's partition over vfs.rom_ioctl (mpremote_adapter.rom_write,
the protocol of `mpremote romfs deploy`), checked by the sha256 the device computes over the
partition it reads back."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

from mpremote import romfs as mp_romfs  # pyright: ignore[reportMissingImports]

from host_tools import manifest
from host_tools import mpremote_adapter as mp


def image(files: list[tuple[str, bytes]]) -> bytes:
    """The /lib files as a ROMFS image, rooted at / (mounted at /rom: /rom/lib/firmware/...), built
    by mpremote's own writer from .mpy already compiled for the board."""
    with tempfile.TemporaryDirectory(prefix="depot-romfs-") as tmp:
        for path, data in files:
            if path.startswith(manifest.LIB + "/"):
                dst = Path(tmp) / path.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree it packs
            return bytes(mp_romfs.make_romfs(tmp, mpy_cross=False))


def deploy(dev: mp.Device, rom: bytes, part: tuple[int, int, bool], step: Callable[..., None]) -> bool:
    """Write the ROMFS image unless the partition holds it already (False), then verify it by the
    sha256 the device computes over the partition. A mismatch erases the partition's header (a
    damaged image must not boot) and fails the flash with one line."""
    size, block, _held = part
    want = mp.sha256_hex(rom)
    step("checking", "ROMFS image")
    if dev.rom_sha256(len(rom)) == want:
        return False

    def prog(k: int) -> None:
        share = k / len(rom)
        step("writing", f"ROMFS image, {int(share * 100)}%", share)

    dev.rom_write(rom, block, size, progress=prog)
    step("verifying", "ROMFS image")
    got = dev.rom_sha256(len(rom))
    if got != want:
        dev.rom_erase(block, size)
        raise mp.FlashError(f"ROMFS verify failed: the partition reads back sha256 {got[:12]}, the "
                            f"image is {want[:12]}; partition erased, not booted")
    return True
