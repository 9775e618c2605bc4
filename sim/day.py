"""A carrier's day on virtual handhelds, end to end: `python -m sim run SCENARIO` and `make demo`.

The depot compiles routes, enrols and flashes the devices with mpremote, pushes the routes over the
dock, starts its ingest server; carriers walk their routes (GNSS fixes at each door, scans, keys);
the modems upload during the day; the devices dock at night; the reports are written. Every record
the carrier heard confirmed must be in the store exactly once, or the run fails. Format of
SCENARIO: docs/scenario.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host_tools import flash, report, route_assign, route_compile, routes, seqruns, term
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.sync import sync_device
from sim import gnss, town
from sim.client import Device
from sim.scenario import Carrier, Scenario

ROOT = Path(__file__).resolve().parent.parent
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


class DayFailed(RuntimeError):
    pass


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


def _show(lines: term.LiveLines | None, outcomes: list[Outcome], totals: dict[str, int]) -> None:
    """Each carrier's progress: a live line per device on a terminal, a line each 10% in a log."""
    if lines is None:
        return
    for o in outcomes:
        n = totals[o.device_id]
        lines.update(o.device_id, "stop", f"{o.stop}/{n} ok {len(o.expected)}", o.stop / max(n, 1))


def run(scenario: Scenario, workdir: Path, progress: bool = True) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    store_path = workdir / "depot.sqlite3"
    store = Store(store_path)
    image = flash.build(scenario.board)
    devices: dict[str, Device] = {}
    fcs: dict[str, dict[str, Any]] = {}
    outcomes = [Outcome(c.device_id) for c in scenario.carriers]
    tls: dict[str, Any] = {}
    server_ca = ""
    if scenario.tls:  # a CA of the day's own; the devices are flashed to trust only it
        from sim import certs

        ca = certs.make_ca("Depot CA (simulated day)")
        (workdir / "tls").mkdir(exist_ok=True)
        server_ca = ca.pem.decode()
        tls["tls_cert"], tls["tls_key"] = certs.server_files(ca, workdir / "tls", "depot")  # for localhost
    with BackgroundServer(str(store_path), **tls) as server:
        url = f"https://localhost:{server.port}" if scenario.tls else server.url
        try:
            say(f"depot: ingest server on {url}; store {store_path}")
            for c in scenario.carriers:
                if store.key(c.device_id) is None:
                    store.enrol(c.device_id)
                fcs[c.device_id] = json.loads((ROOT / c.route).read_text())
                compiled = route_compile.compile_file(ROOT / c.route, board=scenario.board)
                pkg = workdir / f"{compiled.route_id}.pkg"
                route_compile.write_package(compiled.package, pkg)
                route_assign.assign(store, pkg, c.device_id)
                say(f"depot: route {compiled.route_id} compiled ({compiled.stops} stops), "
                    f"{len(compiled.repairs)} repairs, assigned to {c.device_id}")
                devices[c.device_id] = Device.start(workdir / f"{c.device_id}.img", board=scenario.board,
                                                    workdir=workdir / c.device_id, seed=scenario.seed)
            _flash_all(devices, store, image, url, say, server_ca)
            for dev_id, dev in devices.items():
                rep = sync_device(dev.dock, store)
                if not rep.ok or not rep.route_pushed:
                    raise DayFailed(f"{dev_id}: morning sync failed: {rep.error or rep.route_error}")
                say(f"dock: {dev_id} loaded route {rep.route_pushed}")
            totals = {c.device_id: len(fcs[c.device_id]["features"][: c.stops or None])
                      for c in scenario.carriers}
            threads = [threading.Thread(target=_walk, args=(devices[c.device_id], c, fcs[c.device_id], o))
                       for c, o in zip(scenario.carriers, outcomes, strict=True)]
            for t in threads:
                t.start()
            walking = term.LiveLines(list(totals)) if progress else None
            while any(t.is_alive() for t in threads):
                _show(walking, outcomes, totals)
                time.sleep(0.5)
            _show(walking, outcomes, totals)
            cellular = _wait_uploads(store, outcomes, timeout=20.0)
            say("cellular: " + ", ".join(f"{d} {n} records" for d, n in cellular.items()))
            for dev_id, dev in devices.items():
                rep = sync_device(dev.dock, store)
                say(f"dock: {dev_id} synced {rep.stored} new records, ack {rep.acked_seq}"
                    + (f" ERROR {rep.error}" if rep.error else ""))
            shots = {}
            for dev_id, dev in devices.items():
                shots[dev_id] = str(workdir / f"{dev_id}-screen.png")
                dev.screenshot(shots[dev_id])
        finally:
            for dev in devices.values():
                dev.stop()
    summary = _check(store, outcomes, cellular)
    reports = {}
    for c in scenario.carriers:
        rid = fcs[c.device_id].get("route_id") or ""
        path = workdir / f"report-{rid}.html"
        route = routes.find(str(store_path), rid)
        path.write_text(report.render(report.build(route, store), "html"))
        reports[rid] = str(path)
    summary.update(screenshots=shots, reports=reports, workdir=str(workdir))
    return summary


def _walk(dev: Device, plan: Carrier, fc: dict[str, Any], out: Outcome) -> None:
    try:
        Walker(dev, plan, fc, out).run()
    except Exception as exc:  # the check below reports it; the other carrier goes on
        out.errors.append(f"walk aborted: {type(exc).__name__}: {exc}")


def _flash_all(devices: dict[str, Device], store: Store, image: flash.Image, url: str, say: Any,
               server_ca: str = "") -> None:
    results = flash.flash_many([(d.console, dev_id) for dev_id, d in devices.items()], image.board,
                               store.key, server_url=url, server_ca=server_ca)
    del image  # flash_many builds its own (cached) image for the board
    for r in results:
        say(f"flash: {r.device_id} {r.status} {r.detail}")
        if not r.ok:
            raise DayFailed(f"flash of {r.device_id} failed: {r.message}")
    for dev_id, dev in devices.items():  # flash rebooted them: wait for each power-up beep
        try:
            dev.wait_ready(timeout=60)
        except TimeoutError:
            raise DayFailed(f"{dev_id} did not start its application after the flash") from None


def _wait_uploads(store: Store, outcomes: list[Outcome], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(store.ack_seq(o.device_id) >= len(o.expected) for o in outcomes):
            break
        time.sleep(0.5)
    return {o.device_id: len(store.records(o.device_id)) for o in outcomes}


def _check(store: Store, outcomes: list[Outcome], cellular: dict[str, int]) -> dict[str, Any]:
    """Every confirmed record in the store exactly once; anything else only from the power cut."""
    failures: list[str] = []
    per_device = {}
    for o in outcomes:
        recs = store.records(o.device_id)
        got = [(d["outcome"], d["stop_id"], d["item_id"]) for d in (r.to_dict() for r in recs)
               if d["outcome"] != "correction"]
        seqs = [r.seq for r in recs]
        if len(seqs) != len(set(seqs)):
            failures.append(f"{o.device_id}: duplicate sequence numbers")
        missing = [e for e in o.expected if got.count(e) < o.expected.count(e)]
        extra = [g for g in got if got.count(g) > o.expected.count(g) and g not in o.maybe]
        failures += [f"{o.device_id}: confirmed record missing from store: {m}" for m in missing]
        failures += [f"{o.device_id}: record not confirmed by the script: {x}" for x in set(extra)]
        failures += [f"{o.device_id}: {e}" for e in o.errors]
        skipped = store.absent(o.device_id)  # runs the journal leased but never used
        lost = seqruns.subtract(store.gaps(o.device_id), skipped)
        if lost:
            failures.append(f"{o.device_id}: sequence numbers missing from the store: {lost[:10]}")
        per_device[o.device_id] = {"confirmed": len(o.expected), "stored": len(recs),
                                   "seq_skipped_after_power_cut": seqruns.count(skipped),
                                   "overrides": o.overrides, "attempts": o.attempts,
                                   "invalid_refused": o.invalid, "wrong_stop_warned": o.refused,
                                   "via_cellular_before_dock": cellular.get(o.device_id, 0)}
    return {"ok": not failures, "failures": failures, "devices": per_device}


def main(path: str, workdir: str | None = None) -> int:
    scenario = Scenario.load(path)  # ScenarioError: one line, before anything boots
    out = Path(workdir) if workdir else ROOT / "results" / f"day-{time.strftime('%Y%m%d-%H%M%S')}"
    t0 = time.monotonic()
    try:
        summary = run(scenario, out)
    except DayFailed as exc:
        print(f"\nDAY FAILED: {exc}")
        return 1
    print(f"\n== {scenario.name}: {time.monotonic() - t0:.0f} s ==")
    for dev_id, d in summary["devices"].items():
        print(f"{dev_id}: " + ", ".join(f"{k} {v}" for k, v in d.items()))
    for rid, p in summary["reports"].items():
        print(f"report {rid}: {p}")
    for dev_id, p in summary["screenshots"].items():
        print(f"screen {dev_id}: {p}")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if not summary["ok"]:
        print("EXPECTATIONS FAILED:\n  " + "\n  ".join(summary["failures"]))
        return 1
    print("every confirmed record is in the store exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
