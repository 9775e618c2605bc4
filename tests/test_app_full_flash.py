"""A full flash in the running application (issue 3): when littlefs itself reports no space, the
app remounts the filesystem, reopens the journal and the route, and refuses scans with a message on
the screen until the dock frees blocks. Nothing recorded before is lost, and the first scan after
the dock's acknowledgement is recorded again. `main.App` on the real VM, real littlefs."""

from __future__ import annotations

from pathlib import Path

from host_tools import route_compile
from sim import app_heap, town

VM = (Path(__file__).resolve().parents[1] / "sim" / "vm",)
KEY = bytes(range(64, 96))

_VM = """
import json, os, vfs
import simhw
from flashdev import FlashDevice

simhw.preopen()
from firmware import delivery, hal, main, record

hal.board()  # read now: the host filesystem goes away below

pkg = open(PKG, "rb").read()
plan = open(PLAN, "rb").read().split(b"\\n")
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
    f.write(json.dumps({"device_id": "HH-FULL", "key": KEY_HEX}))
with open("/data/route/active.pkg", "wb") as f:
    f.write(pkg)
app = main.App()
remounts = []
_remount = hal.remount_storage
hal.remount_storage = lambda: remounts.append(1) or _remount()


def scan(code):
    app.on_scan(code)
    print("scan", app.prompt.kind, app.prompt.title, "|", app.prompt.detail, "|", app.journal.space())


n = 0
filler = None
for p in plan:
    if p[:2] == b"F ":
        app.gnss.parse(p[2:])  # the carrier walks to the next door
        continue
    if p[:2] != b"S ":
        continue
    if n == 3:
        # Something else takes the flash (the journal's estimate has not seen it): ENOSPC next.
        filler = open("/filler", "wb")
        try:
            while True:
                filler.write(bytes(4096))
                filler.flush()
        except OSError as e:
            print("filler", e.errno)
    scan(p[2:])
    if n == 3:
        print("remounted", len(remounts), app.journal.no_space, app.route is not None, app.flow is not None)
    if n == 4:
        print("held", [s for s, _ in app.journal.records(1, bytearray(256))])
        filler.close()
        os.remove("/filler")
        app.journal.acknowledge(app.journal.last_seq)  # the dock stored everything
    if n == 5:
        print("after", len(remounts), app.journal.last_seq, app.journal.space())
        break
    n += 1
"""


def test_littlefs_enospc_remounts_refuses_with_a_message_and_keeps_every_record(mpy, tmp_path):
    fc = town.town(seed=11, stops=8, area="north")
    pkg = tmp_path / "route.pkg"
    pkg.write_bytes(route_compile.compile_geojson(fc, key=KEY).package)
    plan = tmp_path / "plan.txt"
    plan.write_bytes(app_heap._plan(fc))
    code = (_VM.replace("PKG", repr(str(pkg))).replace("PLAN", repr(str(plan)))
            .replace("KEY_HEX", repr(KEY.hex())))
    out = mpy(code, heap="512K", extra_paths=VM).splitlines()
    assert out == [
        "scan 1 Delivered | #1 2 Linden Street | ok",
        "scan 1 Delivered | #2 4 Linden Street | ok",
        "scan 1 Delivered | #3 6 Linden Street | ok",
        "filler 28",  # ENOSPC
        "scan 5 NOT RECORDED | out of flash space: dock to upload | full",
        "remounted 1 True True True",  # once; the route is back and takes scans when there is room
        "scan 5 NOT RECORDED | flash full: dock to upload | full",  # still refused, no second remount
        "held [1, 2, 3]",
        "scan 1 Delivered | #5 10 Linden Street | ok",  # the dock freed blocks: recording again
        "after 1 129 ok",  # seq above the lease the remount found: none reused
    ]
