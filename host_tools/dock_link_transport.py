"""The dock link's transport (spec: docs/dock-protocol.md) over pyserial: frames and requests.

`DockTransport` writes frames, decodes what comes back into a queue of good frames, and sends a
request until its reply arrives (retransmitting on silence, ignoring late frames of earlier
exchanges). Failures are typed: DockTimeout (the device stopped answering), DockProtocolError (it
answered nonsense), DockAuthError (the peer did not prove the device key), DeviceRefused (it
answered with an ERROR frame), all DockErrors. The session on top is host_tools/dock_link.py.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Self

import serial

from firmware import dock_wire as P

BAUD = 115200
IDLE_S = 0.25  # a stream's line silent this long: the device never got our request, ask again
MIN_FRAME = 64  # smallest frame payload the host asks for on a noisy line
RTO_S = 1.0  # request timeout before a retransmission; 1.5x that for silence inside a stream


class DockError(Exception):
    """Anything that ended a dock conversation early."""


class DockTimeout(DockError):
    pass


class DockProtocolError(DockError):
    pass


class DockAuthError(DockError):
    """The peer did not prove the device key: a rogue device, or a record frame altered on the line."""


class DeviceRefused(DockError):
    """The device answered with an ERROR frame."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class AckRefused(DeviceRefused):
    pass


class RouteRefused(DeviceRefused):
    pass


class AuthRefused(DeviceRefused):
    """The device refused our proof of its key, or a request made before it."""


@dataclass
class Frame:
    type: int
    seq: int
    ack: int
    payload: bytes


@dataclass
class LinkStats:
    bytes_in: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    frames_bad: int = 0
    retransmits: int = 0
    naks: int = 0
    frames_forged: int = 0  # good CRC, bad session MAC


class DockTransport:
    def __init__(self, port: str | Any, *, window: int = 8, retries: int = 10, rto: float = RTO_S):
        self.ser = serial.Serial(port, BAUD, timeout=0.05) if isinstance(port, str) else port
        self.window = window
        self.frame_size = P.MAX_PAYLOAD  # payload bytes per frame, adapted to the line's noise
        self.last_rx = 0.0  # when bytes last arrived
        self.chunk = P.MAX_DATA  # route bytes per PUT_DATA, adapted to the line's noise
        self.retries = retries
        self.rto = rto
        self.give_up = rto * (retries + 1)  # a stream or push without progress this long fails
        self.dec = P.Decoder()
        self.enc = P.Encoder()
        self.frames: deque[Frame] = deque()
        self.stats = LinkStats()
        self._id = random.randrange(1, 256)  # a fresh session rarely reuses the device's cached id
        self.heard = bytearray()  # the last raw bytes in: tells a console from a silent dock port
        self._write(b"\0")  # flush whatever half frame the device's decoder holds

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_id(self) -> int:
        """A fresh request id, 1 to 255: a reply names the request it answers by it."""
        self._id = self._id % 255 + 1
        return self._id

    def _write(self, data: bytes | memoryview) -> None:
        try:
            self.ser.write(data)
        except (OSError, serial.SerialException) as exc:
            raise DockError(f"dock port write failed: {exc}") from exc
        self.stats.bytes_out += len(data)

    def send(self, ftype: int, seq: int, ack: int, payload: bytes = b"") -> None:
        self.enc.payload[: len(payload)] = payload
        self._write(self.enc.frame(ftype, seq, ack, len(payload)))

    def poll(self, timeout: float) -> Frame | None:
        """The next good frame, waiting at most `timeout` seconds; None if none came."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.ser.timeout = min(left, 0.05)
            try:
                waiting = self.ser.in_waiting
                data = self.ser.read(max(1, min(waiting, 4096)))
            except (OSError, serial.SerialException) as exc:
                raise DockError(f"dock port read failed: {exc}") from exc
            if data:
                self.last_rx = time.monotonic()
                self._feed(data)
        return self.frames.popleft()

    def _feed(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        self.heard += data
        del self.heard[:-256]
        dec = self.dec
        pos = 0
        bad = dec.bad
        while pos < len(data):
            pos = dec.feed(data, pos, len(data))
            if dec.ready:
                self.stats.frames_in += 1
                self.frames.append(Frame(dec.type, dec.seq, dec.ack,
                                         bytes(dec.buf[P.HEAD: P.HEAD + dec.plen])))
        self.stats.frames_bad += dec.bad - bad

    # -- requests --------------------------------------------------------------------------------

    def request(self, ftype: int, payload: bytes = b"", timeout: float | None = None) -> bytes:
        """Send a request and return its reply's payload, retransmitting on silence."""
        rid = self.next_id()
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retransmits += 1
            self.send(ftype, rid, 0, payload)
            deadline = time.monotonic() + (timeout or self.rto)
            while True:
                f = self.poll(max(0.0, deadline - time.monotonic()))
                if f is None:
                    break
                if f.ack != rid:
                    continue  # late frame of an earlier exchange
                if f.type == ftype | P.REPLY:
                    return f.payload
                if refuses(f, ftype):
                    raise refusal(ftype, f.payload)
        raise DockTimeout(f"no answer to request 0x{ftype:02x} after {self.retries + 1} tries")


def refuses(f: Frame, ftype: int) -> bool:
    """An ERROR for a request of this type. A stale ERROR (an earlier session's frame answered
    after a reboot) may carry the same 8-bit id, but not for the same kind of request."""
    return f.type == P.ERROR and len(f.payload) > 1 and f.payload[1] == ftype


def refusal(ftype: int, payload: bytes) -> DeviceRefused:
    code = payload[0] if payload else 0
    try:
        msg = P.get_str(payload, 2)[0] if len(payload) > 2 else "device error"
    except (ValueError, IndexError, UnicodeError):
        msg = "device error"
    if code == P.E_ACK_REFUSED:
        return AckRefused(code, msg)
    if code == P.E_ROUTE:
        return RouteRefused(code, msg)
    if code == P.E_AUTH:
        return AuthRefused(code, msg)
    return DeviceRefused(code, f"request 0x{ftype:02x} refused: {msg}")
