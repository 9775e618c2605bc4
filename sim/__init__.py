"""The virtual handheld: runs the real firmware on the real MicroPython unix port."""

import host_tools  # noqa: F401  (puts firmware/ on sys.path: sim imports the shared formats too)
