"""A carrier's day on virtual handhelds, end to end: `python -m sim run SCENARIO` and `make demo`.

The depot compiles routes, enrols and flashes the devices with mpremote, pushes the routes over the
dock, starts its ingest server; carriers walk their routes (GNSS fixes at each door, scans, keys);
the modems upload during the day; the devices dock at night; the reports are written. Every record
the carrier heard confirmed must be in the store exactly once, or the run fails. Format of
SCENARIO: docs/scenario.md. The carriers' side, at the devices, is sim/day_walker.py.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from host_tools import flash, report, route_assign, route_compile, routes, seqruns, term
from host_tools.record_dict import as_dict
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.sync import sync_device
from sim.client import Device
from sim.day_walker import Outcome, Walker
from sim.scenario import Carrier, Scenario

ROOT = Path(__file__).resolve().parent.parent


class DayFailed(RuntimeError):
    pass


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
        got = [(d["outcome"], d["stop_id"], d["item_id"]) for d in (as_dict(r) for r in recs)
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
