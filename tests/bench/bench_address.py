"""Address matching (`depot route build`) on the generated town of sim/address_town.py, whose
perturbation model docs/address-matching.md writes down.

- address_match_recall / _precision (en) and address_match_recall_zh / _precision_zh: 1,200
  addressed buildings, their address list perturbed, 5% of addresses with no building. Recall:
  rows that have a building, matched to the right one. Precision: building matches that are right.
- address_match_recall_heldout_style / _precision_heldout_style (and _zh): the same scores on
  sim/address_heldout.py's town, whose perturbations were written down before the matcher was
  tuned on them (docs/address-matching.md, "Second benchmark").
- address_match_s_10000: 10,000 addresses against 50,000 footprints, end to end (read the CSV and
  the GeoJSON, index, match, write nothing), in seconds.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from host_tools.address_build import build
from sim import address_heldout, address_town


def score(town: address_town.Town, outcomes) -> tuple[float, float]:
    right = sum(1 for o in outcomes if o.match.building and o.match.building.id == town.truth[o.row.stop_id])
    matched = sum(1 for o in outcomes if o.match.building)
    have = sum(1 for v in town.truth.values() if v)
    return right / have, right / max(1, matched)


def run(report) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench_address_"))
    for locale, suffix in (("en", ""), ("zh", "_zh")):
        town = address_town.generate(seed=11, buildings=1200, locale=locale)
        csv_path, fp = address_town.write(town, tmp / locale)
        _, outcomes, _ = build(csv_path, fp, locale=locale)
        recall, precision = score(town, outcomes)
        n = len(town.rows)
        report(f"address_match_recall{suffix}", round(recall, 4), "",
               f"{locale}, {n} addresses, goal >= 0.95")
        report(f"address_match_precision{suffix}", round(precision, 4), "", "goal >= 0.99")
        town = address_heldout.generate(seed=21, buildings=1200, locale=locale)
        csv_path, fp = address_town.write(town, tmp / f"heldout_{locale}")
        _, outcomes, _ = build(csv_path, fp, locale=locale)
        recall, precision = score(town, outcomes)
        report(f"address_match_recall_heldout_style{suffix}", round(recall, 4), "",
               f"{locale}, {len(town.rows)} addresses in styles the matcher was not tuned on, goal >= 0.95")
        report(f"address_match_precision_heldout_style{suffix}", round(precision, 4), "", "goal >= 0.99")
    big = address_town.generate(seed=12, buildings=38500, locale="en")
    big.rows = big.rows[:10_000]
    csv_path, fp = address_town.write(big, tmp / "big")
    t0, c0 = time.perf_counter(), time.process_time()
    _, outcomes, index = build(csv_path, fp, locale="en")
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    report("address_match_s_10000", round(dt, 2), "s",
           f"{len(outcomes)} addresses vs {len(index.buildings)} footprints, read + index + match; "
           f"{cpu:.2f} s of CPU (the machine is shared)")
