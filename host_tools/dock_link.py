"""Host side of the dock link (spec: docs/dock-protocol.md) over pyserial.

`DockLink` sends requests and waits for their answers (retransmitting on timeout), receives the
record stream in a go-back-N window (PROGRESS after every frame in order, one NAK per hole), and
pushes route packages in a window of PUT_DATA chunks that resumes from whatever the device holds.
Each session begins with mutual proof of the device key (`hello` then `authenticate`); after it,
record frames are checked and the ACK made under a key bound to both sides' fresh nonces.
Failures are typed: DockTimeout (the device stopped answering), DockProtocolError (it answered
nonsense), DockAuthError (the peer did not prove the device key), DeviceRefused (it answered with
an ERROR frame), all DockErrors.
"""

from __future__ import annotations

import random
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import serial

from firmware import dock_wire as P
from firmware import record, sign

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
class Hello:
    device_id: str
    firmware: str
    board: str
    route_id: str
    route_hash: bytes  # first 8 bytes of sha256(active.pkg); zeros without a route
    first_seq: int
    last_seq: int
    watermark: int
    pending: int
    free_flash: int
    battery: int | None
    device_nonce: bytes = b""
    host_nonce: bytes = b""
    signed: bytes = b""  # the reply up to its proof
    proof: bytes = b""


@dataclass
class Status:
    pending: int
    last_seq: int
    watermark: int
    free_flash: int
    battery: int | None
    route_id: str
    space: str


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


def _battery(b: int) -> int | None:
    return None if b == 255 else b


class DockLink:
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
        self.device_id = ""
        self._session: sign.Signer | None = None  # under the session key, once both proved the key
        self.heard = bytearray()  # the last raw bytes in: tells a console from a silent dock port
        self._write(b"\0")  # flush whatever half frame the device's decoder holds

    def close(self) -> None:
        self.ser.close()

    def __enter__(self) -> DockLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- frames ----------------------------------------------------------------------------------

    def _next_id(self) -> int:
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
        rid = self._next_id()
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
                if _refuses(f, ftype):
                    raise _refusal(ftype, f.payload)
        raise DockTimeout(f"no answer to request 0x{ftype:02x} after {self.retries + 1} tries")

    def hello(self) -> Hello:
        """Start a session under a fresh host nonce. The device names itself and signs its answer
        (its own fresh nonce included) with its key; nothing in it is trusted until
        `authenticate` has checked that proof with the key the store holds for that id."""
        self._session = None
        host_nonce = secrets.token_bytes(P.NONCE)
        p = self.request(P.HELLO, host_nonce)
        try:
            first, last, wm, pending, free, batt, rhash, dnonce = struct.unpack_from(P.HELLO_FIXED, p, 0)
            off = struct.calcsize(P.HELLO_FIXED)
            texts = []
            for _ in range(4):
                s, off = P.get_str(p, off)
                texts.append(s)
            if len(p) != off + 32:
                raise ValueError("no proof of the key")
        except (struct.error, ValueError, IndexError, UnicodeError) as exc:
            raise DockProtocolError(f"malformed HELLO reply: {exc}") from exc
        self.device_id = texts[0]
        return Hello(texts[0], texts[1], texts[2], texts[3], bytes(rhash), first, last, wm, pending,
                     free, _battery(batt), bytes(dnonce), host_nonce, p[:off], p[off:])

    @staticmethod
    def device_proves(hello: Hello, key: bytes) -> bool:
        """True if the device's HELLO was signed with `key`."""
        return sign.Signer(key).verify(hello.proof, P.HELLO_TAG, hello.host_nonce, hello.signed)

    def authenticate(self, hello: Hello, key: bytes) -> None:
        """Check the device's proof of `key` in its HELLO, then prove it ourselves. DockAuthError
        if the device's proof fails (it does not hold the key: nothing it sends is taken);
        AuthRefused if the device refuses ours."""
        signer = sign.Signer(key)
        if not self.device_proves(hello, key):
            raise DockAuthError(f"device {hello.device_id!r} did not prove its key: not the enrolled "
                                "device, or it holds another key")
        self.request(P.AUTH, signer.mac(P.auth_message(hello.host_nonce, hello.device_nonce,
                                                       hello.device_id)))
        self._session = sign.Signer(P.session_key(signer, hello.host_nonce, hello.device_nonce))

    def _ses(self) -> sign.Signer:
        if self._session is None:
            raise DockAuthError("no authenticated session: hello() and authenticate() first")
        return self._session

    def set_key(self, new_key: bytes) -> None:
        """Give the device a new key, sealed under the session key. The device has stored it when
        this returns; the session itself stays under the old one."""
        ses = self._ses()
        pad = ses.mac(P.KEY_TAG)
        sealed = bytes(a ^ b for a, b in zip(new_key, pad, strict=True))
        self.request(P.SET_KEY, struct.pack(P.SET_KEY_FIXED, sealed, ses.mac(P.KEY_TAG, sealed)))

    def set_clock(self, unix_s: int) -> None:
        self.request(P.SET_CLOCK, struct.pack("<I", unix_s))

    def status(self) -> Status:
        p = self.request(P.STATUS)
        try:
            pending, last, wm, free, batt = struct.unpack_from(P.STATUS_FIXED, p, 0)
            route_id, off = P.get_str(p, struct.calcsize(P.STATUS_FIXED))
            space, _ = P.get_str(p, off)
        except (struct.error, ValueError, IndexError, UnicodeError) as exc:
            raise DockProtocolError(f"malformed STATUS reply: {exc}") from exc
        return Status(pending, last, wm, free, _battery(batt), route_id, space)

    def ack(self, seq: int, mac: bytes | None = None) -> int:
        """Acknowledge every record up to `seq` (MAC under this session's key unless `mac` is
        given, as tests do to forge one); return the device's watermark after it."""
        if mac is None:
            mac = self._ses().mac(P.ack_message(self.device_id, seq))
        p = self.request(P.ACK, struct.pack(P.ACK_FIXED, seq, mac))
        return struct.unpack_from(P.ACK_REPLY, p, 0)[0]

    # -- record stream ---------------------------------------------------------------------------

    def records(self, from_seq: int, on_batch: Callable[[list[bytes], list[tuple[int, int]]], None]) -> int:
        """Stream every record the device holds from `from_seq`. `on_batch(records, absent)` gets
        each frame's records in order, and the runs (first, last) of seqs the device skipped (it
        never held them): runs, because a skip may be as wide as the seq space.
        Returns the seq after the last one streamed.

        Frame size adapts to the line: two damaged frames in a row halve it (a short frame gets
        through noise a long one cannot), a run of clean ones doubles it again."""
        ses = self._ses()
        next_rec = max(1, from_seq)
        restarts = 0  # restarts in a row without a record gained
        forged = 0  # frames in a row whose session MAC failed
        progress_at = time.monotonic()  # when the last record arrived
        while True:
            gid = self._next_id()
            get = struct.pack(P.GET_FIXED, next_rec, self.window, self.frame_size)
            self.send(P.GET_RECORDS, gid, 0, get)
            if self.frame_size < P.MAX_PAYLOAD:
                # on a noisy line a lost GET costs an idle timeout; the device ignores the copy
                self.send(P.GET_RECORDS, gid, 0, get)
            expect = 0
            bad_run = 0
            good_run = 0
            quiet_since = asked = time.monotonic()
            stale = 0
            while True:
                bad_before = self.stats.frames_bad
                f = self.poll(0.05)
                if self.stats.frames_bad > bad_before:
                    bad_run += self.stats.frames_bad - bad_before
                    good_run = 0
                    shrink = bad_run >= 2 and self.frame_size > MIN_FRAME
                    if shrink:
                        self.frame_size = max(MIN_FRAME, self.frame_size // 2)  # from the next GET
                        bad_run = 0
                    if expect > 0 or shrink:
                        # this stream is flowing, so the damaged frame was most likely ours:
                        # ask again now rather than wait for a gap or a timeout
                        self.stats.naks += 1
                        restarts += 1
                        if restarts > 20 * (self.retries + 1):
                            raise DockTimeout(f"record stream cannot get past seq {next_rec}")
                        break
                if f is None:
                    now = time.monotonic()
                    if now - progress_at > self.give_up:
                        raise DockTimeout(f"record stream stalled at seq {next_rec}")
                    if now - max(self.last_rx, asked) > IDLE_S or now - quiet_since > self.rto * 1.5:
                        # the line fell silent (our GET was lost, or the device is gone), or
                        # it carries nothing of ours: ask again from the last record we hold
                        self.stats.retransmits += 1
                        break
                    continue
                if f.ack != gid:
                    stale += 1
                    if stale > 2 * self.window:  # more than the old stream had in flight:
                        self.stats.retransmits += 1  # the device never saw our request
                        restarts += 1
                        break
                    continue
                if _refuses(f, P.GET_RECORDS):
                    raise _refusal(P.GET_RECORDS, f.payload)
                if f.type != P.RECORDS:
                    continue
                if f.seq != expect:
                    # A frame went missing. Restart the stream from the first record we lack
                    # under a new request id: every frame of the old stream still on the line is
                    # then recognisably stale, and a loss after the restart is seen at once.
                    self.stats.naks += 1
                    restarts += 1
                    if restarts > 20 * (self.retries + 1):
                        raise DockTimeout(f"record stream cannot get past seq {next_rec}")
                    break
                body = f.payload[: -P.TAG]
                if len(f.payload) < 1 + P.TAG or not sign.equal(
                        ses.mac(P.REC_TAG, bytes((gid, f.seq)), body)[: P.TAG], f.payload[-P.TAG:]):
                    # Good CRC, bad MAC: altered on the line, or a stale frame of another session
                    # that happens to share id and number. Never taken; a run of them is an attack.
                    self.stats.frames_forged += 1
                    forged += 1
                    if forged >= 3:
                        raise DockAuthError(f"record frames fail authentication (seq {next_rec})")
                    restarts += 1
                    break
                forged = 0
                recs, last = _split(body)
                absent: list[tuple[int, int]] = []
                fresh: list[bytes] = []
                for r in recs:
                    s = record.seq_of(r)
                    if s < next_rec:
                        continue  # cannot happen in order; never count a record twice
                    if s > next_rec:
                        absent.append((next_rec, s - 1))
                    fresh.append(r)
                    next_rec = s + 1
                expect = (expect + 1) & 0xFF
                quiet_since = progress_at = time.monotonic()
                restarts = 0
                bad_run = 0
                good_run += 1
                if good_run >= 16 and self.frame_size < P.MAX_PAYLOAD:
                    self.frame_size = min(P.MAX_PAYLOAD, self.frame_size * 2)
                    good_run = 0
                self._progress(gid, expect, next_rec, 0)
                on_batch(fresh, absent)
                if last:
                    return next_rec

    def _progress(self, gid: int, expect: int, next_rec: int, flags: int) -> None:
        self.send(P.PROGRESS, gid, 0, struct.pack(P.PROGRESS_FIXED, expect, next_rec, flags, self.frame_size))

    # -- route push ------------------------------------------------------------------------------

    def put_route(self, data: bytes, sha: bytes, progress: Callable[[int, int], None] | None = None) -> str:
        """Send a route package; the device resumes an earlier partial copy of the same one,
        verifies it and makes it active. Returns the route id; RouteRefused if it failed a check."""
        size = len(data)
        for _restart in range(self.retries + 1):
            p = self.request(P.PUT_BEGIN, struct.pack(P.PUT_BEGIN_FIXED, size, sha))
            base = struct.unpack_from(P.PUT_REPLY, p, 0)[0]
            try:
                self._put_window(data, base, progress)
            except _Restart:
                continue
            p = self.request(P.PUT_END, b"", timeout=max(self.rto, 5.0))
            return P.get_str(p, 0)[0]
        raise DockTimeout("route push kept losing its transfer")

    def _put_window(self, data: bytes, base: int, progress: Callable[[int, int], None] | None) -> None:
        """Chunks in a window of `self.window`; the chunk size adapts to noise like the stream's."""
        size = len(data)
        nxt = base
        live: set[int] = set()  # ids sent since the last go-back: only their replies may rewind us
        quiet_since = sent_at = progress_at = time.monotonic()
        misses = 0  # go-backs since the last progress
        good = 0
        while base < size:
            while nxt < size and nxt - base < self.window * self.chunk:
                chunk = data[nxt: nxt + self.chunk]
                rid = self._next_id()
                live.add(rid)
                self.send(P.PUT_DATA, rid, 0, struct.pack(P.PUT_DATA_FIXED, nxt) + chunk)
                nxt += len(chunk)
                sent_at = time.monotonic()
            f = self.poll(0.05)
            if f is None:
                now = time.monotonic()
                if now - progress_at > self.give_up:
                    raise DockTimeout(f"route push stalled at {base} of {size} bytes")
                if now - quiet_since > self.rto or now - max(self.last_rx, sent_at) > IDLE_S:
                    self.stats.retransmits += 1
                    nxt = base
                    live.clear()
                    misses += 1
                    quiet_since = now
                    misses = self._shrink_chunk(misses)
                continue
            if _refuses(f, P.PUT_DATA) and f.ack in live:
                raise _Restart()  # the device lost the transfer (rebooted): begin again, resuming
            if f.type != P.PUT_DATA | P.REPLY:
                continue
            have, late = struct.unpack_from(P.PUT_REPLY, f.payload, 0)
            if have > base:
                base = have
                quiet_since = progress_at = time.monotonic()
                misses = 0
                good += 1
                if good >= 16 and self.chunk < P.MAX_DATA:
                    self.chunk = min(P.MAX_DATA, self.chunk * 2)
                    good = 0
                if progress:
                    progress(base, size)
            if late and f.ack in live and have < nxt:
                nxt = base  # a chunk went missing: go back to the first one the device lacks
                live.clear()
                misses = self._shrink_chunk(misses + 1)
                good = 0
                self.stats.naks += 1

    def _shrink_chunk(self, misses: int) -> int:
        if misses >= 2 and self.chunk > MIN_FRAME:
            self.chunk = max(MIN_FRAME, self.chunk // 2)  # short chunks get through noise
            return 0
        return misses


class _Restart(Exception):
    pass


def _split(payload: bytes) -> tuple[list[bytes], bool]:
    if not payload:
        raise DockProtocolError("empty RECORDS frame")
    out = []
    off = 1
    while off < len(payload):
        n = payload[off]
        if off + 1 + n > len(payload) or n < record.HEAD_LEN:
            raise DockProtocolError("RECORDS frame with a truncated record")
        out.append(payload[off + 1: off + 1 + n])
        off += 1 + n
    return out, bool(payload[0] & P.F_LAST)


def _refuses(f: Frame, ftype: int) -> bool:
    """An ERROR for a request of this type. A stale ERROR (an earlier session's frame answered
    after a reboot) may carry the same 8-bit id, but not for the same kind of request."""
    return f.type == P.ERROR and len(f.payload) > 1 and f.payload[1] == ftype


def _refusal(ftype: int, payload: bytes) -> DeviceRefused:
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
