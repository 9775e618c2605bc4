"""`depot flash`: firmware, board definition and identity onto handhelds, many at once.

A flash builds the board's image once (flash_image.py: what firmware/manifest.py lists, compiled
with mpy-cross for the board's architecture, cached under $DEPOT_HOME), then per device: refuses
one whose journal holds records the depot has not collected (unless forced), writes only the
files whose sha256 on the device differs, verifies every file by the hash the device computes,
and reboots it. /data (journal, route, upload state) is never written or read beyond counting the
unsynced records. The device key travels only inside /config/device.json.

Where the board has a ROMFS partition (boards/*.py "romfs"; MicroPython >= 1.25), the package's
.mpy files and board.mpy go into one ROMFS image (mpremote.romfs.make_romfs) written to the
partition over vfs.rom_ioctl, as `mpremote romfs deploy` does, and verified by the sha256 of the
partition the device reads back; the VM then runs their bytecode in place from flash. The entry
points and the identity stay on littlefs. ROMFS wins: /rom/lib comes before /lib on the board's
sys.path, so a ROMFS flash removes the package from littlefs and a littlefs flash (--no-romfs, or a
device without the partition) erases the partition's header, and no stale copy is left to shadow
or to be shadowed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from firmware import layout
from host_tools import flash_romfs, term
from host_tools import mpremote_adapter as mp
from host_tools.flash_image import FlashError, Image, build, cache_dir

__all__ = ["PROTECTED", "FlashError", "Image", "Refused", "Result", "build", "cache_dir", "flash_many",
           "flash_one", "table"]

PROTECTED = (layout.DATA,)  # the carrier's journal, route and upload state: never written by a flash


class Refused(mp.AdapterError):
    """The device holds records not yet synced: flashing is refused without --force."""


@dataclass
class Result:
    device_id: str
    port: str
    # waiting, connecting, checking, writing, verifying, rebooting, then ok, refused or failed
    status: str = "waiting"
    written: int = 0
    skipped: int = 0
    bytes: int = 0
    pending: int = 0
    seconds: float = 0.0
    message: str = ""
    detail: str = ""  # progress text while running
    fraction: float | None = None  # of the current step, when it has a measure

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def flash_one(port: str, device_id: str, image: Image, key: bytes | None, force: bool = False,
              server_url: str = "",
              update: Callable[[Result], None] | None = None, result: Result | None = None,
              connect_timeout: float = 10.0, server_ca: str = "") -> Result:
    """Flash one device; never raises for device trouble: the Result says what happened."""
    res = result or Result(device_id, port)
    t0 = time.monotonic()

    def step(status: str, detail: str = "", fraction: float | None = None) -> None:
        res.status, res.detail, res.fraction = status, detail, fraction
        res.seconds = time.monotonic() - t0
        if update:
            update(res)

    try:
        if key is None:
            raise FlashError(f"device {device_id!r} is not enrolled: "
                             f"run `depot enrol --device-id {device_id}`")
        step("connecting")
        with mp.Device.connect(port, timeout=connect_timeout) as dev:
            _check_journal(dev, res, force, step)
            step("checking", "ROMFS partition")
            part = dev.rom_partition()
            rom = image.romfs is not None and part is not None
            if image.romfs is not None and part is None:
                res.message = "no ROMFS partition on the device: firmware as .mpy files on littlefs"
            elif rom and len(image.romfs or b"") > part[0]:  # type: ignore[index]
                raise FlashError(f"the ROMFS image ({len(image.romfs or b'')} B) does not fit the "
                                 f"device's partition ({part[0]} B): flash with --no-romfs")  # type: ignore[index]
            if not rom and part is not None and part[2]:
                # A ROMFS image would win over the littlefs copy: gone before that copy is written.
                step("writing", "erasing the ROMFS partition")
                dev.rom_erase(part[1], part[0])
            files = image.with_identity(device_id, key, server_url, server_ca, rom=rom)
            assert not any(p.startswith(PROTECTED) for p, _ in files)
            want = _write_files(dev, files, res, step)
            if rom:
                assert image.romfs is not None and part is not None
                if flash_romfs.deploy(dev, image.romfs, part, step):
                    res.written += 1
                    res.bytes += len(image.romfs)
                else:
                    res.skipped += 1
            # /lib holds exactly the image (nothing at all with ROMFS): a stale module would shadow
            # its compiled one (.py is found first) or linger from an older layout (flat /lib/*.mpy,
            # /lib/board.py).
            stale = [f"/lib/{name}" for name, is_dir, _ in dev.listdir("/lib") if not is_dir]
            if layout.SERVER_CA not in want and dev.hashes([layout.SERVER_CA]).get(layout.SERVER_CA):
                stale.append(layout.SERVER_CA)  # flashed without a CA now: none left from before
            stale += [f"{layout.FIRMWARE_DIR}/{name}" for name, is_dir, _ in dev.listdir(layout.FIRMWARE_DIR)
                      if not is_dir and f"{layout.FIRMWARE_DIR}/{name}" not in want]
            for path in stale:
                dev.remove(path)
            if rom:
                dev.rmdir(layout.FIRMWARE_DIR)
            step("verifying")
            final = dev.hashes(want)
            bad = [p for p in want if (final.get(p) or (0, ""))[1] != want[p]]
            if bad:
                raise FlashError(f"verification failed for {', '.join(bad)}")
            step("rebooting")
            dev.reboot()
        res.seconds = time.monotonic() - t0
        res.status, res.detail, res.fraction = "ok", "", None
    except Refused as exc:
        res.status, res.message = "refused", str(exc)
    except mp.AdapterError as exc:
        res.status, res.message = "failed", str(exc)
    res.seconds = time.monotonic() - t0
    if update:
        update(res)
    return res


def _check_journal(dev: mp.Device, res: Result, force: bool, step: Callable[..., None]) -> None:
    """Refuse a device holding records the depot has not collected, unless forced."""
    step("checking", "journal")
    try:
        res.pending, _wm, _last = dev.journal_pending()
    except mp.UnreadableJournal as exc:
        if not force:
            raise Refused(f"{exc}: sync it with its own firmware first (or --force)") from None
        res.message = "WARNING: forced over a journal no firmware could count (journal kept)"
    if res.pending and not force:
        raise Refused(f"{res.pending} unsynced record(s) in the journal: run `depot sync` first "
                      "(or --force)")
    if res.pending:
        res.message = f"WARNING: forced over {res.pending} unsynced record(s) (journal kept)"


def _write_files(dev: mp.Device, files: list[tuple[str, bytes]], res: Result,
                 step: Callable[..., None]) -> dict[str, str]:
    """Write the littlefs files whose hash on the device differs; {path: sha256 hex} of all."""
    step("checking", "hashes")
    want = {p: mp.sha256_hex(d) for p, d in files}
    have = dev.hashes(want)
    todo = [(p, d) for p, d in files if (have.get(p) or (0, ""))[1] != want[p]]
    res.skipped += len(files) - len(todo)
    dev.mkdirs(sorted({p.rsplit("/", 1)[0] for p, _ in todo if p.count("/") > 1}))
    total = sum(len(d) for _, d in todo)
    done = 0
    for n, (path, data) in enumerate(todo, 1):
        secret = path == layout.CONFIG

        def prog(k: int, n: int = n, done: int = done) -> None:
            share = (done + k) / max(total, 1)
            step("writing", f"{n}/{len(todo)} files, {int(share * 100)}%", share)

        got = dev.put(path, data, progress=prog, what="writing the identity" if secret else None)
        if got != want[path]:
            raise FlashError(f"{path}: hash on the device differs after writing")
        done += len(data)
        res.written += 1
        res.bytes += len(data)
    return want


def flash_many(targets: list[tuple[str, str]], board: str, keys: Callable[[str], bytes | None],
               force: bool = False, server_url: str = "", update: Callable[[Result], None] | None = None,
               workers: int | None = None, server_ca: str = "", romfs: bool | None = None) -> list[Result]:
    """Flash each (port, device_id) in its own thread; results in the order given."""
    ports = [p for p, _ in targets]
    dup = {p for p in ports if ports.count(p) > 1}
    results = [Result(d, p) for p, d in targets]
    if dup:
        for r in results:
            r.status, r.message = "failed", f"port listed twice: {', '.join(sorted(dup))}"
        return results
    image = build(board, romfs=romfs)
    with ThreadPoolExecutor(max_workers=workers or max(1, len(targets))) as pool:
        futs = [pool.submit(flash_one, r.port, r.device_id, image, keys(r.device_id), force, server_url,
                            update, r, server_ca=server_ca)
                for r in results]
        for f in futs:
            f.result()
    return results


def table(results: list[Result]) -> str:
    rows: list[tuple[object, ...]] = [("device", "port", "result", "written", "skipped", "bytes", "time",
                                       "note")]
    rows += [(r.device_id, r.port, r.status, r.written, r.skipped, r.bytes, f"{r.seconds:.1f}s", r.message)
             for r in results]
    ok = sum(r.ok for r in results)
    return term.table(rows, right=(3, 4, 5, 6)) + f"\n{ok} of {len(results)} device(s) flashed"
