"""Ingest at fleet scale (issue 15): 200 simulated handhelds upload signed batches of 24 records, as
the firmware's uploader does, to `depot serve` processes on SQLite and on PostgreSQL (a private
cluster started here), the same load for each.

- ingest_records_per_s_sqlite_1 / _pg_1 / _pg_2: records stored per second of wall time with one
  serve process on SQLite, one on PostgreSQL, two on PostgreSQL (`--workers 2`, SO_REUSEPORT);
- ingest_pg_vs_sqlite (pg_1 / sqlite_1, goal >= 0.8), ingest_pg_2_vs_1;
- ingest_cpu_us_per_record_pg / _sqlite: CPU time of the serve processes plus the database's own
  processes (PostgreSQL's backends; SQLite runs inside the server) per record, from /proc.
The client runs in this process on the same 2 cores: its bodies are signed before the clock starts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host_tools.store import Store
from host_tools.store_pg import PgStore
from tests.fleet import Fleet
from tests.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]
DEVICES = 200
RECORDS = 72  # each: 3 batches of 24
BATCH = 24
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (of the process itself)
    return total / TICK


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(store: str, workers: int, home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "host_tools", "--store", store, "serve",
                             "--port", str(port), "--workers", str(workers),
                             "--max-inflight", "1000", "--max-connections", "1000"],
                            cwd=ROOT, env=dict(os.environ, DEPOT_HOME=str(home)),
                            stdout=subprocess.DEVNULL, stderr=(home / "serve.log").open("ab"))
    url = f"http://127.0.0.1:{port}"
    from tests.test_serve_instances import wait_healthy

    wait_healthy(url, proc)
    if workers > 1:
        deadline = time.monotonic() + 30
        while len(_tree(proc.pid)) < workers + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    return proc, url


def _measure(store_arg: str, store, workers: int, home: Path, db_pids) -> tuple[float, float, float]:
    """(records per second, CPU microseconds per record, cores busy on server + database)."""
    fleet = Fleet(store, DEVICES, RECORDS, prefix=f"B{workers}{len(store_arg) % 7}")
    fleet.prepare(BATCH)
    proc, url = _serve(store_arg, workers, home)
    try:
        pids = _tree(proc.pid) + db_pids()
        cpu0 = _cpu_s(pids)
        wall = fleet.run(url, batch=BATCH, threads=32, deadline_s=600)
        pids = _tree(proc.pid) + db_pids()
        cpu = _cpu_s(pids) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    got = fleet.check(store)
    return got["stored"] / wall, cpu / got["stored"] * 1e6, cpu / wall


def run(report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        sqlite_path = str(home / "bench.sqlite3")
        sq = Store(sqlite_path)
        rate_sq, cpu_sq, busy_sq = _measure(sqlite_path, sq, 1, home, lambda: [])
        sq.close()
        with PgCluster() as pg:
            pgs = PgStore(pg.url)
            postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])

            def db_pids() -> list[int]:
                return _tree(postmaster)

            rate_pg1, cpu_pg1, busy_pg1 = _measure(pg.url, pgs, 1, home, db_pids)
            rate_pg2, cpu_pg2, busy_pg2 = _measure(pg.url, pgs, 2, home, db_pids)
            pgs.close()
    n = DEVICES * RECORDS
    report("ingest_records_per_s_sqlite_1", rate_sq, "rec/s",
           f"{DEVICES} devices, {n} records, batches of {BATCH}; {busy_sq:.2f} cores busy")
    report("ingest_records_per_s_pg_1", rate_pg1, "rec/s", f"one serve process; {busy_pg1:.2f} cores busy")
    report("ingest_records_per_s_pg_2", rate_pg2, "rec/s",
           f"serve --workers 2 (SO_REUSEPORT); {busy_pg2:.2f} cores busy")
    report("ingest_pg_vs_sqlite", rate_pg1 / rate_sq, "x", "goal >= 0.8")
    report("ingest_pg_2_vs_1", rate_pg2 / rate_pg1, "x", "2 cores shared with the client and PostgreSQL")
    report("ingest_cpu_us_per_record_pg", cpu_pg1, "us",
           f"serve + PostgreSQL processes; 2 workers: {cpu_pg2:.0f}")
    report("ingest_cpu_us_per_record_sqlite", cpu_sq, "us", "serve process (SQLite inside it)")
