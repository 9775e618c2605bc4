"""What every store backend offers and returns: the `Storage` interface, its record types, errors
and the limits both backends (store_sqlite.py, store_pg.py) enforce alike.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from firmware import record
from firmware.record import Record, RecordError
from host_tools.seqruns import Run

KEY_LEN = 32
# Highest sequence number taken: the device's journal counts below 2**30 (a small int on the MCU).
# A record claiming more is invalid, so no gap or acknowledgement can reach past it.
MAX_SEQ = (1 << 30) - 1
SCHEMA_VERSION = 4  # both backends; SQLite keeps it in PRAGMA user_version

# what a device reports of itself, kept by `seen`; the columns `DeviceInfo` is read from
STATUS_FIELDS = ("firmware", "board", "route_id", "route_hash", "pending", "watermark", "battery",
                 "free_flash")
DEVICE_COLUMNS = ("device_id, enrolled_at, ack_seq, last_seen, firmware, board, route_id, route_hash, "
                  "pending, watermark, battery, free_flash, last_source")


class StoreError(Exception):
    pass


class SchemaTooNew(StoreError):
    def __init__(self, version: int):
        super().__init__(f"the store's schema is version {version}, newer than this depot knows "
                         f"({SCHEMA_VERSION}): upgrade the depot tools before using this store")
        self.version = version


class StoreUnavailable(StoreError):
    """The database cannot be reached or is restarting: nothing was committed, try again later."""


class UnknownDevice(StoreError, KeyError):
    """The device was never enrolled in this store."""


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    conflicts: list[int] = field(default_factory=list)  # seqs refused: other payload or device id
    ack_seq: int = 0  # highest contiguous seq committed for the device, after this ingest
    invalid: int = 0  # byte strings that are not records at all


@dataclass
class Incoming:
    """An ingest's records decoded once, for either backend: each valid seq's first copy (payload,
    SHA-256, record) in `fresh`, and what is refused before the store is asked (another device's id;
    a second copy with other bytes in the same batch) as (seq, reason, stored sha, payload)."""
    fresh: dict[int, tuple[bytes, bytes, Record]] = field(default_factory=dict)
    refused: list[tuple[int, str, bytes | None, bytes]] = field(default_factory=list)

    @classmethod
    def sort(cls, device_id: str, records: Iterable[bytes], res: IngestResult) -> Incoming:
        """Counts undecodable records and in-batch copies in `res`; lists the refused seqs in it."""
        out = cls()
        for data in records:
            data = bytes(data)
            try:
                rec = record.decode(data)
            except (RecordError, ValueError, UnicodeError):
                res.invalid += 1
                continue
            if not 1 <= rec.seq <= MAX_SEQ:
                res.invalid += 1
                continue
            digest = hashlib.sha256(data).digest()
            first = out.fresh.get(rec.seq)
            if rec.device_id != device_id:
                out.refused.append((rec.seq, "device id mismatch", None, data))
            elif first is None:
                out.fresh[rec.seq] = (data, digest, rec)
                continue
            elif first[1] == digest:
                res.duplicates += 1
                continue
            else:  # twice in one batch with other bytes: the first copy decides
                out.refused.append((rec.seq, "payload differs", first[1], data))
            res.conflicts.append(rec.seq)
        return out


@dataclass
class Conflict:
    id: int
    device_id: str
    seq: int
    reason: str
    source: str
    at: float
    payload: bytes


@dataclass
class DeviceInfo:
    device_id: str
    enrolled_at: float
    ack_seq: int
    last_seen: float | None
    firmware: str | None
    board: str | None
    route_id: str | None
    route_hash: bytes | None
    pending: int | None
    watermark: int | None
    battery: int | None
    free_flash: int | None
    last_source: str | None


@dataclass
class FenceChange:
    """One stop's fence changed (or flagged) by `depot fences learn --apply`; detail is JSON."""
    route_id: str
    version: int
    night: str
    stop_id: str
    action: str
    detail: str


@dataclass
class AssignedRoute:
    device_id: str
    route_id: str | None
    package: bytes
    sha256: bytes
    assigned_at: float
    pushed_at: float | None


class Storage(Protocol):
    """What the depot's commands and the ingest server need from a store."""

    name: str  # what commands print (a path, or a database URL without its password)
    path: Path  # files kept beside the store (route copies) go in its folder

    def enrol(self, device_id: str) -> bytes: ...
    def key(self, device_id: str) -> bytes | None: ...
    def revoke(self, device_id: str) -> None: ...
    def revoked(self, device_id: str) -> bool: ...
    def rotate_key(self, device_id: str) -> bytes: ...
    def retired_key(self, device_id: str) -> bytes | None: ...
    def key_delivered(self, device_id: str, key: bytes) -> None: ...
    def ingest(self, device_id: str, records: Iterable[bytes], source: str) -> IngestResult: ...
    def ack_seq(self, device_id: str) -> int: ...
    def records(self, device_id: str | None = None, route_id: str | None = None) -> list[Record]: ...
    def payloads(self, device_id: str | None = None, route_id: str | None = None) -> list[bytes]: ...
    def count(self, device_id: str | None = None) -> int: ...
    def absent(self, device_id: str) -> list[Run]: ...
    def counter(self, device_id: str, name: str = "ack") -> int: ...
    def gaps(self, device_id: str) -> list[Run]: ...
    def declare_absent(self, device_id: str, seqs: Iterable[int | Run], source: str) -> int: ...
    def conflicts(self, device_id: str | None = None) -> list[Conflict]: ...
    def next_counter(self, device_id: str, name: str = "ack") -> int: ...
    def advance_counter(self, device_id: str, name: str, value: int) -> bool: ...
    def seen(self, device_id: str, source: str, **status: object) -> None: ...
    def device(self, device_id: str) -> DeviceInfo | None: ...
    def devices(self) -> list[DeviceInfo]: ...
    def assign_route(self, device_id: str, package: bytes | str | os.PathLike[str],
                     route_id: str | None = None) -> AssignedRoute: ...
    def assigned_route(self, device_id: str) -> AssignedRoute | None: ...
    def mark_pushed(self, device_id: str, sha256: bytes) -> None: ...
    def prune(self, before: dt.date) -> int: ...
    def migrate(self) -> tuple[int, int]: ...
    def schema_version(self) -> int: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...
    def add_route_version(self, route_id: str, geojson: str, night: str,
                          changes: Iterable[tuple[str, str, str]] = ()) -> int: ...
    def route_version(self, route_id: str) -> tuple[int, str, str] | None: ...
    def fence_history(self, route_id: str) -> list[FenceChange]: ...
