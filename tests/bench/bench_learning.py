"""Fences that learn (docs/fence-learning.md): `python -m sim days` for 10 days on a 220-stop town
whose data disagree with the ground, seeds 1-3, figures averaged over the seeds.

- fence_learning_match_rate_day1 / _day5 / _day10: share of deliveries inside the right fence
  without override, with the fences learned every night (goal: day 5 >= 0.98 from about 0.75).
- fence_learning_heldout_inside: next-day deliveries inside the learned fence, at stops with at
  least 3 earlier deliveries on at least 2 days (goal >= 0.95); fence_learning_naive_heldout_inside
  the same for the naive baseline (a 50 m circle around each stop's median fix), and
  fence_learning_naive_equal_area_heldout_inside for a circle around the median fix with the
  learned fence's area (each stop its own); fence_learning_naive_equal_total_area_heldout_inside for
  circles of one radius for every stop (the naive baseline as it is) with the learned fences' total area.
- fence_learning_area_growth: median learned / initial area over the fences that changed (goal
  <= 1.5); fence_learning_naive_area_growth the naive circles' median over all stops.
"""

from __future__ import annotations

import statistics

from sim import days

SEEDS = (1, 2, 3)


def run(report) -> None:
    results = [days.run(days=10, stops=220, seed=s, say=lambda *a: None) for s in SEEDS]

    def mean(values) -> float:
        return statistics.fmean(values)

    for d in (1, 5, 10):
        report(f"fence_learning_match_rate_day{d}", mean(r.rates["learning"][d - 1] for r in results), "",
               f"no learning {mean(r.rates['none'][d - 1] for r in results):.3f}, naive 50 m "
               f"{mean(r.rates['naive'][d - 1] for r in results):.3f}")
    report("fence_learning_heldout_inside", mean(r.share("learning") for r in results), "", "goal >= 0.95")
    report("fence_learning_naive_heldout_inside", mean(r.share("naive") for r in results), "",
           "50 m circles around the median fix")
    report("fence_learning_naive_equal_area_heldout_inside",
           mean(r.share("naive_equal_area") for r in results), "", "circles of the learned fence's area")
    report("fence_learning_naive_equal_total_area_heldout_inside",
           mean(r.share("naive_equal_total") for r in results), "",
           "circles of one radius, total area that of the learned fences")
    report("fence_learning_area_growth", mean(r.area_growth for r in results), "x",
           f"median over {mean(r.changed for r in results):.0f} changed fences of 220; goal <= 1.5")
    report("fence_learning_naive_area_growth", mean(r.naive_area_growth for r in results), "x",
           "50 m circles / first fences, median over all stops")
