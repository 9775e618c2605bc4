"""The running application's heap over a 1,000-stop day on the real VM (sim/app_heap.py): on what
`depot flash` deploys to the sim board (a ROMFS image on its partition, bytecode run in place) at
the 128K goal; as .mpy files on littlefs (`--no-romfs`: loaded into RAM) at 256K; and from a ROMFS
image the harness builds itself (the earlier measurement, kept for comparison)."""

import tempfile
from pathlib import Path

from sim import app_heap, mpy


def run(report) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-flashed-") as tmp:
        partition = app_heap.flash_virtual_handheld(Path(tmp))  # `depot flash --romfs`, real mpremote
        f = app_heap.run(stops=1000, heap="128K", flashed=partition)
        t = app_heap.run(stops=1000, heap="128K", flashed=partition, https=True)
        u = app_heap.run(stops=1000, heap="128K", flashed=partition, uploads=True)
        k = app_heap.run(stops=1000, heap="128K", flashed=partition, dock=True)
    outside = f["romfs_bytes"]  # the partition and the harness image: memory-mapped flash on a board
    above = f["heap_total"] - outside
    excess = max(0, above - mpy.usable_heap(128 * 1024))  # never credit the app with the rounding
    report("peak_heap_bytes_1000_stops", f["peak_live_heap"] - outside, "B",
           f"live heap after gc, {f['scans']} scans on {f['stops']} stops, on what `depot flash` deploys "
           f"to the sim board (ROMFS partition, bytecode in place), -X heapsize=128K above the partition")
    report("free_heap_bytes_1000_stops_flashed", f["least_free"] - excess, "B",
           f"least free heap over the day at 128K ({above - excess} B usable above the partition) on a "
           "virtual handheld flashed by `depot flash --romfs`, the whole app as main.run() starts it: "
           "all five streams open (GNSS, scanner, keys, modem, dock: quiet FIFOs) and its six tasks, "
           "started as main.start() starts them, parked at their first await through the day; goal 16384")
    report("free_heap_bytes_1000_stops_flashed_https", t["least_free"] - excess, "B",
           "the same day configured for https as `depot flash --server-ca` leaves a field device "
           "(the depot's EC CA in /config/server_ca.pem; modem_tls loaded and let go once, as after the "
           "first upload); goal 16384")
    extra = u["harness_extra_bytes"]  # the in-flight sampler's own heap: not the app's
    report("free_heap_bytes_1000_stops_flashed_uploading", u["least_free_uploading"] + extra - excess, "B",
           f"the https day with its uploads in flight: after every 50 scans the device's loop runs until "
           f"a real depot ingest server (real TLS, through the board's modem emulator on the modem pty) "
           f"has acknowledged every record ({u['records_acknowledged']} in the store, each once; "
           f"{u['posts']} posts, {u['tls_handshakes']} TLS sessions); least free after a collection at "
           f"every turn of the loop, the sampler's own {extra} B added back "
           f"({u['least_free_uploading'] - excess} B as measured); goal 16384")
    report("free_heap_bytes_1000_stops_flashed_after_uploads", u["least_free_parked"] + extra - excess, "B",
           "the same day's parked checkpoints (every 50 scans, tasks parked) once its uploads really ran, "
           "beside free_heap_bytes_1000_stops_flashed_https, where none has")
    report("free_heap_bytes_1000_stops_flashed_docked",
           k["least_free"] + k["harness_extra_bytes"] - excess, "B",
           f"the same day docked all day: the depot syncs it again and again over an unpaced dock link "
           f"(`depot sync`, real dock protocol; {k['dock_syncs']} syncs carried {k['dock_records']} records, "
           f"the uploader standing down while docked), least free at every turn of the loop and at the "
           f"parked checkpoints, the sampler's own {k['harness_extra_bytes']} B added back; goal 16384")
    d = app_heap.run(stops=1000, heap="256K")
    report("peak_heap_bytes_1000_stops_mpy", d["peak_live_heap"], "B",
           f"the same day with `depot flash --no-romfs`: .mpy files on littlefs, -X heapsize=256K "
           f"({d['heap_total']} B usable)")
    report("free_heap_bytes_1000_stops_mpy", d["least_free"], "B", "least free heap seen, .mpy on littlefs")
    report("app_data_heap_bytes_1000_stops", d["peak_live_heap"] - d["heap_before_app"], "B",
           f"beyond the loaded modules ({d['heap_before_app']} B of .mpy modules in RAM)")
    report("peak_heap_vs_256k", d["peak_live_heap"] / d["heap_total"], "ratio", "must stay below 1")
    r = app_heap.run(stops=1000, heap="128K", rom=True)
    rom = r["romfs_bytes"]
    report("peak_heap_bytes_1000_stops_romfs", r["peak_live_heap"] - rom, "B",
           f"same day, firmware and harness in one {rom} B ROMFS image the harness builds; heap above "
           f"the image {r['heap_total'] - rom} B; {r['records']} of {r['scans']} scans recorded")
    report("free_heap_bytes_1000_stops_romfs", r["least_free"], "B", "least free heap seen, ROMFS")
    report("module_heap_romfs_vs_mpy", (r["heap_before_app"] - rom) / d["heap_before_app"], "ratio",
           "RAM the loaded firmware takes from ROMFS over from .mpy files")
    report("peak_heap_romfs_vs_128k", (f["peak_live_heap"] - outside) / (128 * 1024), "ratio",
           "flashed: must stay below 1")
