"""`depot enrol`, `depot sync`, `depot devices`: identities, the nightly dock sync, the fleet table."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from host_tools import untrusted
from host_tools.store import Store, StoreError
from host_tools.sync import SyncReport, sync_device


def register(subparsers: argparse._SubParsersAction) -> None:
    e = subparsers.add_parser("enrol", help="create a device's identity and secret key in the store")
    e.add_argument("--device-id", required=True)
    e.set_defaults(func=run_enrol)

    s = subparsers.add_parser("sync", help="collect records from docked devices, acknowledge, push routes")
    s.add_argument("--port", action="append", required=True, metavar="PORT",
                   help="dock serial port, e.g. /dev/ttyACM0; repeat for several devices in parallel")
    s.add_argument("--no-route", action="store_true", help="do not push assigned route packages")
    s.set_defaults(func=run_sync)

    d = subparsers.add_parser("devices", help="table of enrolled devices")
    d.set_defaults(func=run_devices)


def _store(args: argparse.Namespace) -> Store:
    return Store(getattr(args, "store", None))


def run_enrol(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        store.enrol(args.device_id)  # the key stays in the store: never printed
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"enrolled {args.device_id} in {store.path}; its key is in the store (flash it with depot flash)")
    return 0


class _Lines:
    """One live line per device on a terminal; plain lines otherwise (logs, CI)."""

    def __init__(self, ports: list[str]):
        self.ports = ports
        self.state = {p: "waiting" for p in ports}
        self.lock = threading.Lock()
        self.tty = sys.stdout.isatty()
        self.width = max(len(p) for p in ports)
        if self.tty:
            for p in ports:
                print(self._line(p))

    def _line(self, port: str) -> str:
        return f"{port:<{self.width}}  {self.state[port]}"[:120]

    def update(self, port: str, msg: str) -> None:
        with self.lock:
            if self.state[port] == msg:
                return
            self.state[port] = msg
            if self.tty:
                up = len(self.ports) - self.ports.index(port)
                sys.stdout.write(f"\x1b[{up}A\r\x1b[2K{self._line(port)}\x1b[{up}B\r")
                sys.stdout.flush()
            elif not msg.startswith(("records ", "route ")):  # logs get phase changes only
                print(self._line(port), flush=True)


def run_sync(args: argparse.Namespace) -> int:
    store = _store(args)
    ports: list[str] = list(dict.fromkeys(args.port))
    lines = _Lines(ports)
    t0 = time.monotonic()

    def one(port: str) -> SyncReport:
        return sync_device(port, store, progress=lambda msg: lines.update(port, msg),
                           push_route=not args.no_route)

    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        reports = list(pool.map(one, ports))
    for rep in reports:
        lines.update(rep.port, "ok" if rep.ok else "FAILED")
    print()
    print(format_reports(reports))
    print(f"{sum(r.ok for r in reports)}/{len(reports)} synced in {time.monotonic() - t0:.1f} s; "
          f"store {store.path}")
    return 0 if all(r.ok for r in reports) else 1


def format_reports(reports: list[SyncReport]) -> str:
    head: tuple[str, ...] = ("port", "device", "result", "received", "stored", "dupes", "acked",
                             "pending", "route", "gaps")
    rows: list[tuple[str, ...]] = [head]
    for r in reports:
        gaps = _ranges(r.gaps) if r.gaps else "-"
        rows.append((r.port, r.device_id or "?", "ok" if r.ok else "FAILED", str(r.received), str(r.stored),
                     str(r.duplicates), str(r.acked_seq), str(r.pending_after), r.route_pushed or "-", gaps))
    errors = [f"{r.port}: {r.error}" for r in reports if r.error]
    return "\n".join([_table(rows), *errors])


def run_devices(args: argparse.Namespace) -> int:
    store = _store(args)
    rows: list[tuple[str, ...]] = [("device", "last seen", "firmware", "board", "route", "pending",
                                    "acked", "battery", "free flash")]
    for d in store.devices():
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.last_seen)) if d.last_seen else "never"
        rows.append((d.device_id, seen, d.firmware or "-", d.board or "-", d.route_id or "-",
                     "-" if d.pending is None else str(d.pending), str(d.ack_seq),
                     "-" if d.battery is None else f"{d.battery}%",
                     "-" if d.free_flash is None else f"{d.free_flash // 1024} KiB"))
    if len(rows) == 1:
        print(f"no devices enrolled in {store.path}")
        return 0
    print(_table([tuple(untrusted.shown(c) for c in r) for r in rows]))  # device-reported strings
    return 0


def _ranges(seqs: list[int]) -> str:
    spans: list[list[int]] = []
    for s in seqs:
        if spans and s == spans[-1][1] + 1:
            spans[-1][1] = s
        else:
            spans.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
