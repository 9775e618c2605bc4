"""The review page of `depot fences learn --html`: per stop, the old and the proposed fence on a small
inline SVG map with the fixes they were learned from, and the evidence; rendered by Jinja2 with
autoescaping from host_tools/templates/fence_review.html."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import jinja2
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from host_tools import learn, learn_propose, learn_rules

SIZE = 220.0  # px, each stop's map
PAD_M = 6.0

env = jinja2.Environment(loader=jinja2.PackageLoader("host_tools", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True,
                          lstrip_blocks=True, undefined=jinja2.StrictUndefined)


@dataclass
class Panel:
    """One stop's map in SVG units (y down), as plain data: the template does the markup."""
    old: str
    new: str
    bound: str
    fixes: list[tuple[float, float, bool]]  # x, y, used in the estimate
    point: tuple[float, float] | None
    scale_m: float  # metres shown by the 40 px scale bar


def _path(g: BaseGeometry | None, tx: Any) -> str:
    if g is None or g.is_empty:
        return ""
    polys = [g] if isinstance(g, Polygon) else list(g.geoms) if isinstance(g, MultiPolygon) else []
    return " ".join("M" + " L".join("%.1f,%.1f" % tx(x, y) for x, y in ring.coords) + " Z"
                    for p in polys for ring in (p.exterior, *p.interiors))


def panel(p: learn_propose.Proposal) -> Panel:
    ev = p.evidence
    shapes = [g for g in (p.old, p.new) if g is not None and not g.is_empty]
    pts = [(f.x, f.y) for f in ev.fixes]
    xs = [c for g in shapes for c in (g.bounds[0], g.bounds[2])] + [x for x, _ in pts]
    ys = [c for g in shapes for c in (g.bounds[1], g.bounds[3])] + [y for _, y in pts]
    if not xs:
        xs, ys = [0.0], [0.0]
    x0, x1, y0, y1 = min(xs) - PAD_M, max(xs) + PAD_M, min(ys) - PAD_M, max(ys) + PAD_M
    k = SIZE / max(x1 - x0, y1 - y0, 1.0)

    def tx(x: float, y: float) -> tuple[float, float]:
        return ((x - x0) * k, (y1 - y) * k)

    bound = None
    if p.new is not None and p.base is not None and p.new_building:
        bound = p.base.buffer(learn_rules.BOUND_M)
    return Panel(_path(p.old, tx), _path(p.new, tx), _path(bound, tx),
                 [(*tx(f.x, f.y), f.used) for f in ev.fixes],
                 tx(*ev.point) if ev.point is not None else None, 40 / k)


def render(learned: learn.Learned, fc: dict[str, Any], generated: str | None = None) -> str:
    shown = [p for p in learned.proposals if (p.action != "keep" or p.evidence.overrides) and not p.routine]
    return env.get_template("fence_review.html").render(
        route_id=learned.route_id, summary=learned.summary(), counts=learned.counts(),
        review=learned.review(), walls=learned.walls(), routine=[p for p in learned.proposals if p.routine],
        generated=generated or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        rows=[(p, panel(p)) for p in shown], size=SIZE, total=len(learned.proposals),
        rules={"deliveries": learn_rules.MIN_DELIVERIES, "days": learn_rules.MIN_DAYS,
               "bound": learn_rules.BOUND_M, "circle": learn_rules.CIRCLE_MAX_M,
               "scatter": learn_rules.SCATTER_M,
               "miss": f"{100 * learn_rules.MISS_TARGET:g}"})
