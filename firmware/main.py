"""The carrier's application: one asyncio task per device stream (GNSS, scan engine, keys, dock,
modem) over the hal, the delivery flow in between, and the screen refreshed once a second.

Everything durable happens in the journal before the carrier hears a confirmation."""

import asyncio
import binascii
import gc
import json
import os
import time

from firmware import __version__ as VERSION
from firmware import delivery, geofence, hal, journal, layout, nmea, route_package, scan_code, sign, ui

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

_BATCH_BYTES = const(3072)  # an upload batch of 32 records (uploader.BATCH) with its header
_RX_BYTES = const(128)  # what one read of the GNSS, scanner or key stream takes
_ROUTE_SHARE = const(4)  # a route package may take a quarter of the flash (active + incoming + journal)
NO_ROUTE = "No route: dock at the depot"
# Collect after this many bytes are allocated, not only when the heap is exhausted: garbage then
# never climbs to the top of the heap, where the objects alive at the next collection (a prompt,
# the screen's strings) would stay pinned and split the largest free block (tests/test_app_heap.py).
_GC_EVERY = const(8192)
_IDLE_MS = const(60000)


def _load_config():
    try:
        with open(layout.CONFIG) as f:
            cfg = json.load(f)
        return cfg["device_id"], binascii.unhexlify(cfg["key"]), cfg.get("server_url", "")
    except (OSError, ValueError, KeyError):
        return "", b"", ""


class App:
    def __init__(self):
        self.device_id, self.key, self.server_url = _load_config()
        self.status = ui.Status()
        self.screen = ui.Screen(hal.display())
        self.gnss = nmea.NMEA()
        self.journal = None
        self.flow = None
        self.route = None
        self.uploader = None
        self.dock = None
        self.docked_ms = None  # ticks of the last dock message: "DOCKED" while a session talks
        self.idle = delivery.Prompt().set(delivery.P_READY, "Ready", "Scan a parcel")
        self.prompt = self.idle
        for d in (layout.DATA, layout.JOURNAL, layout.ROUTE_DIR, layout.UPLOAD_DIR):
            try:
                os.mkdir(d)
            except OSError:
                pass  # exists
        try:
            self.journal = journal.Journal(layout.JOURNAL)
        except Exception as e:  # a journal that cannot open must not take the screen with it
            self.status.fault = "journal: %s" % e
        if not self.device_id:
            self.status.fault = "not enrolled: flash at the depot"
        self.load_route()

    def save_key(self, key):
        """A key the depot rotated over an authenticated dock session: into the config first
        (write new, rename: the old key or the new one, never half), then into the uploader."""
        with open(layout.CONFIG) as f:
            cfg = json.load(f)
        cfg["key"] = binascii.hexlify(key).decode()
        with open(layout.CONFIG + ".tmp", "w") as f:
            json.dump(cfg, f)
        os.rename(layout.CONFIG + ".tmp", layout.CONFIG)
        self.key = key
        if self.uploader is not None:
            self.uploader.set_key(key)

    # --- route ---------------------------------------------------------------------------------

    def load_route(self):
        """(Re)open the active route. A package that fails its checks is refused: scans stay off
        until the depot loads a good one, and the journal is untouched."""
        if self.route is not None:
            self.route.close()
            self.route = self.flow = None
        try:
            os.stat(layout.ACTIVE_ROUTE)
        except OSError:  # none loaded yet: the usual first morning, nothing to explain
            self.idle.set(delivery.P_READY, NO_ROUTE)
            return
        try:
            self.route = route_package.RoutePackage(layout.ACTIVE_ROUTE, self.key)
        except route_package.PackageError as e:
            self.idle.set(delivery.P_READY, NO_ROUTE, "Route refused: %s" % e)
            return
        if self.journal is not None:
            self.flow = delivery.Delivery(self.route, geofence, scan_code.parse, self.gnss, self.journal,
                                          self.device_id, hal.time_s)
            self._load_progress()
            self.idle.set(delivery.P_READY, "Route " + self.route.route_id,
                          "%d stops. Scan a parcel" % self.route.stop_count)

    def _load_progress(self):
        try:
            with open(layout.PROGRESS, "rb") as f:
                data = f.read()
        except OSError:
            return
        v = self.flow.visited  # type: ignore[union-attr]
        if data[:8] == self.route.package_hash and len(data) == 8 + len(v):  # type: ignore[union-attr]
            v[:] = data[8:]

    def _save_progress(self):
        """After the beep, off the durable path: the journal is the truth, this is a hint for the
        screen, so a power cut here only shows a visited stop as next."""
        tmp = layout.PROGRESS + ".new"
        try:
            with open(tmp, "wb") as f:
                f.write(self.route.package_hash)  # type: ignore[union-attr]
                f.write(self.flow.visited)  # type: ignore[union-attr]
            os.rename(tmp, layout.PROGRESS)
        except OSError:
            pass  # a full flash refuses scans elsewhere; the hint can wait

    # --- events --------------------------------------------------------------------------------

    def on_scan(self, raw):
        if self.flow is None or self.status.fault:
            p = self.idle
            hal.buzzer("error")
        else:
            try:
                p = self.flow.scan(raw)
            except route_package.PackageError:  # the route file changed under us (flash damage)
                self.load_route()  # refused again at open: scans stop with the reason on screen
                p = self.idle
                hal.buzzer("error")
            else:
                self._after(p)
        self.prompt = p
        self.draw()

    def _remount(self):
        """littlefs ran out of space: remount so it starts again from what is on flash, and reopen
        the journal (which stays full, refusing scans, until the dock frees blocks) and the route."""
        j = self.journal
        # every open file is closed before the unmount: one closed after it would write stale state
        if self.route is not None:
            self.route.close()
            self.route = self.flow = None
        if self.dock is not None:
            self.dock.inbox.close()  # a route push in progress resumes at the next PUT_BEGIN
        j.close()  # type: ignore[union-attr]
        err = hal.remount_storage()
        if not err:
            try:
                j.reopen()  # type: ignore[union-attr]
            except Exception as e:  # noqa: BLE001  # the screen says it; the flash keeps the rest
                err = "journal: %s" % e
        if err:
            self.status.fault = err
            return
        self.load_route()

    def on_key(self, name):
        if self.flow is None:
            return
        self.prompt = self.flow.key(name)
        if self.prompt.fresh:  # scrolling a question's choices, or a key with no use, plays nothing
            self._after(self.prompt)
        self.draw()

    def _after(self, p):
        sound = ui.SOUNDS[p.kind]
        if sound:
            hal.buzzer(sound)  # only after journal.append returned: the record is on flash
            hal.led(sound)
        if p.kind == delivery.P_FULL and self.journal is not None and self.journal.needs_remount:
            self._remount()
        if p.kind == delivery.P_RECORDED:
            self._save_progress()
            if self.uploader is not None:
                self.uploader.kick()

    def on_dock(self, what, value):
        if what == "route":
            self.load_route()
        self.docked_ms = hal.ticks_ms()
        self.draw()

    # --- screen --------------------------------------------------------------------------------

    def draw(self):
        s = self.status
        g = self.gnss
        s.docked = self.docked_ms is not None and time.ticks_diff(hal.ticks_ms(), self.docked_ms) < 30000
        if g.valid and g.age_ms() < 10000:
            s.gnss = "GPS %dsv %d.%d" % (g.sats, g.hdop // 100, g.hdop // 10 % 10)
        elif g.in_view:  # acquiring: satellites heard (SNR above 0) of those in view, from GSV
            s.gnss = "NO FIX %d/%dsv" % (g.tracked, g.in_view)
        else:
            s.gnss = "NO FIX"
        if self.journal is not None:
            s.pending = self.journal.pending()
            s.space = self.journal.space()
        mv = hal.battery_mv()
        s.battery_pct = max(0, min(100, (mv - 3300) // 9))  # 3.3 V empty, 4.2 V full (Li-ion)
        if self.uploader is not None and self.uploader.last_ok:
            t = self.uploader.last_ok % 86400
            s.last_upload = "%02d:%02d" % (t // 3600, t // 60 % 60)
        label = None  # no route: the screen says so instead of a next stop
        if self.flow is not None:
            label = ""
            i = self.flow.next_stop()
            if i >= 0:
                st = self.route.stop(i)  # type: ignore[union-attr]
                label = "#%d %s" % (st.seq, st.address)
        self.screen.draw(s, self.prompt, label, self.flow is not None and self.flow.attempt_mode)

    # --- tasks ---------------------------------------------------------------------------------

    async def gnss_task(self, stream, buf):
        reader = asyncio.StreamReader(stream)
        while True:
            n = await reader.readinto(buf)  # type: ignore[attr-defined]
            if n:
                self.gnss.feed(buf, n)

    async def line_task(self, stream, buf, handler):
        """Lines ended by CR or LF: a scan engine's default suffix is a bare CR."""
        reader = asyncio.StreamReader(stream)
        line = bytearray()
        while True:
            n = await reader.readinto(buf)  # type: ignore[attr-defined]
            for i in range(n):
                c = buf[i]
                if c in (10, 13):
                    if line:
                        handler(bytes(line))
                        line = bytearray()
                elif len(line) < 128:  # longer is noise, not a barcode: drop it
                    line.append(c)

    async def refresh_task(self):
        while True:
            self.draw()
            await asyncio.sleep_ms(1000)  # type: ignore[attr-defined]

    def tasks(self):
        gc.collect()  # the buffers below are allocated once, for the whole day: keep them unfragmented
        gc.threshold(_GC_EVERY)  # type: ignore[attr-defined]  # MicroPython's gc
        t = [self.refresh_task()]
        # One read buffer for the three input tasks: a task's stream read happens when the loop
        # resumes it, and the task has used every byte before its next await, so no other task
        # ever reads into it while those bytes are pending.
        rx = bytearray(_RX_BYTES)
        s = hal.open_uart("gnss")
        if s is not None:
            t.append(self.gnss_task(s, rx))
        s = hal.open_uart("scanner")
        if s is not None:
            t.append(self.line_task(s, rx, self.on_scan))
        s = hal.open_keys()
        if s is not None:
            t.append(self.line_task(s, rx, lambda b: self.on_key(b.decode())))  # a key's name a line
        if self.journal is None or not self.device_id:
            hal.release_board()
            return t
        board = hal.board()
        # the largest buffer (the upload batch) first, while the freed heap is least fragmented
        signer = sign.Signer(self.key)  # one for the uploader and the dock: a rotation rekeys both
        s = hal.open_uart("modem")
        if s is not None and self.server_url:
            from firmware import modem, uploader

            # one buffer for the upload batch and the modem's answer: the body is all sent first
            batch = bytearray(_BATCH_BYTES)
            m = modem.Modem(s, board["modem"]["dialect"], board["modem"]["apn"], ca=layout.SERVER_CA,
                            resp=batch)
            self.uploader = uploader.Uploader(self.journal, m, self.device_id, self.key, self.server_url,
                                              state_dir=layout.UPLOAD_DIR, signer=signer, buf=batch)
            t.append(self.uploader.run())
        s = hal.open_uart("dock")
        if s is not None:
            from firmware import dock

            fl = board["flash"]
            self.dock = dock.Dock(s, self.journal, self.device_id, self.key, layout.ROUTE_DIR,
                                  status=self.on_dock, firmware=VERSION, board=board["name"],
                                  battery=hal.battery_mv, set_time=hal.set_time,
                                  route_max=fl["block_size"] * fl["block_count"] // _ROUTE_SHARE,
                                  save_key=self.save_key, signer=signer, lender=self.uploader)
            t.append(self.dock.run())
        hal.release_board()  # all of it is open now
        return t


def _fail(loop, context):
    """A task that raises ends the app, as under gather: out of asyncio.run, into main()."""
    raise context["exception"]


async def start(app):
    """Each task on its own, not under asyncio.gather, whose state held 1.6 KB of the heap all day."""
    asyncio.get_event_loop().set_exception_handler(_fail)
    for t in app.tasks():
        asyncio.create_task(t)
    await asyncio.sleep_ms(0)  # type: ignore[attr-defined]  # every task has reached its first await
    hal.buzzer("ready")


async def run():
    app = App()
    app.draw()
    await start(app)
    while True:  # the tasks do the work
        await asyncio.sleep_ms(_IDLE_MS)  # type: ignore[attr-defined]


def main():
    try:
        asyncio.run(run())
    finally:
        asyncio.new_event_loop()  # so the REPL after Ctrl-C starts clean, as on a board

