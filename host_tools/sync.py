"""One device's nightly sync over its dock port: hello, clock, records, commit, signed ack, route.

Order is what makes a cut harmless at any point: records are committed to the store (durably)
before the acknowledgement is even built, and the acknowledgement names only the highest
contiguous sequence the store holds. A cut before the ack leaves the device holding records the
store already has (the next sync re-sends them, the store counts them as duplicates); a cut after
it leaves nothing to redo. Nothing is taken from a device that has not proved its key, and the
ack is bound to the session's nonces, so it cannot be replayed into another session.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from host_tools.dock_link import (
    AuthRefused,
    DockAuthError,
    DockError,
    DockLink,
    DockTimeout,
    Hello,
    RouteRefused,
)
from host_tools.store import Storage, UnknownDevice

Progress = Callable[[str], None]
# Records are committed in batches: a durable SQLite commit costs milliseconds, as long as a 1 KB
# frame takes at USB speed. Whatever is not yet committed the device still holds (it deletes only
# after the ACK, which follows the last commit), so a crash costs a re-send, never a record.
COMMIT_RECORDS = 256
COMMIT_S = 0.5  # at most this long between commits on a slow line: progress stays current


class DeviceRevoked(DockAuthError):
    """The store revoked this device: nothing is taken from it, nothing is sent to it."""


@dataclass
class SyncReport:
    port: str
    device_id: str = ""
    ok: bool = False
    error: str = ""
    received: int = 0  # records that came over the link
    stored: int = 0
    duplicates: int = 0
    conflicts: list[int] = field(default_factory=list)
    absent: list[tuple[int, int]] = field(default_factory=list)  # runs of seqs the device never held
    acked_seq: int = 0  # the device's watermark after our ACK
    pending_after: int = 0
    route_pushed: str = ""  # route id made active on the device, if any
    route_error: str = ""
    key_rotated: bool = False  # the device got the key `depot rotate-key` made
    gaps: list[tuple[int, int]] = field(default_factory=list)  # runs of seqs missing in the store
    skipped: list[tuple[int, int]] = field(default_factory=list)  # runs the device declared unused
    payload_bytes: int = 0
    seconds: float = 0.0
    link: dict[str, int] = field(default_factory=dict)


def sync_device(port: str | Any, store: Storage, *, progress: Progress | None = None,
                push_route: bool = True, window: int = 8, retries: int = 10,
                rto: float = 1.0) -> SyncReport:
    """Sync one docked device; never raises for a dock problem, the report says what happened."""
    name = port if isinstance(port, str) else getattr(port, "port", "?")
    rep = SyncReport(port=str(name))
    t0 = time.monotonic()
    say = progress or (lambda _msg: None)
    try:
        link = DockLink(port, window=window, retries=retries, rto=rto)
    except (DockError, OSError) as exc:
        rep.error = _explain(exc, rep, None)
        say("failed")
    else:
        with link:
            try:
                _sync(link, store, rep, say, push_route)
            except (DockError, UnknownDevice, OSError) as exc:
                rep.error = _explain(exc, rep, link)  # while the port is open: it may restart a console
                say("failed")
            finally:
                rep.link = vars(link.stats).copy()
    rep.seconds = time.monotonic() - t0
    if rep.device_id:
        try:
            rep.gaps = store.gaps(rep.device_id)
            rep.skipped = store.absent(rep.device_id)  # host_tools.seqs: gap vs skipped
        except UnknownDevice:
            pass
    return rep


def _sync(link: DockLink, store: Storage, rep: SyncReport, say: Progress, push_route: bool) -> None:
    say("hello")
    hello = link.hello()
    dev = rep.device_id = hello.device_id
    key = store.key(dev)
    if key is None:
        if store.revoked(dev):
            raise DeviceRevoked(f"device {dev!r} is revoked (depot revoke)")
        raise UnknownDevice(f"device {dev!r} is not enrolled in this store")
    retired = store.retired_key(dev)
    if retired is not None and not link.device_proves(hello, key) and link.device_proves(hello, retired):
        # rotated since its last flash or sync: the session runs under the key it holds, and it
        # gets the new one first thing (sealed under that session)
        link.authenticate(hello, retired)  # before anything the device said is believed
        say("new key")
        link.set_key(key)
        store.key_delivered(dev, key)
        rep.key_rotated = True
    else:
        link.authenticate(hello, key)  # before anything the device said is believed
    store.seen(dev, "dock", **_status(hello))
    link.set_clock(int(time.time()))

    total = max(0, hello.last_seq - hello.watermark)
    held: list[bytes] = []  # received, not yet committed
    held_since = 0.0

    def commit() -> None:
        if held:
            res = store.ingest(dev, held, "dock")  # committed before we go on
            rep.stored += res.stored
            rep.duplicates += res.duplicates
            rep.conflicts += res.conflicts
            rep.received += len(held)
            rep.payload_bytes += sum(len(r) for r in held)
            held.clear()
            say(f"records {rep.received}/{total}")  # counts only what the store holds

    def batch(recs: list[bytes], absent: list[tuple[int, int]]) -> None:
        nonlocal held_since
        if recs and not held:
            held_since = time.monotonic()
        held.extend(recs)
        if absent:
            commit()  # the records before a skip are stored before the skip is declared
            store.declare_absent(dev, absent, "dock")
            rep.absent += absent
        if len(held) >= COMMIT_RECORDS or time.monotonic() - held_since >= COMMIT_S:
            commit()

    say(f"records 0/{total}")
    try:
        link.records(hello.watermark + 1, batch)
    finally:
        commit()  # a stream cut short keeps what came: the next sync does not send it again

    ack = store.ack_seq(dev)
    if ack > hello.watermark:
        say(f"ack {ack}")
        rep.acked_seq = link.ack(ack)
    else:
        rep.acked_seq = hello.watermark

    if push_route and _push_wanted(store, dev, hello):
        assigned = store.assigned_route(dev)
        assert assigned is not None
        say("route push")
        try:
            rep.route_pushed = link.put_route(
                assigned.package, assigned.sha256,
                lambda done, size: say(f"route {100 * done // max(size, 1)}%"))
            store.mark_pushed(dev, assigned.sha256)
        except RouteRefused as exc:  # the device kept its previous route
            rep.route_error = str(exc)

    st = link.status()
    store.seen(dev, "dock", pending=st.pending, watermark=st.watermark, free_flash=st.free_flash,
               battery=st.battery, route_id=st.route_id)
    rep.pending_after = st.pending
    rep.ok = not rep.conflicts and not rep.route_error
    if rep.conflicts:
        rep.error = f"{len(rep.conflicts)} record(s) conflict with stored ones (flagged)"
    elif rep.route_error:
        rep.error = rep.route_error
    say("done")


def _explain(exc: Exception, rep: SyncReport, link: DockLink | None) -> str:
    """One line for the operator: what went wrong on this port and what to check."""
    port = rep.port
    if link is None:  # the port did not open
        errno = getattr(exc, "errno", None)
        why = os.strerror(errno) if isinstance(errno, int) else str(exc)  # pyserial wraps the OSError
        return f"cannot open {port}: {why}. Check the port name (the dock's serial port, e.g. /dev/ttyACM0)"
    if isinstance(exc, UnknownDevice):
        return (f"device {rep.device_id} is not enrolled in this store. Check --store or DEPOT_HOME, "
                f"or enrol it: depot enrol --device-id {rep.device_id}")
    if isinstance(exc, DockTimeout) and not rep.device_id:  # never heard a single frame
        if console_restarted(link):
            return (f"{port} is a handheld's USB console, not its dock port. Give the dock port; "
                    "the handheld was restarted and runs its app again")
        return (f"no answer from a handheld on {port}. Check that it sits in the dock and is powered, "
                "and that this is the dock port, not the USB console")
    if isinstance(exc, DeviceRevoked):
        return f"{exc}. Nothing was collected or deleted; a revoked device syncs only after a new enrolment"
    if isinstance(exc, (DockAuthError, AuthRefused)):
        return (f"{exc}. Nothing was collected or deleted; flash the handheld with the key this store "
                f"holds (depot flash), or check --store")
    if isinstance(exc, DockTimeout):
        return (f"{rep.device_id} stopped answering on {port} ({exc}). Check that it is still docked and "
                "powered, then sync again: nothing is lost, records are deleted only after an ack")
    return (f"{rep.device_id or port}: {exc}. Sync again; if it repeats, reboot the handheld "
            "(nothing is lost)")


_CONSOLE = (b">>> ", b"raw REPL", b"Traceback", b"MicroPython")  # what only a REPL prints


def console_restarted(link: DockLink) -> bool:
    """Whether the port answered as a MicroPython console sitting at a prompt (the dock frames
    interrupted its app, as any Ctrl-C byte would); if so, soft-reset it so the app runs again."""
    time.sleep(0.3)  # the last echo
    try:
        link.poll(0.05)
    except DockError:
        return False
    if not any(mark in link.heard for mark in _CONSOLE):
        return False
    try:
        link.ser.write(b"\x03\x02")  # out of a half line, a paste or the raw REPL: friendly REPL
        time.sleep(0.2)
        link.ser.write(b"\x04")  # soft reset: boot.py and main.py run
        link.ser.flush()
        time.sleep(0.2)
    except (OSError, ValueError):
        return False
    return True


def _push_wanted(store: Storage, dev: str, hello: Hello) -> bool:
    assigned = store.assigned_route(dev)
    return assigned is not None and assigned.sha256[:8] != hello.route_hash


def _status(h: Hello) -> dict[str, Any]:
    return {"firmware": h.firmware, "board": h.board, "route_id": h.route_id, "route_hash": h.route_hash,
            "pending": h.pending, "watermark": h.watermark, "battery": h.battery,
            "free_flash": h.free_flash}
