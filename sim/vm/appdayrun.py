"""The day sim/vm/appday.py runs, after it mounted the ROMFS image (if any): see its docstring."""

import gc
import json
import os
import sys

import micropython
import vfs  # type: ignore

import __main__  # type: ignore  # sim/vm/appday.py: rom_bytes

rom_bytes = __main__.rom_bytes  # type: ignore[attr-defined]
# flashedday.py: the whole app powers up as main.run() starts it (every stream open, every task
# parked at its first await) before the day; appday.py keeps the earlier, narrower measurement
whole_app = getattr(__main__, "whole_app", False)

import simhw  # type: ignore  # noqa: E402
from flashdev import FlashDevice  # type: ignore  # noqa: E402

simhw.preopen()  # host files the hal will ask for, opened while the host fs is still mounted
from firmware import hal  # noqa: E402

hal.board()  # reads the flashed board definition now, as a device reads its /lib/firmware/board.mpy


def load_firmware():
    from firmware import main

    if not rom_bytes:  # from the host fs, which goes away: now. From ROMFS, main.App.tasks imports
        # them when it opens their ports, after the upload batch buffer, as on a device; and the
        # route's proof, which the first route_package.RoutePackage imports and lets go
        from firmware import dock, modem, route_package_check, uploader  # noqa: F401
    return main


if not rom_bytes:
    main = load_firmware()  # from the host fs, before it goes away

image, package, plan_path, device_id, key_hex = sys.argv[1:6]
server = {"server_url": "http://127.0.0.1:1"}
ca_path = os.getenv("SIM_DAY_SERVER_CA")
ca = None
if ca_path:  # app_heap.run(https=True): read while the host fs is still mounted
    with open(ca_path) as f:
        ca = f.read()
    server = {"server_url": "https://127.0.0.1:1"}
plan = open(plan_path, "rb")
src = open(package, "rb")
dev = FlashDevice(4096, 512, image, wear=False)  # a board's flash driver counts no wear in its heap
vfs.VfsLfs2.mkfs(dev)  # type: ignore[arg-type]  # the block protocol, not the stub's ABC
fs = vfs.VfsLfs2(dev)  # type: ignore[arg-type]
vfs.umount("/")
vfs.mount(fs, "/")
for d in ("/config", "/data", "/data/route"):
    os.mkdir(d)
with open("/config/device.json", "w") as f:
    server["device_id"], server["key"] = device_id, key_hex
    f.write(json.dumps(server))
if ca:
    with open("/config/server_ca.pem", "w") as f:  # as depot flash --server-ca writes it
        f.write(ca)
del server, ca_path, ca
buf = bytearray(512)
with open("/data/route/active.pkg", "wb") as f:
    while True:
        n = src.readinto(buf)
        if not n:
            break
        f.write(buf[:n] if n < len(buf) else buf)
src.close()
del buf, src  # the setup's copy buffer: a board's heap never held it

if rom_bytes:
    # As on a device: the flash is ready before the firmware loads, so the setup's garbage is
    # not left in holes between the modules' objects (ROMFS stays mounted at /rom).
    gc.collect()
    main = load_firmware()
gc.collect()
before = gc.mem_alloc()
if whole_app:
    import asyncio

    async def _power_up():
        """main.run() up to the day: the app, its six tasks started and the ready beep as on a
        device; one more turn of the loop after main.start takes each task to its steady await (a
        stream read or a sleep), where it stays, its coroutine and locals alive, while the day
        below runs."""
        a = main.App()
        a.draw()
        await main.start(a)
        await asyncio.sleep_ms(0)
        return a

    app = asyncio.run(_power_up())
    # as after the day's first upload: the post's driver (modem_tls for https, modem_http for
    # http) was loaded for it and released when the uploader went idle, leaving its interned
    # names behind (the measured tasks stay parked, so no post runs here)
    if os.getenv("SIM_DAY_SERVER_CA"):
        from firmware.modem_tls import TLS as _Driver
    else:
        from firmware.modem_http import HTTP as _Driver
    _m = app.uploader.modem  # type: ignore[union-attr]
    _m.driver = _Driver(_m)
    del _Driver
    asyncio.run(_m.release())
    del _m
    # as after the morning's dock sync: the session's modules were loaded when the depot first
    # spoke and let go when it fell quiet (dock._unload), leaving their interned names behind
    if app.dock is not None:
        from firmware import dock_session  # noqa: F401

        del dock_session
        sys.modules["firmware.dock"]._unload()
else:
    app = main.App()
    tasks = app.tasks()  # dock, modem and uploader objects with their buffers, as at power-up
gc.collect()
peak = started = gc.mem_alloc()
least_free = gc.mem_free()
scans = 0
fixes = 0


def checkpoint():
    """The heap after a collection: mem_info's "max free sz" line is the largest free block (the
    host reads it from stdout), so a heap shredded by objects kept between fixes shows here."""
    gc.collect()
    micropython.mem_info()
    if whole_app is not True and whole_app:  # app_heap.run(uploads=True): sim/vm/dayuploads.py
        whole_app()  # drains the uploads (no new name here: each would cost the parked day heap)


checkpoint()
while True:
    raw = plan.readline()
    if not raw:
        break
    kind, data = raw[0], raw[2:].rstrip(b"\r\n")
    if kind == 70:  # F: an NMEA sentence
        if app.gnss.parse(data) == 1:  # RMC: once a second
            fixes += 1
    elif kind == 83:  # S: a scan
        app.on_scan(data)
        scans += 1
        if scans == 1:
            checkpoint()  # the first record written: the journal's open segment is working set now
        if scans % 50 == 0:
            gc.collect()
            peak = max(peak, gc.mem_alloc())
            least_free = min(least_free, gc.mem_free())
            checkpoint()
    elif kind == 75:  # K: a key
        app.on_key(data.decode())
checkpoint()
peak = max(peak, gc.mem_alloc())
assert app.journal is not None and app.route is not None, app.status.fault
print(json.dumps({"romfs_bytes": rom_bytes, "whole_app": whole_app is not False, "scans": scans,
                  "fixes": fixes, "records": app.journal.last_seq,
                  "heap_before_app": before,
                  "heap_after_start": started, "peak_live_heap": peak, "least_free": least_free,
                  "heap_total": gc.mem_alloc() + gc.mem_free(), "route": app.route.route_id,
                  "stops": app.route.stop_count}))
