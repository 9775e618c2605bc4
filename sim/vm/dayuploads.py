"""Uploads in flight during the heap day (app_heap.run(uploads=True), sim/vm/flasheduploads.py).

The day (sim/vm/appdayrun.py) is driven synchronously between turns of the event loop, every task
parked. At each checkpoint appdayrun calls `drain`, which runs the loop until the uploader has
had every record journalled so far acknowledged by the depot (the journal's watermark reaches its
last record) and has gone idle (the post's driver released), through the real modem UART: a pty
whose host end is the modem emulator, real TLS to a real ingest server. The app's other tasks
(screen, streams, dock) run too, as on a device.

The sampler is the drain's own coroutine: it yields with sleep_ms(0), so it runs between any two
steps of the other tasks, and at each turn it collects and takes the free heap. The least free
is therefore taken at every await point of the uploader and the modem driver: the TLS module, the
AT command strings, the HTTP head and the modem's answer are all counted. Until the uploader
notices the day's kick (it looks once a second, uploader._POLL_MS) it sleeps and holds nothing
new, and the only other task that wakes is the screen's, once a second: the sampler then yields
for _IDLE_MS, so a second's wait is not thousands of collections. Docked (app_heap.run(dock=True))
the dock's session runs meanwhile, so every turn is sampled.

Small on purpose (two functions, a list): it is loaded before the app and its heap counts against
the app's. `sampler_bytes` is what it holds: the module (measured by flasheduploads.py) and a
drain's task and coroutine. asyncio and json are imported at the first drain, when the app has
loaded them. Each new least free prints where it was seen (app_heap's `low_point`). A drain that
does not end within _TIMEOUT_MS raises with the uploader's last error,
and the run fails with it.
"""

import gc
import os
import sys
import time

_TIMEOUT_MS = 20000  # one checkpoint's records (50: two batches) with the modem's power-up
_IDLE_MS = 5
# least free seen while the loop ran, drains, turns of the loop sampled, the sampler's own bytes
# (this module, set by flasheduploads.py), the largest its task and coroutine took in a drain
state = [1 << 30, 0, 0, 0, 0]
_DOCKED = bool(os.getenv("SIM_DAY_DOCK"))  # app_heap.run(dock=True): the dock's awaits count too


def drain():
    """appdayrun's checkpoint: run the loop until what the day journalled is acknowledged."""
    import asyncio
    import json

    app = sys.modules["appdayrun"].app
    j = app.journal
    if _busy(app.uploader, j):
        state[1] += 1
        gc.collect()
        before = gc.mem_alloc()
        t = asyncio.create_task(_until_acknowledged(asyncio, app.uploader, j))  # asyncio.run's two
        gc.collect()
        state[4] = max(state[4], gc.mem_alloc() - before)
        asyncio.run_until_complete(t)  # type: ignore[attr-defined]
        print("uploads", json.dumps({"least_free_uploading": state[0], "drains": state[1],
                                     "turns_sampled": state[2], "sampler_bytes": state[3] + state[4],
                                     "watermark": j.watermark}))


def _busy(u, j):
    """Records not yet acknowledged, or the post's driver (modem_tls) not yet released: the
    uploader lets it go after its last acknowledgement, at its next await."""
    return j.watermark < j.last_seq or (u is not None and getattr(u.modem, "driver", None) is not None)


def _low(free, u):
    """Where a new least free was seen: one line for the host (app_heap's `low_point`), printed at
    once so nothing of it stays on the heap for the next sample."""
    import json

    m = getattr(u, "modem", None)
    driver = getattr(m, "driver", None)
    line = getattr(m, "line", b"")[:getattr(m, "n", 0)]
    print("low", json.dumps({"free": free, "drain": state[1],
                             "driver": type(driver).__name__ if driver is not None else None,
                             "modem_line": repr(bytes(line)),
                             "modules": sorted(k[9:] for k in sys.modules if k.startswith("firmware."))}))


async def _until_acknowledged(asyncio, u, j):
    start = time.ticks_ms()  # type: ignore[attr-defined]
    while _busy(u, j):
        gc.collect()
        free = gc.mem_free()
        if free < state[0]:
            state[0] = free
            _low(free, u)
        state[2] += 1
        if time.ticks_diff(time.ticks_ms(), start) > _TIMEOUT_MS:  # type: ignore[attr-defined]
            raise RuntimeError("uploads stalled: watermark %d of %d after %d ms; uploader: %s" % (
                j.watermark, j.last_seq, _TIMEOUT_MS, u.last_error if u else "none"))
        # woken: kicked but not yet noticed, so still in its idle wait (cleared when it wakes)
        await asyncio.sleep_ms(_IDLE_MS if u is not None and u.woken and not _DOCKED else 0)  # type: ignore[attr-defined]
