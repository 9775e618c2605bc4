"""The heap a 1,000-stop day's route, fence engine and delivery state take on the 32-bit VM
(MicroPython's WebAssembly port: 4-byte pointers, as on the boards) and on the 64-bit unix port,
the same steps on both, the live heap read after a collection between steps (sim/routeheap.py)."""

from __future__ import annotations

from sim import routeheap


def run(report) -> None:
    h = routeheap.measure(1000)
    note = f"{h['scans_32']} scans recorded on both VMs, the same journal"
    report("peak_heap_bytes_route_1000_32bit", h["state_32"], "B", note)
    report("peak_heap_bytes_route_1000_64bit", h["state_64"], "B", "the same steps on the unix port")
    report("heap_64bit_vs_32bit", h["state_64"] / h["state_32"], "ratio",
           "route + fence engine + delivery state")
    report("heap_modules_64bit_vs_32bit", h["modules_64"] / h["modules_32"], "ratio",
           f"firmware modules from source: {h['modules_64']} B vs {h['modules_32']} B")
