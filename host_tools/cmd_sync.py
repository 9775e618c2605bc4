"""`depot enrol`, `depot sync`, `depot devices`: identities, the nightly dock sync, the fleet table."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from host_tools import seqs, term, untrusted
from host_tools.errors import DepotError
from host_tools.store import StoreError, open_existing, open_store
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


def run_enrol(args: argparse.Namespace) -> int:
    store = open_store(args.store)  # the one command that creates a store
    try:
        store.enrol(args.device_id)  # the key stays in the store: never printed
    except StoreError as exc:
        raise DepotError(str(exc), "choose another device id") from None
    print(f"enrolled {args.device_id} in {store.name}; its key is in the store (flash it with depot flash)")
    return 0


def _progress(msg: str) -> tuple[str, str, float | None]:
    """sync_device's messages ("records 40/300", "route 35%", "hello") as phase, detail, fraction."""
    phase, _, detail = msg.partition(" ")
    fraction = None
    try:
        if phase == "records" and "/" in detail:
            done, total = detail.split("/")
            fraction = int(done) / max(int(total), 1)
        elif phase == "route" and detail.endswith("%"):
            fraction = int(detail[:-1]) / 100
    except ValueError:
        pass
    return phase, detail, fraction


def run_sync(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    ports: list[str] = list(dict.fromkeys(args.port))
    lines = term.LiveLines(ports)
    t0 = time.monotonic()

    def one(port: str) -> SyncReport:
        return sync_device(port, store, progress=lambda msg: lines.update(port, *_progress(msg)),
                           push_route=not args.no_route)

    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        reports = list(pool.map(one, ports))
    for rep in reports:
        lines.update(rep.port, "ok" if rep.ok else "FAILED")
    lines.close()
    print(format_reports(reports))
    print(f"{sum(r.ok for r in reports)}/{len(reports)} synced in {time.monotonic() - t0:.1f} s; "
          f"store {store.name}")
    failed = [r for r in reports if not r.ok]
    if not failed:
        return 0
    sys.stdout.flush()
    for r in failed[:-1]:
        print(f"depot: error: {r.port}: {r.error}", file=sys.stderr)
    raise DepotError(f"{failed[-1].port}: {failed[-1].error}")


def format_reports(reports: list[SyncReport]) -> str:
    """One row per device; `gaps` and `skipped` in the words of host_tools.seqs, as the report says."""
    rows: list[tuple[object, ...]] = [("port", "device", "result", "received", "stored", "dupes",
                                       "acked seq", "pending", "route", "gaps", "skipped")]
    for r in reports:
        gaps, skipped = seqs.split(r.gaps, r.skipped)
        rows.append((r.port, r.device_id or "?", "ok" if r.ok else "FAILED", r.received, r.stored,
                     r.duplicates, r.acked_seq, r.pending_after, r.route_pushed or "-", seqs.text(gaps),
                     seqs.text(skipped)))
    return term.table([tuple(untrusted.shown(str(c)) for c in r) for r in rows], right=range(3, 8))


def run_devices(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    rows: list[tuple[object, ...]] = [("device", "last seen", "firmware", "board", "route", "pending",
                                       "stored", "acked seq", "gaps", "skipped", "battery", "free flash")]
    for d in store.devices():
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.last_seen)) if d.last_seen else "never"
        acct = seqs.account(store, d.device_id)  # the words and figures of depot sync and the report
        rows.append((d.device_id, seen, d.firmware or "-", d.board or "-", d.route_id or "-",
                     "-" if d.pending is None else d.pending, acct.stored, acct.acked_seq,
                     seqs.text(acct.gaps), seqs.text(acct.skipped),
                     "-" if d.battery is None else f"{d.battery}%",
                     "-" if d.free_flash is None else f"{d.free_flash // 1024} KiB"))
    if len(rows) == 1:
        print(f"no devices enrolled in {store.name}")
        return 0
    print(term.table([tuple(untrusted.shown(str(c)) for c in r) for r in rows],  # device-reported strings
                     right=(5, 6, 7, 10, 11)))
    return 0
