"""What route reports add about learned fences: the match rate per day as an SVG line chart, and
each stop's fence history as `depot fences learn --apply` kept it in the store. report_model calls
`by_day` and `history`, report_text `text`; report_html gives `chart` to templates/fence_report.html,
which templates/route_report.html includes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from firmware import record as rec

CHART_W, CHART_H, PAD = 640.0, 200.0, 36.0


@dataclass
class Day:
    day: str  # UTC date, YYYY-MM-DD
    deliveries: int
    inside: int

    @property
    def rate(self) -> float:
        return self.inside / self.deliveries if self.deliveries else 0.0


@dataclass
class Change:
    version: int
    night: str
    action: str
    why: str
    old_area_m2: float | None
    new_area_m2: float | None


def by_day(events: list[Any]) -> list[Day]:
    """Deliveries and those inside their fence, per UTC day of the fix (else of the device clock);
    `events` are the report's live events (their .cls says inside, override, unsure or fence)."""
    days: dict[str, Day] = {}
    for e in events:
        if e.r.outcome != rec.DELIVERED:
            continue
        t = e.r.gnss_time or e.r.device_time
        day = time.strftime("%Y-%m-%d", time.gmtime(t)) if t else "unknown"
        d = days.setdefault(day, Day(day, 0, 0))
        d.deliveries += 1
        d.inside += e.cls == "inside"
    return [days[k] for k in sorted(days)]


def history(store: Any, route_id: str) -> dict[str, list[Change]]:
    """stop_id -> its fence's changes, oldest first (empty when the store keeps no history)."""
    rows = getattr(store, "fence_history", None)
    out: dict[str, list[Change]] = {}
    for h in rows(route_id) if rows else []:
        try:
            d = json.loads(h.detail)
        except ValueError:
            d = {}
        out.setdefault(h.stop_id, []).append(Change(h.version, h.night, h.action, str(d.get("why", "")),
                                                    d.get("old_area_m2"), d.get("new_area_m2")))
    return out


def chart(days: list[Day]) -> dict[str, Any]:
    """The line chart's geometry as plain data (the template writes the SVG)."""
    n = len(days)
    step = (CHART_W - 2 * PAD) / max(n - 1, 1)
    low = 0.5 if all(d.rate >= 0.5 for d in days) else 0.0  # the axis starts at 50% when it can

    def y(rate: float) -> float:
        return CHART_H - PAD - (rate - low) / (1 - low) * (CHART_H - 2 * PAD)

    pts = [(PAD + i * step, y(d.rate), d) for i, d in enumerate(days)]
    return {"w": CHART_W, "h": CHART_H, "pad": PAD, "points": pts,
            "line": " ".join(f"{x:.1f},{yy:.1f}" for x, yy, _ in pts),
            "grid": [(f"{int(r * 100)}%", y(r)) for r in (0.0, 0.5, 0.75, 0.9, 1.0) if r >= low],
            "labels": [(x, d.day[5:]) for k, (x, _, d) in enumerate(pts)
                       if n <= 14 or k % (n // 10 + 1) == 0]}  # at most ~14 date labels


def text(days: list[Day], changes: dict[str, list[Change]]) -> list[str]:
    out = ["", "Match rate by day"]
    out += [f"  {d.day}  {100 * d.rate:5.1f}%  ({d.inside} of {d.deliveries} deliveries inside)"
            for d in days]
    if changes:
        out += ["", "Fence history (depot fences learn --apply)"]
        for sid, cs in sorted(changes.items()):
            for c in cs:
                out.append(f"  {sid:<12} v{c.version} {c.night} {c.action:<6} {c.why}")
    return out

