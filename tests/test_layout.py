"""What ships to a device is what firmware/manifest.py says, and every import names the package."""

import ast
from pathlib import Path

from firmware import layout
from host_tools import flash, manifest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE_MODULES = {p.stem for p in (ROOT / "firmware").glob("*.py")} - {"__init__", "manifest"}
BOARD_MODULES = {p.stem for p in (ROOT / "boards").glob("*.py")} - {"__init__"}


def test_the_manifest_ships_every_firmware_module_and_nothing_else():
    with manifest.firmware() as m:
        shipped = {dest for _, dest in m.modules}
        roots = {dest for _, dest in m.entry_points}
    assert shipped == {f"/lib/firmware/{name}.py" for name in FIRMWARE_MODULES | {"__init__"}}
    assert roots == {"/boot.py", "/main.py"}


def test_the_image_is_the_manifest_compiled_plus_the_board():
    image = flash.build("sim")
    paths = [p for p, _ in image.files]
    assert sorted(paths) == sorted(
        ["/boot.py", "/main.py", f"{layout.FIRMWARE_DIR}/board.mpy"]
        + [f"{layout.FIRMWARE_DIR}/{name}.mpy" for name in FIRMWARE_MODULES | {"__init__"}])
    assert all(data.startswith(b"M") for p, data in image.files if p.endswith(".mpy"))  # mpy header
    assert dict(image.files)["/main.py"] == (ROOT / "firmware" / "entry" / "main.py").read_bytes()


def test_no_module_imports_a_firmware_or_board_module_outside_its_package():
    flat = FIRMWARE_MODULES | BOARD_MODULES | {"route_package_writer", "board"}
    found = []
    for path in ROOT.glob("**/*.py"):
        if {".venv", "typings", "build"} & set(path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n in flat]
    assert found == []
