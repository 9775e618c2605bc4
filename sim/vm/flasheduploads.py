"""The flashed heap day (sim/vm/flashedday.py) with uploads in flight: app_heap.run(uploads=True).

The same partition and harness, mounted the same way, then `whole_app` is the in-flight sampler
(sim/vm/dayuploads.py's drain) instead of True: appdayrun powers the whole app up as before and
calls it at each checkpoint, where it runs the event loop until the depot acknowledged every record.

A file of its own, not a branch in flashedday.py: that one is compiled from source into the heap
it measures, so any line added there moves the parked day's figures.

argv: as flashedday.py. Prints a line "uploads {json}" after each drain, then appdayrun's line.
"""

import gc
import os
import sys

import vfs  # type: ignore

_part = bytearray(os.stat(sys.argv[6])[6])  # first: the partition, as the shim allocates it
_harness = bytearray(os.stat(sys.argv[7])[6])
for _path, _mem in ((sys.argv[6], _part), (sys.argv[7], _harness)):
    with open(_path, "rb") as _f:
        _f.readinto(_mem)
rom_bytes = sum((len(m) + 31) // 32 * 32 for m in (_part, _harness))  # as the GC holds them
vfs.mount(vfs.VfsRom(_part), "/rom")  # type: ignore[attr-defined]
vfs.mount(vfs.VfsRom(_harness), "/harness")  # type: ignore[attr-defined]
sys.path[:0] = ["/rom", "/rom/lib", "/harness"]
gc.collect()
_before = gc.mem_alloc()
import dayuploads  # type: ignore  # noqa: E402  # from /harness

whole_app = dayuploads.drain
gc.collect()
dayuploads.state[3] = gc.mem_alloc() - _before  # the sampler's own heap, counted against the app's
del _before

import appdayrun  # type: ignore  # noqa: E402, F401  # from /harness
