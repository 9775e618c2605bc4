"""The route report as a GeoJSON FeatureCollection: each stop's fence, the route line and every scan
as features; rates and reconciliation in the collection's properties."""

from __future__ import annotations

import json
from typing import Any

from host_tools.report_model import Event, Report, iso
from host_tools.routes import Stop


def _geometry(stop: Stop) -> dict[str, Any] | None:
    polys = [[[list(pt) for pt in ring] for ring in poly] for poly in stop.polygons]
    if not polys:
        return None
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}
    return {"type": "MultiPolygon", "coordinates": polys}


def to_geojson_obj(rep: Report) -> dict[str, Any]:
    feats: list[dict[str, Any]] = []
    for sr in rep.stops:
        s = sr.stop
        feats.append({"type": "Feature", "geometry": _geometry(s), "properties": {
            "kind": "stop", "stop_id": s.stop_id, "seq": s.seq, "address": s.address, "status": sr.status,
            "items": s.items, "delivered": sr.delivered, "attempted": sr.attempted, "missing": sr.missing}})
    feats.append({"type": "Feature", "geometry": {
        "type": "LineString", "coordinates": [list(s.centre()) for s in rep.route.stops]},
        "properties": {"kind": "route"}})
    for sr in rep.stops:
        for e in sr.events:
            feats.append(_scan_feature(e, sr.stop.stop_id))
    for e in rep.unknown_stop:
        feats.append(_scan_feature(e, e.r.stop_id))
    return {
        "type": "FeatureCollection",
        "properties": {
            "route_id": rep.route.route_id, "generated": iso(int(rep.generated)),
            "route": rep.total.to_dict(),
            "carriers": {d: r.to_dict() for d, r in sorted(rep.carriers.items())},
            "missing": [{"stop_id": s, "item_id": i} for s, i in rep.missing],
            "wrong_stop": [{"item_id": i, "expected_stop": x, "scanned_stop": g, "device_id": d, "seq": q}
                           for i, x, g, d, q in rep.wrong_stop],
            "outside_fence": [{"stop_id": s, "item_id": i, "distance_m": m, "device_id": d, "seq": q}
                              for s, i, m, d, q in rep.outside],
            "gaps": {d: [[a, b] for a, b in r] for d, r in rep.gaps.items()},
            "skipped": {d: [[a, b] for a, b in r] for d, r in rep.skipped.items() if r},
            "corrections": [{"device_id": d, "seq": s, "corrects": c} for d, s, c in rep.corrections],
            "stale_fix": [{"device_id": e.r.device_id, "seq": e.r.seq, "fix_lag_s": e.fix_lag_s}
                          for e in rep.stale],
        },
        "features": feats,
    }


def _scan_feature(e: Event, stop_id: str) -> dict[str, Any]:
    return {"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [e.r.lon_e6 / 1e6, e.r.lat_e6 / 1e6]},
            "properties": {"kind": "scan", "stop_id": stop_id, **e.row(), "class": e.cls}}


def to_geojson(rep: Report) -> str:
    return json.dumps(to_geojson_obj(rep), indent=1) + "\n"

