"""The running application's heap over a 1,000-stop day on the real VM (sim/app_heap.py): modules
as .mpy on littlefs (loaded into RAM) at 256K, and from a ROMFS image (bytecode run in place) at
the 128K goal."""

from sim import app_heap


def run(report) -> None:
    d = app_heap.run(stops=1000, heap="256K")
    report("peak_heap_bytes_1000_stops", d["peak_live_heap"], "B",
           f"live heap after gc, {d['scans']} scans on {d['stops']} stops, -X heapsize=256K "
           f"({d['heap_total']} B usable), modules as .mpy files")
    report("free_heap_bytes_1000_stops", d["least_free"], "B", "least free heap seen during the day")
    report("app_data_heap_bytes_1000_stops", d["peak_live_heap"] - d["heap_before_app"], "B",
           f"beyond the loaded modules ({d['heap_before_app']} B of .mpy modules in RAM)")
    report("peak_heap_vs_256k", d["peak_live_heap"] / d["heap_total"], "ratio", "must stay below 1")
    r = app_heap.run(stops=1000, heap="128K", rom=True)
    rom = r["romfs_bytes"]
    report("peak_heap_bytes_1000_stops_romfs", r["peak_live_heap"] - rom, "B",
           f"same day, firmware in a {rom} B ROMFS image; heap above the image "
           f"{r['heap_total'] - rom} B (the 128K goal); {r['records']} of {r['scans']} scans recorded")
    report("free_heap_bytes_1000_stops_romfs", r["least_free"], "B", "least free heap seen, ROMFS")
    report("module_heap_romfs_vs_mpy", (r["heap_before_app"] - rom) / d["heap_before_app"], "ratio",
           "RAM the loaded firmware takes from ROMFS over from .mpy files")
    report("peak_heap_romfs_vs_128k", (r["peak_live_heap"] - rom) / (128 * 1024), "ratio",
           "must stay below 1")
