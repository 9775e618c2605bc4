"""A private PostgreSQL cluster for tests and benches: initdb + pg_ctl in a temporary folder,
listening on a free loopback port and a private socket folder, gone when stopped.

Debian's postgresql package puts initdb and pg_ctl outside PATH (/usr/lib/postgresql/N/bin);
`make setup` installs it when absent. initdb refuses to run as root, so as root the cluster runs
as the `postgres` system user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


class PgUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    if not dirs:
        raise PgUnavailable("PostgreSQL server binaries not found (initdb, pg_ctl): run `make setup`, "
                            "which installs Debian's postgresql package")
    return Path(dirs[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    """`with PgCluster() as pg: pg.url` -> postgresql://postgres@127.0.0.1:PORT/postgres."""

    def __init__(self) -> None:
        self.bin = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="depot-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.port = _free_port()
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root and no `postgres` user to run the cluster as") from None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        kw: dict = {"capture_output": True, "text": True, "check": False, "cwd": self.root}
        if self.user is not None:
            kw["user"], kw["group"] = self.user.pw_uid, self.user.pw_gid
            kw["extra_groups"] = []
        res = subprocess.run(cmd, **kw)
        if check and res.returncode != 0:
            raise PgUnavailable(f"{args[0]} failed: {(res.stderr or res.stdout).strip()[-500:]}")
        return res

    def start(self) -> PgCluster:
        self.sock.mkdir()
        if self.user is not None:
            for p in (self.root, self.sock):
                os.chown(p, self.user.pw_uid, self.user.pw_gid)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--no-sync", "--no-instructions")
        self.pg_ctl_start()
        return self

    def pg_ctl_start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=on "
                "-c max_connections=200 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
