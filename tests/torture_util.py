"""Shared pieces of the fuzz and security torture tests (tests/test_torture_*.py, docs/torture.md).

- `cases(short, long)`: how many cases a run tries; `TORTURE=long` selects the long form.
- `mutate(rng, data)` and the hypothesis strategy `mutated(bases)`: the same mutation operators
  (bit flips, truncations, insertions, deletions, overwrites with random bytes, whole random
  inputs), so the CPython runs and the VM runs (`VM_MUTATOR`, the same operators in MicroPython)
  damage inputs alike.
- `tally(target, n, crashes)`: the one line per target that says how many cases were tried.
"""

from __future__ import annotations

import os
import random

from hypothesis import strategies as st

LONG = os.environ.get("TORTURE", "").lower() == "long"


def cases(short: int, long: int) -> int:
    """Case count for this run: `short` in `make test`, `long` under TORTURE=long."""
    return long if LONG else short


def tally(target: str, n: int, crashes: int = 0, extra: str = "") -> str:
    """Print the per-target summary line (visible with `pytest -s`) and return it."""
    line = f"fuzz {target}: {n} cases, {crashes} crashes" + (f" ({extra})" if extra else "")
    print("\n" + line, flush=True)
    return line


# --- mutation operators ------------------------------------------------------------------------

OPS = ("flip", "truncate", "insert", "delete", "overwrite", "random")


def apply(data: bytes, op: str, pos: int, arg: int, blob: bytes) -> bytes:
    """One mutation. `pos` is taken modulo the length; `arg` is a bit index or a length."""
    b = bytearray(data)
    n = len(b)
    p = pos % (n + 1)
    if op == "flip":
        if n:
            b[pos % n] ^= 1 << (arg % 8)
    elif op == "truncate":
        del b[p:]
    elif op == "insert":
        b[p:p] = blob
    elif op == "delete":
        del b[p: p + 1 + arg % 16]
    elif op == "overwrite":
        b[p: p + len(blob)] = blob
    elif op == "random":
        b = bytearray(blob)
    return bytes(b)


def mutate(rng: random.Random, data: bytes, max_ops: int = 3) -> bytes:
    """Apply 1..max_ops random operators (what the VM mutator does, for seeded CPython loops)."""
    for _ in range(rng.randint(1, max_ops)):
        op = rng.choice(OPS)
        blob = rng.randbytes(rng.randint(0 if op != "random" else 1, 24 if op != "random" else 120))
        data = apply(data, op, rng.randrange(1 << 20), rng.randrange(256), blob)
    return data


@st.composite
def mutated(draw: st.DrawFn, bases: list[bytes], max_ops: int = 3) -> tuple[bytes, bytes]:
    """(original, mutated) where original is one of `bases`."""
    base = draw(st.sampled_from(bases))
    data = base
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(OPS))
        size = (1, 120) if op == "random" else (0, 24)
        data = apply(data, op, draw(st.integers(0, 1 << 20)), draw(st.integers(0, 255)),
                     draw(st.binary(min_size=size[0], max_size=size[1])))
    return base, data


# The same operators inside MicroPython, on a seeded xorshift PRNG (the unix port's `random` is
# fine too, but this keeps a VM run reproducible from its seed alone on any port).
VM_MUTATOR = r"""
class Rng:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0x3FFFFFFF or 1
    def bits(self):
        s = self.s
        s ^= (s << 13) & 0x3FFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0x3FFFFFFF
        self.s = s
        return s
    def below(self, n):
        return self.bits() % n if n > 0 else 0
    def blob(self, lo, hi):
        n = lo + self.below(hi - lo + 1)
        return bytes(self.below(256) for _ in range(n))

def mutate(rng, data, max_ops=3):
    ops = 1 + rng.below(max_ops)
    while ops:
        ops -= 1
        op = rng.below(6)
        b = bytearray(data)
        n = len(b)
        p = rng.below(n + 1)
        if op == 0:  # flip one bit
            if n:
                b[rng.below(n)] ^= 1 << rng.below(8)
        elif op == 1:  # truncate
            b = b[:p]
        elif op == 2:  # insert random bytes
            b = b[:p] + rng.blob(1, 24) + b[p:]
        elif op == 3:  # delete a run
            b = b[:p] + b[p + 1 + rng.below(16):]
        elif op == 4:  # overwrite with random bytes
            x = rng.blob(1, 24)
            b = b[:p] + x + b[p + len(x):]
        else:  # a whole random input
            b = bytearray(rng.blob(1, 120))
        data = bytes(b)
    return data
"""
