"""Files only the depot's own account may read: the store (device keys), its -wal and -shm, route
packages signed per device, key and token files. Folders 0700, files 0600, whatever the umask:
modes are set with chmod after creation, since mkdir's and open's modes are masked by it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def folder(path: str | os.PathLike[str], restrict_existing: bool = True) -> Path:
    """Create the folder (and parents) if missing; the folder itself ends 0700. An existing one is
    restricted too unless `restrict_existing` is False (a folder the user named that we did not
    create, such as /tmp for `--store /tmp/x.sqlite3`, keeps its mode)."""
    p = Path(path)
    existed = p.is_dir()
    p.mkdir(parents=True, exist_ok=True)
    if not existed or restrict_existing:
        os.chmod(p, FOLDER_MODE)
    return p


def touch(path: str | os.PathLike[str]) -> Path:
    """Create the file empty if missing; either way it ends 0600."""
    p = Path(path)
    fd = os.open(p, os.O_CREAT | os.O_RDWR, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return p


def restrict(path: str | os.PathLike[str]) -> None:
    """chmod 0600 if the file exists (a -wal or -shm file SQLite has not created yet is fine)."""
    try:
        os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass


def write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write atomically (a reader never sees half a file) as a 0600 file in a 0700 folder."""
    p = Path(path)
    folder(p.parent, restrict_existing=False)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name, suffix=".tmp")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
