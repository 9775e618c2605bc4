"""One vocabulary for a device's sequence numbers, the same in `depot sync`, `depot devices` and the
reports (the README says the same to depot staff):

- stored: the device's records in the store (a count);
- acked seq: the highest sequence number acknowledged to the device, a number and not a count:
  numbers below it may be skipped, so a device holding 50 records can be acked to 138;
- gap: a number below the highest stored that is neither stored nor declared skipped; a record
  that has not reached the store (not collected yet, or lost). Gaps are always shown;
- skipped: a number the device declared it never used (its journal leases numbers ahead and a
  restart skips the rest of the lease). Shown apart from the gaps, never hidden.

Numbers travel as runs (host_tools.seqruns): a forged seq near 2**30 must not become a list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from host_tools import seqruns
from host_tools.seqruns import Run


@dataclass
class Account:
    stored: int = 0
    acked_seq: int = 0
    gaps: list[Run] = field(default_factory=list)
    skipped: list[Run] = field(default_factory=list)


def split(missing: list[Run], declared: list[Run]) -> tuple[list[Run], list[Run]]:
    """(gaps, skipped): the runs missing from the store, less and within those declared unused."""
    return seqruns.subtract(missing, declared), seqruns.intersect(missing, declared)


def account(store: Any, device_id: str) -> Account:
    """The device's figures from the store (a host_tools.store.Store)."""
    declared = store.absent(device_id)
    return Account(store.count(device_id), store.ack_seq(device_id),
                   seqruns.subtract(store.gaps(device_id), declared), declared)


def text(runs: list[Run]) -> str:
    """`41-128`, `3,6-7`; "-" for none."""
    return seqruns.text(runs) or "-"
