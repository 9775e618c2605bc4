"""The running application's heap over a 1,000-stop day on the real VM (sim/appday.py)."""

from sim import appday


def run(report) -> None:
    d = appday.run(stops=1000, heap="256K")
    report("peak_heap_bytes_1000_stops", d["peak_live_heap"], "B",
           f"live heap after gc, {d['scans']} scans on {d['stops']} stops, -X heapsize=256K "
           f"({d['heap_total']} B usable)")
    report("free_heap_bytes_1000_stops", d["least_free"], "B", "least free heap seen during the day")
    report("app_data_heap_bytes_1000_stops", d["peak_live_heap"] - d["heap_before_app"], "B",
           f"beyond the loaded bytecode ({d['heap_before_app']} B of .mpy modules in RAM; "
           "frozen into flash on a device build)")
    report("peak_heap_vs_256k", d["peak_live_heap"] / d["heap_total"], "ratio", "must stay below 1")
