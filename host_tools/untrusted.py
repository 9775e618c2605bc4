"""Text that came from a device, a route file or a carrier, made safe for where it is shown.

Item ids, stop ids, addresses, route ids, firmware and board names reach the depot from handhelds
and route files. On a terminal, an escape sequence in one of them could rewrite the screen, set
the window title or hide lines; in a spreadsheet, a cell starting with `=`, `+`, `-`, `@` (or a
tab or CR before them) is run as a formula (`=HYPERLINK(...)`, `=1+1`).

- `shown(text)`: control characters (C0, DEL, C1) and the Unicode bidirectional overrides become
  visible `\\xNN`/`\\uNNNN` escapes; everything else, accents and CJK included, is kept.
- `csv_cell(value)`: a string that a spreadsheet would read as a formula gets a leading `'`
  (OWASP's advice), after `shown`; numbers are left alone.
"""

from __future__ import annotations

from typing import Any

_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {c: "\\x%02x" % c for c in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({c: "\\u%04x" % c for c in _BIDI})
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def shown(text: str) -> str:
    return text.translate(_ESCAPES)


def csv_cell(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        return "'" + shown(value)
    return shown(value)
