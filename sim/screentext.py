"""What the carrier reads on a virtual handheld's screen, as text rows, so a script can wait for what
a person waits for ("ATTEMPT MODE", the reason they mean to pick) instead of sleeping.

The firmware draws with framebuf's 8x8 font on rows 10 px apart (firmware/ui.py). Each cell is
read back exactly against that same font, rendered once by the MicroPython VM: no OCR guesswork. A
row drawn inverse (a lit band: titles, the status line) is read inverted and marked "*"; a cell
that is no character reads "?".
"""

from __future__ import annotations

import functools

from sim import mpy

_CELL = 8
_ROW_PX = _CELL + 2  # firmware/ui.py: a text row is 10 px, its text 1 px below the row's top

# Prints each printable character's 8 bytes (MONO_HLSB, one byte a pixel row) as hex, one a line.
_FONT_DUMP = """
import framebuf
cell = bytearray(8)
fb = framebuf.FrameBuffer(cell, 8, 8, framebuf.MONO_HLSB)
for c in range(32, 127):
    fb.fill(0)
    fb.text(chr(c), 0, 0, 1)
    print(c, bytes(cell).hex())
"""


@functools.cache
def glyphs() -> dict[bytes, str]:
    """Cell bitmap -> character, for framebuf's font as the VM draws it."""
    table: dict[bytes, str] = {}
    for line in mpy.run(_FONT_DUMP).splitlines():
        code, _, cell = line.strip().partition(" ")
        table.setdefault(bytes.fromhex(cell), chr(int(code)))  # the space comes first: blank reads " "
    return table


def rows(fb: bytes, width: int, height: int) -> list[str]:
    """The screen's text rows, trailing blanks removed; inverse rows start with "*"."""
    stride = (width + 7) // 8
    font = glyphs()
    out = []
    for row in range(height // _ROW_PX):
        y = row * _ROW_PX + 1
        if (y + _CELL) * stride > len(fb):
            break
        inverse = fb[(y - 1) * stride] == 0xFF
        flip = 0xFF if inverse else 0
        line = ""
        for col in range(width // _CELL):
            cell = bytes(fb[(y + k) * stride + col] ^ flip for k in range(_CELL))
            line += font.get(cell, "?")
        out.append(("*" if inverse else "") + line.rstrip())
    return out
