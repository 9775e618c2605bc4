"""`depot flash --port PORT --device-id ID [--port P2 --device-id ID2 ...] [--csv FILE] [--board NAME]
[--force] [--romfs/--no-romfs]`: see host_tools/flash.py."""

from __future__ import annotations

import argparse
import csv
import sys

from host_tools import boards, flash, term
from host_tools.errors import DepotError


def register(sub) -> None:
    p = sub.add_parser("flash", help="compile and copy firmware, board and identity to devices (mpremote)")
    p.add_argument("--port", action="append", default=[], help="serial port of a device (repeatable)")
    p.add_argument("--device-id", action="append", default=[], help="its device id, paired in order")
    p.add_argument("--csv", help="CSV of port,device_id lines (a header line is allowed)")
    p.add_argument("--board", default="sim",
                   help=f"board definition (default sim; one of {', '.join(boards.names())})")
    p.add_argument("--server-url", default="",
                   help="the depot's upload server as the modem reaches it (e.g. https://depot.example:8443)")
    p.add_argument("--server-ca", metavar="FILE", default="",
                   help="the CA certificate (PEM) the modem pins an https:// server to; required for https")
    p.add_argument("--force", action="store_true",
                   help="flash even a device holding unsynced records (they stay in its journal)")
    p.add_argument("--romfs", action=argparse.BooleanOptionalAction, default=None,
                   help="the firmware as a ROMFS image on the board's ROMFS partition, run in place "
                        "(default where the board has one); --no-romfs: .mpy files on littlefs")
    p.set_defaults(func=run)


def targets(args: argparse.Namespace) -> list[tuple[str, str]]:
    if len(args.port) != len(args.device_id):
        raise DepotError(f"{len(args.port)} --port but {len(args.device_id)} --device-id",
                         "give one --device-id for each --port, in the same order")
    pairs = list(zip(args.port, args.device_id, strict=True))
    if args.csv:
        try:
            with open(args.csv, newline="") as f:
                rows = list(csv.reader(f))
        except OSError as exc:
            raise DepotError(f"cannot read {args.csv}: {exc.strerror}", "check the --csv path") from None
        for n, row in enumerate(rows, 1):
            row = [c.strip() for c in row]
            if not row or not row[0] or row[0].startswith("#") or (n == 1 and row[0].lower() == "port"):
                continue
            if len(row) < 2 or not row[1]:
                raise DepotError(f"{args.csv}:{n}: no device id", "write each line as port,device_id")
            pairs.append((row[0], row[1]))
    if not pairs:
        raise DepotError("no device given", "name each with --port P --device-id ID, or give --csv FILE")
    return pairs


def read_server_ca(server_url: str, path: str) -> str:
    """The PEM the device's modem will trust for its uploads (only this CA: pinned)."""
    if not path:
        if server_url.startswith("https://"):
            raise DepotError("an https:// server URL needs the CA that signed the server's certificate",
                             "add --server-ca FILE (PEM)")
        return ""
    try:
        pem = open(path, encoding="ascii").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DepotError(f"cannot read the CA certificate {path}: {exc}", "give a PEM file") from None
    if pem.count("-----BEGIN CERTIFICATE-----") != 1:
        raise DepotError(f"{path} is not one PEM certificate", "give the CA certificate alone, in PEM")
    if len(pem) > 4096:
        raise DepotError(f"{path} is {len(pem)} bytes", "the device keeps at most 4096: use an EC or "
                         "RSA-2048 CA certificate")
    return pem


def run(args: argparse.Namespace) -> int:
    from host_tools import store as store_mod

    pairs = targets(args)
    boards.check(args.board)
    st = store_mod.open_existing(args.store)
    try:
        keys = {d: st.key(d) for _, d in pairs}
    finally:
        st.close()
    missing = [d for d, k in keys.items() if k is None]
    if missing:
        raise DepotError(f"not enrolled: {', '.join(missing)}",
                         f"run `depot enrol --device-id {missing[0]}` first")
    if args.force:
        print("WARNING: --force flashes devices even when their journal holds unsynced records; the "
              "records stay on the device, sync it before its journal fills.", file=sys.stderr)
    server_ca = read_server_ca(args.server_url, args.server_ca)
    if args.romfs is not False and boards.romfs(boards.load(args.board)) is None:
        print(f"board {args.board} has no ROMFS partition: the firmware goes onto littlefs as .mpy files",
              file=sys.stderr)
    lines = term.LiveLines(pairs, label=lambda pd: f"{pd[1]}  {pd[0]}")

    def show(r: flash.Result) -> None:
        lines.update((r.port, r.device_id), r.status, r.message or r.detail, r.fraction)

    try:
        results = flash.flash_many(pairs, args.board, keys.get, force=args.force,
                                   server_url=args.server_url, update=show, server_ca=server_ca,
                                   romfs=args.romfs)
    except flash.FlashError as exc:
        raise DepotError(str(exc), "nothing was written to any device") from None
    lines.close()
    flashed = [r.device_id for r in results if r.ok]
    if flashed:  # they hold the store's key now: a key rotated before this flash is delivered
        st = store_mod.open_existing(args.store)
        try:
            for d in flashed:
                key = keys[d]
                assert key is not None
                st.key_delivered(d, key)
        finally:
            st.close()
    print(flash.table(results))
    return 0 if all(r.ok for r in results) else 1
