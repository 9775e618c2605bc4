"""What the depot commands print while they work and when they are done: live progress lines and
tables (sequence-number runs are written by host_tools/seqruns.py).

`LiveLines` keeps one line per device. On a terminal each line is redrawn in place. Anywhere else
(a pipe, a log file, CI) it prints plain lines: one at each change of phase, one each time the
phase's progress passes another 10 %, and one at least every `every_s` seconds while the text
changes, so a log shows that a long push is still moving.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TextIO

EVERY_S = 5.0  # longest silence in a log while something is still moving
WIDTH = 120  # a live line is cut here so it never wraps (a wrapped line breaks the redraw)


class LiveLines:
    """One progress line per key, in the order the keys were given."""

    def __init__(self, keys: Iterable[Hashable], label: Callable[[Any], str] = str,
                 stream: TextIO | None = None, every_s: float = EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.keys = list(keys)
        self.labels = {k: label(k) for k in self.keys}
        self.pad = max((len(v) for v in self.labels.values()), default=0)
        self.text = {k: "waiting" for k in self.keys}
        self.every_s = every_s
        self.clock = clock
        self._printed: dict[Hashable, tuple[str, int, float, str]] = {}  # phase, tenth, when, text
        self._lock = threading.Lock()
        self._drawn = False

    def line(self, key: Hashable) -> str:
        return f"{self.labels[key]:<{self.pad}}  {self.text[key]}".rstrip()

    def update(self, key: Hashable, phase: str, detail: str = "", fraction: float | None = None) -> None:
        """`phase` is the step (connecting, writing, records, ...); `fraction` its progress 0..1."""
        text = f"{phase} {detail}".strip()
        with self._lock:
            if self.text.get(key) == text:
                return
            self.text[key] = text
            if self.tty:
                self._redraw()
            elif self._worth_a_line(key, phase, fraction, text):
                self.stream.write(self.line(key) + "\n")
                self.stream.flush()

    def _worth_a_line(self, key: Hashable, phase: str, fraction: float | None, text: str) -> bool:
        now = self.clock()
        tenth = int(fraction * 10) if fraction is not None else -1
        last = self._printed.get(key)
        due = (last is None or last[0] != phase or tenth > last[1] or now - last[2] >= self.every_s)
        if due:
            self._printed[key] = (phase, tenth, now, text)
        return due

    def _redraw(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{len(self.keys)}F")  # back to the first line
        for k in self.keys:
            self.stream.write("\x1b[2K" + self.line(k)[:WIDTH] + "\n")
        self._drawn = True
        self.stream.flush()

    def close(self) -> None:
        """A blank line after the live lines, before what follows (a table)."""
        with self._lock:
            self.stream.write("\n")
            self.stream.flush()


def table(rows: Sequence[Sequence[object]], right: Iterable[int] = ()) -> str:
    """Rows as columns two spaces apart under a ruled header (the first row); the columns whose
    indices are in `right` (numbers) are aligned right."""
    cells = [[str(c) for c in r] for r in rows]
    if not cells:
        return ""
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    rjust = set(right)

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in rjust else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    lines = [fmt(r) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
