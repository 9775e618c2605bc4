"""firmware/manifest.py read on the host: the files a device gets, as (source, device path).

The manifest is Python in micropython-lib's style, executed here with the three functions it
may call: metadata(...), package(name, files=..., base_path=...) and root(*files)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

LIB = "/lib"


@dataclass
class Manifest:
    where: Path  # the folder holding manifest.py
    modules: list[tuple[Path, str]] = field(default_factory=list)  # compiled to .mpy under /lib
    entry_points: list[tuple[Path, str]] = field(default_factory=list)  # copied as source to /
    metadata: dict[str, str] = field(default_factory=dict)


def read(path: Path) -> Manifest:
    """Execute the manifest at `path`; every file it names must exist."""
    m = Manifest(path.parent)

    def metadata(**kw: str) -> None:
        m.metadata.update(kw)

    def package(name: str, files: tuple[str, ...], base_path: str = ".") -> None:
        base = (m.where / base_path / name).resolve()
        for f in files:
            m.modules.append((base / f, f"{LIB}/{name}/{f}"))

    def root(*files: str) -> None:
        for f in files:
            m.entry_points.append(((m.where / f).resolve(), "/" + Path(f).name))

    code = compile(path.read_text(), str(path), "exec")
    exec(code, {"metadata": metadata, "package": package, "root": root})
    missing = [str(src) for src, _ in m.modules + m.entry_points if not src.exists()]
    if missing:
        raise FileNotFoundError(f"{path} names missing files: {', '.join(missing)}")
    return m


@contextlib.contextmanager
def firmware() -> Iterator[Manifest]:
    """The installed firmware's manifest, its files readable while the context is open."""
    with resources.as_file(resources.files("firmware")) as pkg:
        yield read(Path(pkg) / "manifest.py")


def boards_dir() -> contextlib.AbstractContextManager[Path]:
    """The installed boards/ folder (board_<name>.py)."""
    return resources.as_file(resources.files("boards"))
