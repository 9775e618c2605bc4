"""A delivery record (firmware/record.py) as a dict of plain JSON values with readable labels, for
the depot's tools, the simulator and tests. The device never needs the labels, so they live here
rather than in its RAM. MicroPython runs it too (sim/fence_check.py prints the verdict labels).
"""

import binascii

from firmware import record

OUTCOMES = {record.DELIVERED: "delivered", record.ATTEMPTED: "attempted", record.CORRECTION: "correction"}
VERDICTS = {record.V_NONE: "none", record.V_INSIDE: "inside", record.V_OUTSIDE: "outside",
            record.V_UNSURE: "unsure"}
MATCHES = {0: "none", record.M_ITEM: "item", record.M_OTHER_STOP: "other_stop", record.M_FENCE: "fence",
           record.M_MANUAL: "manual"}


def as_dict(r):
    """`r` (a record.Record) as a dict."""
    return {
        "seq": r.seq, "outcome": OUTCOMES.get(r.outcome, str(r.outcome)),
        "device_id": r.device_id, "route_id": r.route_id,
        "package_hash": binascii.hexlify(r.package_hash).decode(), "stop_id": r.stop_id,
        "item_id": r.item_id, "verdict": VERDICTS.get(r.verdict, str(r.verdict)),
        "match": MATCHES.get(r.match, str(r.match)), "reason": r.reason,
        "action": r.action, "flags": r.flags, "corrects": r.corrects,
        "device_time": r.device_time, "gnss_time": r.gnss_time,
        "lat": r.lat_e6 / 1e6, "lon": r.lon_e6 / 1e6, "accuracy_m": r.accuracy_dm / 10,
        "fix_age_s": None if r.fix_age_s == record.NO_AGE else r.fix_age_s,
        "distance_m": r.distance_dm / 10,
    }
