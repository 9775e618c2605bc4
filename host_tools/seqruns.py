"""Sets of sequence numbers as sorted, disjoint, inclusive runs `(first, last)`.

Gaps and absent seqs are kept this way everywhere on the depot: a device (or a forger with its key)
may send seq 2**30 after seq 1, and a list of every missing number would then hold a billion ints.
A run list's size depends on how many holes there are, never on how wide they are.
"""

from __future__ import annotations

from collections.abc import Iterable

Run = tuple[int, int]


def runs_of(seqs: Iterable[int | Run]) -> list[Run]:
    """Normalise single seqs and runs (in any order, overlapping or not) into sorted disjoint runs."""
    spans = sorted((s, s) if isinstance(s, int) else (int(s[0]), int(s[1])) for s in seqs)
    out: list[Run] = []
    for a, b in spans:
        if a > b:
            continue
        if out and a <= out[-1][1] + 1:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def holes(held: Iterable[int], start: int = 1) -> list[Run]:
    """The runs missing from the ascending seqs `held`, from `start` up to the highest one."""
    out: list[Run] = []
    expect = start
    for s in held:
        if s > expect:
            out.append((expect, s - 1))
        expect = max(expect, s + 1)
    return out


def intersect(a: list[Run], b: list[Run]) -> list[Run]:
    out: list[Run] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: list[Run], b: list[Run]) -> list[Run]:
    """The seqs of `a` not in `b`."""
    out: list[Run] = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] < lo:
            j += 1
        k = j
        while lo <= hi and k < len(b) and b[k][0] <= hi:
            if b[k][0] > lo:
                out.append((lo, b[k][0] - 1))
            lo = max(lo, b[k][1] + 1)
            k += 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def count(runs: Iterable[Run]) -> int:
    return sum(b - a + 1 for a, b in runs)


def text(runs: Iterable[Run]) -> str:
    """`3,6-7` for [(3, 3), (6, 7)]."""
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def contiguous_end(start: int, absent: list[Run], held: Iterable[int]) -> int:
    """The highest seq reached from `start` through seqs `held` (ascending) and the `absent` runs
    (sorted, disjoint): the first number neither held nor absent stops it. The acknowledgement."""
    end = start
    i = 0
    it = iter(held)
    while True:
        while i < len(absent) and absent[i][0] <= end + 1:
            end = max(end, absent[i][1])  # a run the device never held: passed whole
            i += 1
        s = next(it, None)
        while s is not None and s <= end:
            s = next(it, None)
        if s is None or s != end + 1:
            return end
        end = s

