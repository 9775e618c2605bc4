"""A carrier on a virtual handheld: walks a route's doors and scans, presses keys, listens.

`Walker(dev, plan, fc, out).run()` drives one device through its carrier's plan (sim/scenario.py
`Carrier`: overrides, attempts, misreads, wrong-stop scans, a coverage gap, a power cut mid-scan),
standing at each door with a fresh GNSS fix, waiting as a carrier does: for the beep after a scan
or OK, and for the screen to show what a key did before the next step. What the carrier heard
confirmed goes into `Outcome.expected`, for the day (sim/day.py) to find in the store exactly once.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim import gnss, town
from sim.client import Device
from sim.scenario import Carrier

M_PER_DEG_LAT = 111_320.0


@dataclass
class Outcome:
    """What one carrier's device confirmed (the beeps heard) and what went wrong."""

    device_id: str
    expected: list[tuple[str, str, str]] = field(default_factory=list)  # (outcome, stop_id, item)
    maybe: list[tuple[str, str, str]] = field(default_factory=list)  # written when power failed
    refused: int = 0
    invalid: int = 0
    overrides: int = 0
    attempts: int = 0
    stop: int = 0
    errors: list[str] = field(default_factory=list)


def _away(feature: dict[str, Any], metres: float) -> tuple[float, float]:
    lat, lon = town.door(feature)
    return lat + metres / M_PER_DEG_LAT, lon  # north of the door: across the street


def _fix(lat: float, lon: float, t: int) -> list[str]:
    """This second's sentences from a receiver standing at lat, lon: its clock is the world's (UTC
    now), as a real receiver's is, so each record's GNSS time says when its fix was taken."""
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    walk = gnss.Walk([(lat, lon)], seed=t, duration_s=1, conditions=gnss.Conditions(noise_m=0.3), start=now)
    return next(iter(walk))[1]


def _code(item: str) -> tuple[str, str]:
    """(symbology, data) as the scan engine sends it: SSCCs are GS1-128 with AI 00."""
    return ("]C1", "00" + item) if item.isdigit() else ("]C0", item)


class Walker:
    """Drives one virtual handheld through its carrier's plan, waiting as a carrier does: for the
    beep after a scan or OK, and for the screen to show what a key did before the next step."""

    def __init__(self, dev: Device, plan: Carrier, fc: dict[str, Any], out: Outcome):
        self.dev, self.plan, self.fc, self.out = dev, plan, fc, out
        self.seen = len(dev.events())
        self.t = 0
        self.here: tuple[float, float] | None = None

    def sound(self, timeout: float = 15.0) -> str:
        """The next buzzer pattern the device plays (what the carrier hears); "" when none comes,
        or when the power fails first (no beep is coming after that)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.dev.events(self.seen)
            for k, ev in enumerate(evs):
                if ev["kind"] == "buzzer":
                    self.seen += k + 1
                    return ev["value"]
                if ev["kind"] == "power" and "armed" not in ev["value"]:
                    self.seen += k + 1
                    return ""
            self.seen += len(evs)
            time.sleep(0.02)
        return ""

    def see(self, shows: Callable[[list[str]], bool], what: str, timeout: float = 15.0) -> list[str]:
        """The screen once it shows what the carrier looks for (`what`, for the error when it never
        does: the step was not taken, so the day goes on out of step and says so)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.dev.screen_text()
            if shows(rows):
                return rows
            if time.monotonic() > deadline:
                self.out.errors.append(f"stop {self.out.stop}: the screen never showed {what}: {rows}")
                return rows
            time.sleep(0.02)

    def stand(self, lat: float, lon: float) -> None:
        """The carrier walks up to a door; the receiver reports where they stand."""
        self.here = (lat, lon)
        self.fix()

    def fix(self) -> None:
        """This second's sentences from the receiver (it reports once a second wherever the carrier
        stands, so a scan is judged on a fresh fix). The call returns once the firmware has read
        them: the scan after it is judged on this fix."""
        if self.here is not None:
            self.t += 1
            self.dev.gnss(_fix(*self.here, self.t))

    def scan(self, item: str) -> str:
        """Scan a parcel where the carrier stands; the beep the carrier hears."""
        self.fix()
        sym, data = _code(item)
        self.dev.scan(data, symbology=sym)
        return self.sound()

    def attempt_mode(self, on: bool) -> None:
        """Up on the idle screen, then look: the screen says ATTEMPT MODE while it is on."""
        self.dev.key("up")
        want = "ATTEMPT MODE" if on else "Next stop:"
        self.see(lambda rows: want in rows, want)

    def pick(self, downs: int) -> None:
        """Down `downs` times through a question's reasons, each time until the marker (">") has
        moved: the carrier reads the reason before pressing OK."""
        rows = self.see(lambda r: _marked(r) is not None, "the question's reasons")
        for _ in range(downs):
            before = _marked(rows)
            self.dev.key("down")
            rows = self.see(lambda r, b=before: _marked(r) not in (None, b), "the next reason marked")

    def answer(self, downs: int) -> str:
        """Answer a delivery's question with the reason `downs` below the first; the beep heard. A
        carrier standing in another stop's fence is first asked "Wrong stop?" about a parcel that is
        theirs: OK, then the fence question follows (or "ok" when that stop's fence holds them)."""
        rows = self.see(lambda r: "*Wrong stop?" in r or _marked(r) is not None, "the question")
        if "*Wrong stop?" in rows:
            heard = self.ok()
            if heard != "override":
                return heard
        self.pick(downs)
        return self.ok()

    def ok(self) -> str:
        """OK on a question; the beep the carrier hears."""
        self.dev.key("ok")
        return self.sound()

    def back(self) -> None:
        """Back on a question: nothing recorded, and the screen says so."""
        self.dev.key("back")
        self.see(lambda rows: "Cancelled" in rows, "Cancelled")

    def modem(self, coverage: bool) -> None:
        try:
            self.dev.call("modem", action="coverage", on=coverage)
        except Exception as exc:  # a device without a modem still delivers
            self.out.errors.append(f"modem control: {exc}")

    def run(self) -> None:
        p, out = self.plan, self.out
        feats = self.fc["features"][: p.stops or None]
        for i, f in enumerate(feats):
            out.stop = i + 1
            props = f["properties"]
            sid = props["stop_id"]
            if p.coverage_gap and i == p.coverage_gap[0]:
                self.modem(False)
            if p.coverage_gap and i == p.coverage_gap[1]:
                self.modem(True)
            off = i in p.override_at
            self.stand(*(_away(f, 35.0) if off else town.door(f)))
            if i in p.invalid_at:
                if self.scan("RR000000001GB") != "invalid":  # a misread: bad check digit
                    out.errors.append(f"stop {sid}: misread not refused")
                out.invalid += 1
            if i in p.wrong_stop_at and i + 1 < len(feats):
                other = feats[i + 1]["properties"]["items"][0]
                if self.scan(other) != "override":
                    out.errors.append(f"stop {sid}: no wrong-stop warning")
                self.back()
                out.refused += 1
            if i in p.attempt_at:
                self.attempt_mode(True)
                if self.scan(props["items"][0]) != "override":
                    out.errors.append(f"stop {sid}: attempt did not ask a reason")
                self.pick(p.attempt_at[i] - 1)
                if self.ok() == "ok":
                    out.expected.append(("attempted", sid, props["items"][0]))
                    out.attempts += 1
                self.attempt_mode(False)
                continue
            for n, item in enumerate(props["items"]):
                if p.power_cut_at == i and n == 0:
                    self.power_cut_scan(sid, item)
                    continue
                heard = self.scan(item)
                if heard == "override" and off:  # 35 m off: the device asks for a reason
                    heard = self.answer(p.override_reason.get(i, 2) - 1)
                    out.overrides += 1
                elif off:
                    out.errors.append(f"stop {sid} item {item}: 35 m off, heard {heard!r}, not a question")
                if heard == "ok":
                    out.expected.append(("delivered", sid, item))
                else:
                    out.errors.append(f"stop {sid} item {item}: heard {heard!r}")

    def power_cut_scan(self, sid: str, item: str) -> None:
        """The battery fails while the scan is written (a cut armed after one more block write: in
        the scan's record, or in whatever the device writes first). What the carrier heard before
        the screen went dark counts; then the power-up beep; then a rescan unless "ok" came first.
        The interrupted write may or may not have survived."""
        dev, out = self.dev, self.out
        boots = dev.status()["boots"]
        self.fix()  # before the cut is armed: the fix is not the moment
        dev.power_cut(after_writes=1)
        sym, data = _code(item)
        dev.scan(data, symbology=sym)
        heard = self.sound()  # the scan's beep, or "" when the power failed first
        st = dev.status()
        if st["vm"] != "off" and st["state"] != "P":  # "P": its flash died, the VM is being stopped
            dev.power_cut()  # the scan wrote nothing (a question first?): the battery fails anyway
        dev.wait_off(timeout=20)
        # The device logs every beep it played before its power event (sim/relays.py), and nothing
        # after it: a beep there that sound() did not return still reached the carrier's ears.
        dying = dev.events(self.seen)
        for ev in dying:
            if ev["kind"] == "power" and "armed" not in ev["value"]:
                break
            if ev["kind"] == "buzzer" and not heard:
                heard = ev["value"]
        self.seen += len(dying)
        dev.power_on()
        dev.wait_running(boots=boots + 1, timeout=30)
        first = self.sound(timeout=30)
        if first != "ready":  # the power-up beep, before anything else: every task is listening
            out.errors.append(f"stop {sid}: heard {first!r} at power-up, not the ready beep")
        if heard == "ok":
            out.expected.append(("delivered", sid, item))
            return
        out.maybe.append(("delivered", sid, item))
        self.stand(*town.door(next(f for f in self.fc["features"] if f["properties"]["stop_id"] == sid)))
        if self.scan(item) == "ok":
            out.expected.append(("delivered", sid, item))
        else:
            out.errors.append(f"stop {sid}: rescan after power cut failed")


def _marked(rows: list[str]) -> str | None:
    """The reason the question's marker (">") is on, or None when no reasons are shown."""
    return next((r for r in rows if r.startswith(">")), None)
