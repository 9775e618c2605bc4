"""Fences that learn (docs/fence-learning.md): `python -m sim days` for 10 days on a 220-stop town
whose data disagree with the ground, seeds 1-3, figures averaged over the seeds (each seed's in
the note).

- fence_learning_match_rate_day1 / _day5 / _day10: share of deliveries inside the right fence
  without override, with the fences learned every night (goal: day 5 >= 0.98 from about 0.75).
- fence_learning_heldout_inside: next-day deliveries inside the learned fence, at stops with at
  least 3 earlier deliveries on at least 2 days (goal >= 0.95). Beside it, on the same deliveries,
  the naive baseline (a circle around each stop's median fix so far):
  fence_learning_naive_equal_area_heldout_inside with each stop's learned fence area,
  fence_learning_naive_equal_total_area_heldout_inside with one radius for every stop (the naive
  baseline as it is) and the learned fences' total area, fence_learning_naive_heldout_inside with
  50 m, and fence_learning_naive_equal_reach_heldout_inside with each stop the area of the learned
  fence with the device's 5 m margin. Each has its _area_ratio: the area it judged with over the
  learned fences' (as compiled); the note gives the same with the margin.
  fence_learning_naive_area_to_match: the multiple of the learned area at which the per-stop naive
  circles hold as many held-out deliveries (above 1: learning is better at equal area).
- fence_learning_area_growth: median learned / initial area over the fences that changed (goal
  <= 1.5); fence_learning_naive_area_growth the naive circles' median over all stops.
"""

from __future__ import annotations

import statistics

from sim import days

SEEDS = (1, 2, 3)


def run(report) -> None:
    results = [days.run(days=10, stops=220, seed=s, say=lambda *a: None, scales=days.AREA_SCALES)
               for s in SEEDS]

    def mean(values) -> float:
        return statistics.fmean(values)

    def seeds(f, fmt="{:.3f}") -> str:
        return "seeds 1-3: " + " / ".join(fmt.format(f(r)) for r in results)

    for d in (1, 5, 10):
        report(f"fence_learning_match_rate_day{d}", mean(r.rates["learning"][d - 1] for r in results), "",
               f"{seeds(lambda r, d=d: r.rates['learning'][d - 1])}; no learning "
               f"{mean(r.rates['none'][d - 1] for r in results):.3f}, naive 50 m "
               f"{mean(r.rates['naive'][d - 1] for r in results):.3f}")
    report("fence_learning_heldout_inside", mean(r.share("learning") for r in results), "",
           f"goal >= 0.95; {seeds(lambda r: r.share('learning'), '{:.4f}')}")
    for key, name, what in (("naive_equal_area", "naive_equal_area", "each stop the learned fence's area"),
                            ("naive_equal_reach", "naive_equal_reach",
                             "each stop the learned fence's area with the device's 5 m margin"),
                            ("naive_equal_total", "naive_equal_total_area",
                             "one radius, the learned fences' total area"),
                            ("naive", "naive", "50 m circles around the median fix")):
        report(f"fence_learning_{name}_heldout_inside", mean(r.share(key) for r in results), "",
               f"{what}; {seeds(lambda r, k=key: r.share(k), '{:.4f}')}")
        report(f"fence_learning_{name}_area_ratio", mean(r.area_ratio(key) for r in results), "x",
               "its area / the learned fences' on the same held-out deliveries; with the 5 m margin "
               f"x{mean(r.reach_ratio(key) for r in results):.2f}")
    report("fence_learning_naive_area_to_match", mean(r.naive_area_to_match() for r in results), "x",
           f"per-stop naive circles' area to hold as many held-out as learned (2 = at least 2); "
           f"{seeds(lambda r: r.naive_area_to_match(), '{:.2f}')}")
    report("fence_learning_area_growth", mean(r.area_growth for r in results), "x",
           f"median over {mean(r.changed for r in results):.0f} changed fences of 220; goal <= 1.5")
    report("fence_learning_naive_area_growth", mean(r.naive_area_growth for r in results), "x",
           "50 m circles / first fences, median over all stops")
