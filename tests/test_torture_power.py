"""Torture, power cuts across a carrier's day (issue 8): one virtual handheld loses power at random
moments — mid-scan, mid-sync, mid-route-update, mid-upload — armed after k block writes (some in
littlefs's out-of-order model) or cut "now" from a timer while the action runs. After every cut
the device boots and beeps ready, its route is one whole package (old or new) that takes scans,
and the store holds nothing unconfirmed and nothing twice; after the final clean sync, every
record the carrier heard confirmed is in the store exactly once and no sequence number is
unaccounted for. Short form here; TORTURE=long makes it 200 cuts (about 8 minutes)."""

from __future__ import annotations

import pytest

from sim import torture
from tests.torture_util import cases

pytestmark = [pytest.mark.torture, pytest.mark.slow]


def test_power_cuts_at_random_moments_lose_nothing_duplicate_nothing_and_keep_a_whole_route(tmp_path):
    want = cases(6, 200)
    t = torture.run(tmp_path, seed=8, cuts=want)
    print("\n" + t.line() + f" ({t.moments} moments, {t.route_switches} route switches, "
          f"route updates cut: {t.route_kept_old} kept the old route, {t.route_cut_new} had the new; "
          f"{len(t.redocks)} re-docks)", flush=True)
    for e in sorted(set(t.redocks)):  # a sync refused after a cut, then docked again (see sim/torture.py)
        print(f"re-dock after: {e} (x{t.redocks.count(e)})")
    assert t.errors == []
    assert (t.lost, t.duplicated) == ([], [])
    assert sum(t.cuts.values()) == want
    assert len(t.confirmed) >= want // 2  # the day went on between the cuts
    if want >= 200:  # the long form reaches every kind of moment
        assert all(t.cuts[k] > 0 for k in torture.KINDS), t.cuts
        assert t.route_kept_old > 0 and t.route_cut_new > 0  # cuts on both sides of the rename
