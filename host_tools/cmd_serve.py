"""`depot serve`: the cellular ingest server (host_tools/server.py, docs/upload-api.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from host_tools.errors import DepotError
from host_tools.server_guard import Limits

TOKEN_ENV = "DEPOT_OPERATOR_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    d = Limits()
    p = sub.add_parser("serve", help="run the ingest server handhelds upload to over cellular")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument("--operator-token-file", metavar="FILE",
                   help=f"a file holding the token /v1/devices and /metrics require (or ${TOKEN_ENV}); "
                        "without one they answer loopback clients only")
    p.add_argument("--access-log", action="store_true", help="log one line per request answered")
    p.add_argument("--max-body", type=int, default=d.max_body, help="largest batch in bytes (413 above)")
    p.add_argument("--clock-window", type=float, default=None, metavar="SECONDS",
                   help="refuse batches whose device clock is further off than this (412)")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout_s, metavar="SECONDS",
                   help="close a connection whose request headers take longer "
                        f"(default {d.header_timeout_s:g})")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout_s, metavar="SECONDS",
                   help=f"answer 408 to a body that takes longer (default {d.body_timeout_s:g})")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help=f"open connections before new ones get 503 (default {d.max_connections})")
    p.add_argument("--max-inflight", type=int, default=d.max_inflight,
                   help=f"requests in progress before new ones get 503 (default {d.max_inflight})")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="run N server processes sharing the port (SO_REUSEPORT); they keep no state, "
                        "so give them a shared store: --store postgresql://...")
    p.add_argument("--reuse-port", action="store_true",
                   help="bind with SO_REUSEPORT, so other `depot serve` processes may share the port")
    p.set_defaults(func=run)


def private_file(path: str, what: str) -> None:
    """A secret readable by other local users is refused, as ssh refuses such a key."""
    mode = Path(path).stat().st_mode
    if mode & 0o077:
        raise DepotError(f"the {what} {path} is readable by other users (mode {mode & 0o777:o})",
                         f"run chmod 600 {path}")


def operator_token(path: str | None) -> str | None:
    if path:
        if Path(path).exists():
            private_file(path, "operator token file")
        try:
            token = Path(path).read_text().strip()
        except OSError as e:
            raise DepotError(f"cannot read the operator token file {path}: {e.strerror}",
                             "give a readable file holding the token") from None
        if not token:
            raise DepotError(f"the operator token file {path} is empty", "write a long random token into it")
        return token
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    from host_tools import server

    if bool(args.tls_cert) != bool(args.tls_key):
        raise DepotError("--tls-cert and --tls-key go together", "give both files, or neither")
    for f in (args.tls_cert, args.tls_key):
        if f and not Path(f).is_file():
            raise DepotError(f"no such file: {f}", "give the PEM files of the server's certificate and key")
    if args.tls_key:
        private_file(args.tls_key, "TLS key")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = Limits(header_timeout_s=args.header_timeout, body_timeout_s=args.body_timeout,
                    max_connections=args.max_connections, max_inflight=args.max_inflight)
    token = operator_token(args.operator_token_file)
    scheme = "https" if args.tls_cert else "http"
    logging.getLogger("depot.serve").info(
        "listening on %s://%s:%d (read endpoints: %s)", scheme, args.host, args.port,
        "operator token" if token else "loopback clients only")
    if args.workers > 1:
        return supervise(args.workers)
    print(f"depot serve: listening on {scheme}://{args.host}:{args.port}", flush=True)
    server.serve(args.host, args.port, getattr(args, "store", None), max_body=args.max_body,
                 clock_window_s=args.clock_window, limits=limits, operator_token=token,
                 access_log=args.access_log, tls_cert=args.tls_cert, tls_key=args.tls_key,
                 reuse_port=args.reuse_port)
    return 0


def supervise(workers: int) -> int:
    """`--workers N`: N copies of this very command, each a single stateless instance bound with
    SO_REUSEPORT, restarted when one dies (a crash or kill -9 costs its in-flight requests only:
    devices retry them, and nothing was acknowledged before its commit). Ctrl-C stops them all."""
    argv = [sys.executable, "-m", "host_tools", *_without_workers(sys.argv[1:]), "--reuse-port"]
    log = logging.getLogger("depot.serve")
    procs = [subprocess.Popen(argv) for _ in range(workers)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            p.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            for i, p in enumerate(procs):
                if p.poll() is not None and not stopping:
                    log.warning("worker %d (pid %d) exited with %s; starting another", i, p.pid, p.returncode)
                    procs[i] = subprocess.Popen(argv)
            time.sleep(0.5)
    except KeyboardInterrupt:
        stop()
    for p in procs:
        p.wait()
    return 0


def _without_workers(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out
