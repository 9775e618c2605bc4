"""What happens when a carrier scans a parcel: identify, find the stop, judge the fix against the
stop's fence, and record the outcome durably, asking the carrier when the device is not sure.

Pure logic: the route, fence engine, identifier parser, GNSS state, journal and clock are handed in,
so the same code runs on a device, in the simulator and under test. The flow is a small state
machine driven by two events, `scan(raw)` and `key(name)`; each returns a Prompt for the screen.
"""

from firmware import record

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

# flow states
IDLE = const(0)
CONFIRM_OVERRIDE = const(1)  # outside/unsure: carrier picks an override reason
CONFIRM_WRONG_STOP = const(2)  # item belongs to another stop than the fence the carrier stands in
CONFIRM_FENCE_MATCH = const(3)  # item not on the route: deliver to the stop whose fence we are in?
PICK_ATTEMPT_REASON = const(4)  # attempt mode: why it was not delivered
CONFIRM_CORRECTION = const(5)  # cancel the last record with a correction record

# prompt kinds, which the UI maps to screen, buzzer and LED patterns
P_READY = const(0)
P_RECORDED = const(1)
P_ASK = const(2)
P_REFUSED = const(3)
P_INVALID = const(4)
P_FULL = const(5)
P_BUSY = const(6)  # a scan while a question is open: refused, the question stays on the screen

# Reason codes and labels come with the route package (RSNS, docs/route-package.md), one table for
# the device and the depot's reports: attempt reasons (kind 1) and override reasons (kind 3).
K_ATTEMPT = const(1)  # route_package.K_ATTEMPT
K_OVERRIDE = const(3)  # route_package.K_OVERRIDE

class Prompt:
    """What the screen shows after an event. One instance is reused for every event."""

    def __init__(self):
        self.kind = P_READY
        self.title = ""
        self.detail = ""
        self.choices = ()  # (code, label) the carrier picks from with up/down/ok
        self.choice = 0
        self.notice = ""  # a refusal shown under an open question ("Answer the question first")
        self.fresh = False  # the event changed the outcome: play its sound (scrolling does not)
        self.seq = 0  # sequence number of the record just written
        self.verdict = record.V_NONE
        self.distance_dm = 0

    def set(self, kind, title, detail="", choices=()):
        self.kind = kind
        self.title = title
        self.detail = detail
        self.choices = choices
        self.choice = 0
        self.notice = ""
        self.fresh = True
        return self


class Delivery:
    def __init__(self, route, fences, parse_code, gnss, journal, device_id, time_s, reasons=None):
        self.route = route  # route_package.RoutePackage
        self.fences = fences  # geofence module: locate(route, lat, lon), verdict(route, i, ...)
        self.parse_code = parse_code  # scan_code.parse-like: raw -> Scan (.ok, .item_id, .message)
        self.gnss = gnss  # nmea.NMEA state: valid, lat_e6, lon_e6, hdop (x100), age_ms(), unix()
        self.journal = journal
        self.device_id = device_id
        self.time_s = time_s  # device clock, unix seconds
        self.attempt_reasons = reasons or route.reasons(K_ATTEMPT)  # read from flash when shown
        self.override_reasons = route.reasons(K_OVERRIDE)
        self.state = IDLE
        self.attempt_mode = False
        self.prompt = Prompt()
        self.last_seq = 0
        self._rec = record.Record(device_id=device_id)
        self._stop = -1
        self._item = ""
        self._match = 0
        self._flags = 0
        self.visited = bytearray((route.stop_count + 7) // 8)  # a bit per stop: delivered or attempted

    # events -----------------------------------------------------------------------------------------

    def scan(self, raw):
        p = self.prompt
        if self.state != IDLE:  # the question stays open; this scan is refused out loud, not dropped
            p.kind, p.notice, p.fresh = P_BUSY, "Answer the question first", True
            return p
        code = self.parse_code(raw)
        if not code.ok:
            return self.prompt.set(P_INVALID, "Invalid code", code.message)
        self._item = code.item_id
        self._flags = 0
        stop = self.route.find_item(self._item)
        here, contains, _ = self._locate()
        if stop < 0:
            if here < 0 or not contains:
                return self.prompt.set(P_REFUSED, "Not on route", "No stop fence here: not recorded")
            self._stop, self._match = here, record.M_FENCE
            self.state = CONFIRM_FENCE_MATCH
            return self.prompt.set(P_ASK, "Not on route", "Deliver to %s? OK/Back" % self._label(here))
        self._stop, self._match = stop, record.M_ITEM
        if contains and here != stop and not self._contains(stop):  # flats share their building
            self._flags |= record.F_WRONG_STOP
            self._match = record.M_OTHER_STOP
            self.state = CONFIRM_WRONG_STOP
            return self.prompt.set(P_ASK, "Wrong stop?", "Item is for %s. OK/Back" % self._label(stop))
        return self._judge()

    def key(self, name):
        p = self.prompt
        p.fresh = False
        if self.state == IDLE:
            if name == "up":
                self.attempt_mode = not self.attempt_mode
                return p.set(P_READY, "Attempt mode" if self.attempt_mode else "Delivery mode")
            if name == "back" and self.last_seq:
                self.state = CONFIRM_CORRECTION
                return p.set(P_ASK, "Cancel last?", "Record %d. OK/Back" % self.last_seq)
            return p
        if p.kind == P_BUSY:  # the carrier is back on the question: the refusal has been heard
            p.kind, p.notice = P_ASK, ""
        if name == "back":
            self.state = IDLE
            return p.set(P_READY, "Cancelled", "Nothing recorded")
        if p.choices and name in ("up", "down"):
            p.choice = (p.choice + (1 if name == "down" else -1)) % len(p.choices)
            return p
        if name != "ok":
            return p
        state, self.state = self.state, IDLE
        if state in (CONFIRM_WRONG_STOP, CONFIRM_FENCE_MATCH):
            return self._judge()
        if state == CONFIRM_OVERRIDE:
            self._flags |= record.F_OVERRIDE
            return self._record(record.DELIVERED, p.choices[p.choice][0] if p.choices else 0, 0)
        if state == PICK_ATTEMPT_REASON:
            return self._record(record.ATTEMPTED, p.choices[p.choice][0] if p.choices else 0, 0)
        if state == CONFIRM_CORRECTION:
            self._flags = 0
            return self._record(record.CORRECTION, 0, self.last_seq)
        return p

    # steps ------------------------------------------------------------------------------------------

    def _judge(self):
        if self.attempt_mode:
            self.state = PICK_ATTEMPT_REASON
            return self.prompt.set(P_ASK, "Attempt: reason?", self._label(self._stop), self.attempt_reasons)
        verdict, dist = self._verdict(self._stop)
        self.prompt.verdict, self.prompt.distance_dm = verdict, dist
        if verdict == record.V_INSIDE:
            return self._record(record.DELIVERED, 0, 0)
        self.state = CONFIRM_OVERRIDE
        what = "Outside fence" if verdict == record.V_OUTSIDE else "Position unsure"
        return self.prompt.set(P_ASK, what, "%s %dm: reason?" % (self._label(self._stop), dist // 10),
                               self.override_reasons)

    def _record(self, outcome, reason, corrects):
        r = self._rec
        g = self.gnss
        verdict, dist = (record.V_NONE, 0) if outcome == record.CORRECTION else self._verdict(self._stop)
        stop = self.route.stop(self._stop) if outcome != record.CORRECTION else None
        r.outcome, r.reason, r.corrects, r.flags = outcome, reason, corrects, self._flags
        r.route_id, r.package_hash = self.route.route_id, self.route.package_hash
        r.stop_id = stop.stop_id if stop else ""
        r.item_id = self._item if stop else ""
        r.match = self._match if stop else 0
        r.verdict, r.distance_dm = verdict, dist
        r.device_time = self.time_s()
        if g.valid:
            r.lat_e6, r.lon_e6 = g.lat_e6, g.lon_e6
            r.gnss_time = max(0, g.fix_unix())  # when this fix was taken, not the latest sentence
            r.accuracy_dm = self.fences.accuracy_dm(g.hdop // 10)
            r.fix_age_s = min(g.age_ms() // 1000, record.NO_AGE - 1)
        else:
            r.lat_e6 = r.lon_e6 = r.gnss_time = r.accuracy_dm = 0
            r.fix_age_s = record.NO_AGE
            r.flags |= record.F_NO_FIX
        try:
            seq = self.journal.append(r)  # durable when it returns: only then may the carrier hear it
        except Exception as e:  # JournalFull, JournalError, OSError: refuse, never pretend
            return self.prompt.set(P_FULL, "NOT RECORDED", str(e) or "Flash full: dock the device")
        self.last_seq = seq
        if stop is not None:
            self.mark(self._stop)
        titles = {record.DELIVERED: "Delivered", record.ATTEMPTED: "Attempt saved",
                  record.CORRECTION: "Cancelled #%d" % corrects}
        p = self.prompt.set(P_RECORDED, titles[outcome], self._label(self._stop) if stop else "")
        p.seq, p.verdict, p.distance_dm = seq, verdict, dist
        return p

    # helpers ----------------------------------------------------------------------------------------

    def _locate(self):
        g = self.gnss
        if not g.valid:
            return -1, False, 0
        return self.fences.locate(self.route, g.lat_e6, g.lon_e6)

    def _contains(self, stop):
        """Whether the item's own fence holds the fix too: stops in one building (flats) share its
        fence, and the first fence found may be a neighbour's."""
        g, f, r = self.gnss, self.fences, self.route
        return f.distance(r, stop, f.local_x(r, g.lon_e6), f.local_y(r, g.lat_e6))[1]

    def _verdict(self, stop):
        g = self.gnss
        if not g.valid:
            return record.V_UNSURE, 0
        return self.fences.verdict(self.route, stop, g.lat_e6, g.lon_e6, g.hdop // 10, g.age_ms() // 1000)

    def _label(self, stop):
        s = self.route.stop(stop)
        return "#%d %s" % (s.seq, s.address)

    def mark(self, stop):
        self.visited[stop >> 3] |= 1 << (stop & 7)

    def next_stop(self):
        """Index of the first stop in route order not yet visited, or -1 when the day is done."""
        for i in range(self.route.stop_count):
            if not self.visited[i >> 3] & (1 << (i & 7)):
                return i
        return -1

