"""`depot serve`: the cellular ingest server (host_tools/server.py, docs/upload-api.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the ingest server handhelds upload to over cellular")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--max-body", type=int, default=64 * 1024, help="largest batch in bytes (413 above)")
    p.add_argument("--clock-window", type=float, default=None, metavar="SECONDS",
                   help="refuse batches whose device clock is further off than this (412)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from host_tools import server

    print(f"depot serve: listening on http://{args.host}:{args.port}", flush=True)
    server.serve(args.host, args.port, getattr(args, "store", None), max_body=args.max_body,
                 clock_window_s=args.clock_window)
    return 0
