"""Board definitions (boards/board_<name>.py) read on the host, without importing device code."""

import ast
from importlib import resources
from pathlib import Path

BOARDS = Path(str(resources.files("boards")))  # the installed package's folder (wheels install unzipped)


def path(name: str) -> Path:
    p = BOARDS / ("board_" + name.replace("-", "_") + ".py")
    if not p.exists():
        raise KeyError(f"no board {name!r}: choose one of {', '.join(names())}")
    return p


def check(name: str) -> None:
    """A board name the user typed: DepotError (one line, the choices) when there is no such board."""
    from host_tools.errors import DepotError

    try:
        path(name)
    except KeyError:
        raise DepotError(f"no board named {name}", f"choose one of {', '.join(names())}") from None


def names() -> list[str]:
    return sorted(load_file(p)["name"] for p in BOARDS.glob("board_*.py"))


def load_file(p: Path) -> dict:
    for node in ast.parse(p.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "BOARD":
            return ast.literal_eval(node.value)
    raise ValueError(f"{p} defines no BOARD")


def load(name: str) -> dict:
    return load_file(path(name))


def romfs(bdef: dict) -> dict | None:
    """The board's ROMFS partition, {"bytes": N, "block_size": B}, or None when it has none
    (MicroPython before 1.25, or a port built without MICROPY_VFS_ROM)."""
    part = bdef.get("romfs")
    return dict(part) if part and part.get("bytes") else None
