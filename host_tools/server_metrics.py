"""The ingest server's metrics, kept by prometheus_client in a registry of the app's own (so two
servers in one process, as in the tests, never share counts). `/metrics` serves the registry as
Prometheus text; `/metrics?format=json` gives the same counts as JSON, with latency percentiles
over the last 2,048 batches (the Prometheus side exposes the histogram only: quantiles are the
query's job there)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  # re-exported
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Request counts, refusals by reason, records by outcome, overload and timeouts, latency."""

    def __init__(self) -> None:
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter("depot_requests", "HTTP requests answered, by endpoint and status",
                                 ["path", "status"], registry=r)
        self._rejections = Counter("depot_rejections", "Batches refused, by reason", ["reason"],
                                   registry=r)
        self._records = Counter("depot_records", "Records in accepted batches, by outcome",
                                ["outcome"], registry=r)
        self._overload = Counter("depot_overload", "Requests or connections turned away with 503",
                                 ["limit"], registry=r)
        self._timeouts = Counter("depot_timeouts", "Connections closed for slowness, by phase",
                                 ["phase"], registry=r)
        self.latency = Histogram("depot_ingest_latency_seconds", "Time to check, store and acknowledge "
                                 "one batch", buckets=LATENCY_BUCKETS, registry=r)
        self.connections = Gauge("depot_open_connections", "HTTP connections open now", registry=r)
        self.recent: deque[float] = deque(maxlen=2048)

    # -- counting ------------------------------------------------------------------------------

    def request(self, path: str, status: int) -> None:
        self._requests.labels(path, str(status)).inc()

    def reject(self, reason: str) -> None:
        self._rejections.labels(reason).inc()

    def record(self, outcome: str, n: int) -> None:
        if n:
            self._records.labels(outcome).inc(n)

    def overload(self, limit: str) -> None:
        self._overload.labels(limit).inc()

    def timeout(self, phase: str) -> None:
        self._timeouts.labels(phase).inc()

    def observe(self, seconds: float) -> None:
        self.latency.observe(seconds)
        self.recent.append(seconds)

    # -- reading -------------------------------------------------------------------------------

    def _samples(self, family: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.registry.collect():
            if metric.name != family:
                continue
            for s in metric.samples:
                if s.name == family + "_total":
                    out[" ".join(s.labels[k] for k in label.split())] = s.value
        return out

    @property
    def rejections(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._samples("depot_rejections", "reason").items()}

    @property
    def requests(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._samples("depot_requests", "path status").items()}

    @property
    def records(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._samples("depot_records", "outcome").items()}

    def quantile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        s = sorted(self.recent)
        return s[min(len(s) - 1, int(q * len(s)))]

    def as_dict(self) -> dict[str, Any]:
        buckets: dict[str, int] = {}
        count, total = 0, 0.0
        for metric in self.registry.collect():
            if metric.name != "depot_ingest_latency_seconds":
                continue
            for s in metric.samples:
                if s.name.endswith("_bucket"):
                    buckets[s.labels["le"]] = int(s.value)
                elif s.name.endswith("_count"):
                    count = int(s.value)
                elif s.name.endswith("_sum"):
                    total = s.value
        return {
            "uptime_s": time.time() - self.started,
            "requests": dict(sorted(self.requests.items())),
            "rejections": self.rejections,
            "records": self.records,
            "overload": {k: int(v) for k, v in self._samples("depot_overload", "limit").items()},
            "timeouts": {k: int(v) for k, v in self._samples("depot_timeouts", "phase").items()},
            "ingest_latency_s": {"count": count, "sum": total, "p50": self.quantile(0.5),
                                 "p95": self.quantile(0.95), "p99": self.quantile(0.99), "buckets": buckets},
        }

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)
