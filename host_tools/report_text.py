"""The plain-text route report, for a terminal: every id and address goes through untrusted.shown."""

from __future__ import annotations

from firmware import geofence
from host_tools import learn_report, untrusted
from host_tools.report_model import Rates, Report, gap_text, iso, numbers, pct


def _rates_line(name: str, r: Rates) -> str:
    return (f"{name:<16} match {pct(r.match_rate):>6}  override {pct(r.share('override')):>6}  "
            f"unsure {pct(r.share('unsure')):>6}  by fence {pct(r.share('fence')):>6}  "
            f"({r.deliveries} deliveries, {r.attempts} attempts)")


def to_text(rep: Report) -> str:
    out = [f"Route {rep.route.route_id}  ({len(rep.route.stops)} stops)  report of {iso(int(rep.generated))}",
           "", "Match rate: share of deliveries confirmed inside their stop's fence",
           _rates_line("route", rep.total)]
    for dev, r in sorted(rep.carriers.items()):
        out.append(_rates_line("carrier " + dev, r))
    out += ["", "Reconciliation"]
    out.append(f"  sequence gaps (numbers missing from the store): {numbers(rep.gaps)}")
    for dev, ranges in rep.gaps.items():
        for a, b in ranges:
            out.append(f"    {dev}: seq {gap_text(a, b)} missing")
    out.append(f"  sequence numbers skipped by the device (declared never used): {numbers(rep.skipped)}")
    for dev, ranges in rep.skipped.items():
        for a, b in ranges:
            out.append(f"    {dev}: seq {gap_text(a, b)} skipped")
    out.append(f"  items expected but not scanned: {len(rep.missing)}")
    out += [f"    {item} (stop {stop})" for stop, item in rep.missing]
    out.append(f"  items scanned at the wrong stop: {len(rep.wrong_stop)}")
    out += [f"    {item}: expected at {exp}, scanned at {got} ({dev} #{seq})"
            for item, exp, got, dev, seq in rep.wrong_stop]
    out.append(f"  deliveries confirmed outside the fence: {len(rep.outside)}")
    out += [f"    {item} at {stop}: {d:.1f} m outside ({dev} #{seq})"
            for stop, item, d, dev, seq in rep.outside]
    out.append(f"  scans with a stale fix (older than {geofence.MAX_AGE_S} s): {len(rep.stale)}")
    out += [f"    {e.r.item_id} at {e.r.stop_id}: fix {e.fix_lag_s} s before the scan "
            f"({e.r.device_id} #{e.r.seq})" for e in rep.stale]
    if rep.unknown_stop:
        out.append(f"  records naming a stop not on the route: {len(rep.unknown_stop)}")
        out += [f"    {e.r.device_id} #{e.r.seq}: stop {e.r.stop_id!r}" for e in rep.unknown_stop]
    if rep.corrections:
        out.append(f"  corrections: {len(rep.corrections)}")
        out += [f"    {dev} #{seq} corrects #{old}" for dev, seq, old in rep.corrections]
    out += learn_report.text(rep.days, rep.fences)
    out += ["", "Stops"]
    for sr in rep.stops:
        s = sr.stop
        first, last = sr.times()
        when = f"  {iso(first)}" + (f" .. {iso(last)}" if last != first else "") if first else ""
        out.append(f"  {s.seq:>3} {s.stop_id:<12} {sr.status:<10} "
                   f"delivered {len(sr.delivered)}/{len(s.items)}  attempted {len(sr.attempted)}  "
                   f"missing {len(sr.missing)}  {s.address}{when}")
        for e in sr.events:
            row = e.row()
            extra = "  " + e.reason_text() if e.reason_text() else ""
            flags = (" override" if e.override else "") + (" wrong-stop" if e.wrong_stop else "") \
                + (" stale-fix" if e.stale_fix else "")
            void = f"  (voided by #{e.voided_by})" if e.voided_by else ""
            out.append(f"        {row['item_id']:<20} {row['outcome']:<10} {row['verdict']:<7} "
                       f"{row['distance_m']:>6.1f} m  {row['device_id']} #{row['seq']}"
                       f"  {row['device_time']}{flags}{extra}{void}")
        for item in sr.missing:
            out.append(f"        {item:<20} missing")
    return "\n".join(untrusted.shown(line) for line in out) + "\n"  # ids and addresses are input

