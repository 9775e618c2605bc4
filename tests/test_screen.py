"""What the carrier reads: `main.App` on the real VM draws on the board's real framebuf, and the
test reads the screen back cell by cell against the VM's own 8x8 font (an exact reading, no OCR
guesswork). Also writes the screens as PNGs beside the test's files for a person to look at."""

from __future__ import annotations

import json
from pathlib import Path

from host_tools import route_compile
from sim import screenshot, town
from tests.test_delivery import at, east_of

VM = (Path(__file__).resolve().parents[1] / "sim" / "vm",)
KEY = bytes(range(64, 96))

# Reads the display back as text: each 8x8 cell compared with every printable character drawn by
# the same font; an inverse row (a lit band) is read inverted and marked "*". "?" is no character.
_READER = """
import framebuf
from firmware import hal

def _glyphs():
    cell = bytearray(8)
    fb = framebuf.FrameBuffer(cell, 8, 8, framebuf.MONO_HLSB)
    out = {}
    for c in range(32, 127):
        fb.fill(0)
        fb.text(chr(c), 0, 0, 1)
        out.setdefault(bytes(cell), chr(c))
    return out

GLYPHS = _glyphs()

def screen_text():
    d = hal.display()
    rows = []
    for row in range(d.height // 10):
        y = row * 10 + 1
        inverse = d.buf[(y - 1) * d.stride] == 0xFF
        line = ""
        for col in range(d.width // 8):
            cell = bytes((d.buf[(y + k) * d.stride + col] ^ (0xFF if inverse else 0)) for k in range(8))
            line += GLYPHS.get(cell, "?")
        rows.append(("*" if inverse else "") + line.rstrip())
    return rows

def dump(name):
    print("SCREEN", name, json.dumps(screen_text()), hal.display().buf.hex())
"""

_APP = """
import json, os, vfs
import simhw
from flashdev import FlashDevice

simhw.preopen()
from firmware import delivery, hal, main, record

hal.board()
sounds = []
hal.buzzer = sounds.append  # what the carrier hears, in order
dev = FlashDevice(4096, 48)
vfs.VfsLfs2.mkfs(dev)
import firmware
_FW = firmware.__path__  # "firmware" (from the cwd) or absolute: where its submodules are looked for
_FW_DIR = _FW if _FW[0] == "/" else os.getcwd() + "/" + _FW
_FW = _FW if _FW[0] == "/" else "/" + _FW  # relative paths resolve from "/" once it is the flash
vfs.umount("/")
vfs.mount(vfs.VfsLfs2(dev), "/")
vfs.mount(vfs.VfsPosix(_FW_DIR), _FW)  # the firmware stays importable (route_package_check), as on flash
for d in ("/config", "/data", "/data/route"):
    os.mkdir(d)
with open("/config/device.json", "w") as f:
    f.write(json.dumps({"device_id": "HH-SCREEN", "key": KEY_HEX}))
"""


def run(mpy, tmp_path: Path, body: str, pkg: bytes | None = None) -> tuple[dict[str, list[str]], list[str]]:
    src = tmp_path / "route.pkg"
    if pkg is not None:
        src.write_bytes(pkg)
    code = (_APP.replace("KEY_HEX", repr(KEY.hex())) + _READER
            + (f"with open('/data/route/active.pkg', 'wb') as f:\n    f.write({pkg!r})\n" if pkg else "")
            + body + "\nprint('SOUNDS', json.dumps(sounds))\n")
    screens, sounds = {}, []
    for line in mpy(code, heap="512K", extra_paths=VM).splitlines():
        if line.startswith("SCREEN "):
            _, name, rest = line.split(" ", 2)
            rows, fb = rest.rsplit(" ", 1)
            screens[name] = json.loads(rows)
            screenshot.render(bytes.fromhex(fb), 240, 160, tmp_path / f"{name}.png")
        elif line.startswith("SOUNDS "):
            sounds = json.loads(line[7:])
    return screens, sounds


def test_wrap_breaks_between_words_and_marks_what_does_not_fit(mpy):
    out = mpy("""
from firmware import ui
print(ui.wrap("Attempt: reason? #12 Long Address Street 45", 20, 3))
print(ui.wrap("route package /data/route/active.pkg cannot be opened", 20, 3))
print(ui.wrap("one two three four five six seven eight nine", 10, 2))
print(ui.wrap("", 10, 2), ui.wrap("   ", 10, 2), ui.wrap("exactly ten", 11, 1))
""")
    assert out.splitlines() == [
        "['Attempt: reason? #12', 'Long Address Street', '45']",
        "['route package', '/data/route/', 'active.pkg cannot~']",
        "['one two', 'three~']",
        "[] [] ['exactly ten']",
    ]


def test_no_route_says_dock_at_the_depot_and_a_scan_is_refused_aloud(mpy, tmp_path):
    screens, sounds = run(mpy, tmp_path, """
app = main.App()
app.draw()
dump("no-route")
app.on_scan(b"]C0RR473124829GB")
dump("no-route-scan")
""")
    rows = screens["no-route"]
    assert rows[3:7] == ["No route: dock at the depot", "", "", ""]
    assert not any("Next stop" in r or "Route complete" in r for r in rows)
    assert screens["no-route-scan"][3] == "No route: dock at the depot"
    assert sounds == ["error"]


def test_a_damaged_route_is_named_in_whole_words(mpy, tmp_path):
    fc = town.town(seed=5, stops=6, area="north")
    pkg = route_compile.compile_geojson(fc, key=bytes(32)).package  # signed for another device
    screens, _ = run(mpy, tmp_path, "app = main.App()\napp.draw()\ndump('bad-route')\n", pkg=pkg)
    assert screens["bad-route"][3:7] == [
        "No route: dock at the depot", "Route refused: route package", "signature invalid: tampered,",
        "or signed for another device"]


def test_a_second_scan_during_a_question_is_refused_and_the_question_stays(mpy, tmp_path):
    fc = town.town(seed=5, stops=6, area="north")
    pkg = route_compile.compile_geojson(fc, key=KEY).package
    s3, s5 = fc["features"][2], fc["features"][4]
    fix = "".join(f"app.gnss.parse({line.encode()!r})\n" for line in at(*east_of(s3, 48)))
    item3, item5 = s3["properties"]["items"][0], s5["properties"]["items"][0]
    screens, sounds = run(mpy, tmp_path, "app = main.App()\n" + fix + f"""
app.on_scan(b"]C0{item3}")
dump("question")
app.on_scan(b"]C0{item5}")
dump("second-scan")
app.on_key("down")
dump("scrolled")
app.on_key("ok")
dump("recorded")
print("records", [r for r, _ in app.journal.records(1, bytearray(256))])
""", pkg=pkg)
    q = screens["question"]
    assert q[7] == "*Outside fence" and q[8:10] == ["#3 6 Linden Street 47m:", "reason?"]
    assert q[10] == "OUTSIDE 47.5m"
    assert q[11:15] == [">GNSS inaccurate here", " Entrance away from building",
                        " Met addressee elsewhere", " Fence wrong on map"]
    busy = screens["second-scan"]
    assert busy[10] == "*Answer the question first"  # in the verdict's place; the question stays
    assert busy[7:10] == q[7:10] and busy[11:15] == q[11:15]
    assert screens["scrolled"][10:13] == q[10:11] + [" GNSS inaccurate here", ">Entrance away from building"]
    assert screens["recorded"][7] == "*Delivered"
    # the question, the refusal tone for the second scan, silence while scrolling, the chirp
    assert sounds == ["override", "error", "ok"]


def test_the_attempt_reasons_scroll_in_a_window_that_keeps_the_choice_in_view(mpy, tmp_path):
    fc = town.town(seed=5, stops=6, area="north")
    pkg = route_compile.compile_geojson(fc, key=KEY).package
    s2 = fc["features"][1]
    fix = "".join(f"app.gnss.parse({line.encode()!r})\n" for line in at(*town.door(s2)))
    screens, sounds = run(mpy, tmp_path, "app = main.App()\n" + fix + f"""
app.on_key("up")
app.on_scan(b"]C0{s2["properties"]["items"][0]}")
dump("attempt")
for _ in range(6):
    app.on_key("down")
dump("attempt-7")
app.on_key("ok")
r = record.decode(next(iter(app.journal.records(1, bytearray(256))))[1])
sounds.append("record %d reason %d" % (r.outcome, r.reason))
""", pkg=pkg)
    first = screens["attempt"]
    assert first[3] == "ATTEMPT MODE" and first[7] == "*Attempt: reason?"
    assert first[8] == "#2 4 Linden Street" and first[9:16] == [
        ">Addressee absent", " Door locked / no access", " Refused by addressee", " Address not found",
        " Addressee unknown / moved", " Item damaged", " Business closed"]  # attempt reasons only
    assert screens["attempt-7"][9:16] == [
        " Refused by addressee", " Address not found", " Addressee unknown / moved", " Item damaged",
        ">Business closed", " Unsafe to deliver (dog,~", " Payment / ID required"]  # 30 columns
    assert sounds == ["override", "ok", "record 2 reason 7"]  # attempted, Business closed


def test_each_prompt_kind_sounds_its_own_pattern():
    from firmware import delivery, ui

    kinds = {"ready": delivery.P_READY, "recorded": delivery.P_RECORDED, "ask": delivery.P_ASK,
             "refused": delivery.P_REFUSED, "invalid": delivery.P_INVALID, "full": delivery.P_FULL,
             "busy": delivery.P_BUSY}
    assert {name: ui.SOUNDS[k] for name, k in kinds.items()} == {
        "ready": None, "recorded": "ok", "ask": "override", "refused": "error", "invalid": "invalid",
        "full": "error", "busy": "error"}
    assert len(ui.SOUNDS) == len(kinds)
