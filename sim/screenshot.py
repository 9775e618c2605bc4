"""`python -m sim screenshot --control SOCK --out X.png`: what the carrier sees, as a PNG.

The firmware's framebuffer is MONO_HLSB (a row after row, 8 pixels a byte, most significant bit
leftmost); a set pixel is drawn dark on a light panel, scaled up for legibility."""

from __future__ import annotations

import os

from PIL import Image


def render(fb: bytes, width: int, height: int, out: str | os.PathLike, scale: int = 2) -> tuple[int, int]:
    stride = (width + 7) // 8
    need = stride * height
    data = bytes(fb[:need]).ljust(need, b"\0")
    # PIL mode "1" raw is the same packing; invert so that lit pixels come out dark.
    img = Image.frombytes("1", (width, height), bytes(b ^ 0xFF for b in data), "raw", "1", stride)
    img = img.convert("L")
    if scale != 1:
        img = img.resize((width * scale, height * scale), Image.Resampling.NEAREST)
    img.save(out, format="PNG")
    return img.size
