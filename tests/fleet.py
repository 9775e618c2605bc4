"""Many simulated handhelds uploading to `depot serve` as the firmware's uploader does: signed
batches of encoded records, a fresh request counter for every attempt, a retry after any answer that
is not an acknowledgement signed for that very request, and the watermark moved only by one.

Each device remembers the highest acknowledgement it got; `check` then proves the store holds
every record exactly once and that every acknowledged seq was stored (no ack before commit).
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware import record, upload_wire
from firmware.sign import Signer
from host_tools.store import Storage
from host_tools.upload_server_wire import encode_batch


def records_for(device_id: str, first: int, n: int) -> list[bytes]:
    return [record.Record(seq=s, device_id=device_id, route_id="FLEET", stop_id="S%d" % (s % 400),
                          item_id="RR%08d9GB" % (s % 10**8), verdict=record.V_INSIDE, lat_e6=52_000_000 + s,
                          lon_e6=13_000_000, device_time=1_700_000_000 + s).encode()
            for s in range(first, first + n)]


@dataclass
class SimDevice:
    device_id: str
    signer: Signer
    records: list[bytes]
    acked: int = 0  # the device's watermark: only a signed ack moves it
    counter: int = 0
    attempts: int = 0
    failures: int = 0
    acks: list[int] = field(default_factory=list)
    ready: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (acked, counter) -> body


class Fleet:
    """`Fleet(store, n).run(url, batch=24)` uploads every device's records through `url`."""

    def __init__(self, store: Storage, devices: int, records_each: int, prefix: str = "FL"):
        self.devices: list[SimDevice] = []
        for i in range(devices):
            dev = f"{prefix}-{i:05d}"
            key = store.enrol(dev)
            self.devices.append(SimDevice(dev, Signer(key), records_for(dev, 1, records_each)))

    @property
    def total(self) -> int:
        return sum(len(d.records) for d in self.devices)

    @staticmethod
    def _encode(d: SimDevice, batch: int, acked: int | None = None, counter: int | None = None) -> bytes:
        first = d.acked if acked is None else acked
        return encode_batch(d.device_id, d.signer, d.counter if counter is None else counter,
                            int(time.time()), d.records[first:first + batch])

    def prepare(self, batch: int) -> None:
        """Encode and sign every batch of a fault-free run before it starts, so a benchmark's client
        spends its CPU on HTTP only (a retry still encodes its own)."""
        for d in self.devices:
            for i, first in enumerate(range(d.acked, len(d.records), batch)):
                d.ready[(first, d.counter + 1 + i)] = self._encode(d, batch, first, d.counter + 1 + i)

    def _send(self, conn: http.client.HTTPConnection, d: SimDevice, batch: int) -> bool:
        d.counter += 1  # a new counter per attempt, as CounterLease.take() gives
        d.attempts += 1
        body = d.ready.pop((d.acked, d.counter), None) or self._encode(d, batch)
        conn.request("POST", f"/v1/devices/{d.device_id}/records", body=body,
                     headers={"content-type": "application/octet-stream"})
        r = conn.getresponse()
        data = r.read()
        ack = upload_wire.parse_ack(data, d.signer, d.device_id, d.counter) if data else None
        if r.status == 200 and ack is not None and ack.status == upload_wire.ACK_OK:
            d.acked = max(d.acked, min(ack.ack_seq, len(d.records)))
            d.acks.append(ack.ack_seq)
            return True
        d.failures += 1
        return False

    @property
    def acked(self) -> int:
        return sum(d.acked for d in self.devices)

    def run(self, url: str, batch: int = 24, threads: int = 16, deadline_s: float = 120.0,
            seed: int = 1, at: dict[float, Callable[[], None]] | None = None) -> float:
        """Upload everything; returns the seconds it took. Devices are shared out among `threads`
        workers, each with its own keep-alive connection, round-robin one batch at a time.

        `at` maps a share of the records (0.25: a quarter acknowledged) to a fault to inject then.
        It runs in the worker whose acknowledgement crossed that share, while the other workers
        go on sending: a fault mid-ingest however fast the machine is."""
        pending = sorted((at or {}).items())
        fire = threading.Lock()

        def progress() -> None:
            with fire:
                due = [f for share, f in pending if self.acked >= share * self.total]
                del pending[:len(due)]
            for fault in due:
                fault()

        host, port = url.removeprefix("http://").split(":")
        groups = [self.devices[i::threads] for i in range(threads)]
        end = time.monotonic() + deadline_s
        errors: list[BaseException] = []

        def work(devs: list[SimDevice], rng: random.Random) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            try:
                while True:
                    todo = [d for d in devs if d.acked < len(d.records)]
                    if not todo:
                        return
                    if time.monotonic() > end:
                        raise TimeoutError(f"{len(todo)} devices still uploading at the deadline")
                    for d in todo:
                        try:
                            ok = self._send(conn, d, batch)
                        except (OSError, http.client.HTTPException):
                            ok = False
                            d.failures += 1
                            conn.close()
                            conn = http.client.HTTPConnection(host, int(port), timeout=10)
                        if ok:
                            progress()
                        else:
                            time.sleep(rng.uniform(0, 0.2))  # full jitter, short: the test waits
            except BaseException as exc:  # noqa: BLE001 - reported by run()
                errors.append(exc)
            finally:
                conn.close()

        t0 = time.perf_counter()
        workers = [threading.Thread(target=work, args=(g, random.Random(seed + i)))
                   for i, g in enumerate(groups)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if errors:
            raise errors[0]
        return time.perf_counter() - t0

    def check(self, store: Storage) -> dict[str, int]:
        """Every record stored once, none in conflict, and every acknowledged seq in the store."""
        stored = 0
        for d in self.devices:
            seqs = [record.seq_of(p) for p in store.payloads(d.device_id)]
            assert seqs == list(range(1, len(d.records) + 1)), f"{d.device_id}: stored {len(seqs)} records"
            assert max(d.acks, default=0) <= len(seqs), f"{d.device_id}: acknowledged past what was stored"
            assert store.ack_seq(d.device_id) == len(d.records)
            stored += len(seqs)
        assert store.conflicts() == []
        return {"stored": stored, "attempts": sum(d.attempts for d in self.devices),
                "failures": sum(d.failures for d in self.devices)}
