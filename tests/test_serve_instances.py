"""Several stateless `depot serve` instances in front of one PostgreSQL: a fleet of simulated
handhelds uploads through them while an instance is killed (kill -9) or the database is stopped
(`pg_ctl stop -m immediate`) and started again. Devices retry; nothing is lost, nothing is stored
twice, and no acknowledgement comes before its commit (tests/fleet.py checks all three)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.server import BackgroundServer
from host_tools.store_pg import PgStore
from tests.fleet import Fleet
from tests.pgcluster import PgCluster
from tests.torture_util import LONG

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(url: str) -> tuple[int, dict]:
    import http.client

    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        c.close()


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if health(url)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
            raise RuntimeError("depot serve did not become healthy")
        time.sleep(0.1)


def workers_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


@pytest.fixture
def two_instances(pg_url, tmp_path):
    """`depot serve --workers 2` on PostgreSQL: a supervisor and two worker processes, one port."""
    port = free_port()
    env = dict(os.environ, DEPOT_HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "--store", pg_url, "serve",
                             "--port", str(port), "--workers", "2"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "serve.log").open("wb"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        deadline = time.monotonic() + 30
        while len(workers_of(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_health_reports_the_database(two_instances) -> None:
    url, proc = two_instances
    status, body = health(url)
    assert status == 200 and body["store"] is True
    assert len(workers_of(proc.pid)) == 2


@pytest.mark.torture
def test_kill_9_of_one_instance_mid_upload_loses_nothing_and_stores_nothing_twice(two_instances,
                                                                                   pg_url) -> None:
    url, proc = two_instances
    store = PgStore(pg_url, migrate=False)
    fleet = Fleet(store, devices=120 if LONG else 24, records_each=200 if LONG else 100)
    kills = 0

    def kill_one() -> None:
        nonlocal kills
        victims = workers_of(proc.pid)
        if victims:
            os.kill(victims[0], signal.SIGKILL)  # mid-upload: whatever it was doing
            kills += 1

    shares = (0.2, 0.4, 0.6, 0.8) if LONG else (0.25, 0.6)
    fleet.run(url, batch=12, threads=8, deadline_s=300, at={s: kill_one for s in shares})
    got = fleet.check(store)
    store.close()
    assert kills == len(shares)
    print(f"\nfault serve kill -9: {kills} kills, {got['stored']} records stored once, "
          f"{got['failures']} failed attempts retried, 0 lost", flush=True)


@pytest.mark.torture
def test_postgresql_stopped_immediately_mid_ingest_and_started_again(tmp_path) -> None:
    with PgCluster() as pg:
        store = PgStore(pg.url)
        fleet = Fleet(store, devices=60 if LONG else 12, records_each=150 if LONG else 100)
        with BackgroundServer(PgStore(pg.url, migrate=False)) as srv:
            outages = 0
            seen_503 = []

            def outage() -> None:
                nonlocal outages
                pg.stop("immediate")  # a crash: no checkpoint, WAL replay at start
                outages += 1
                try:
                    seen_503.append(health(srv.url)[0])
                except OSError:
                    pass
                time.sleep(1.0)  # the other workers keep sending into the outage
                pg.pg_ctl_start()

            shares = (0.25, 0.5, 0.75) if LONG else (0.3,)
            fleet.run(srv.url, batch=12, threads=6, deadline_s=300, at={s: outage for s in shares})
            got = fleet.check(store)
        store.close()
    assert outages == len(shares) and 503 in seen_503  # health says so while the database is down
    print(f"\nfault postgresql stop -m immediate: {outages} outages, {got['stored']} records stored once, "
          f"{got['failures']} failed attempts retried, 0 lost", flush=True)
