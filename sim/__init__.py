"""The virtual handheld: runs the real firmware on the real MicroPython unix port."""
