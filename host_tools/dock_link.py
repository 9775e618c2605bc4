"""Host side of the dock link (spec: docs/dock-protocol.md): the session.

`DockLink` is a DockTransport (host_tools/dock_link_transport.py: frames, requests, typed
failures) that speaks the session's commands. Each session begins with mutual proof of the device
key (`hello` then `authenticate`); after it, record frames are checked and the ACK made under a
key bound to both sides' fresh nonces. The record stream and the route push are windowed
transfers (host_tools/dock_link_windows.py).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass
from typing import Any

from firmware import dock_wire as P
from firmware import sign
from host_tools.dock_link_transport import (
    RTO_S,
    AckRefused,
    AuthRefused,
    DeviceRefused,
    DockAuthError,
    DockError,
    DockProtocolError,
    DockTimeout,
    DockTransport,
    RouteRefused,
)
from host_tools.dock_link_windows import OnBatch, OnProgress, push_route, stream_records

__all__ = ["AckRefused", "AuthRefused", "DeviceRefused", "DockAuthError", "DockError", "DockLink",
           "DockProtocolError", "DockTimeout", "Hello", "RouteRefused", "Status"]


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


def _battery(b: int) -> int | None:
    return None if b == 255 else b


class DockLink(DockTransport):
    def __init__(self, port: str | Any, *, window: int = 8, retries: int = 10, rto: float = RTO_S):
        super().__init__(port, window=window, retries=retries, rto=rto)
        self.device_id = ""
        self._session: sign.Signer | None = None  # under the session key, once both proved the key

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

    def records(self, from_seq: int, on_batch: OnBatch) -> int:
        """Stream every record the device holds from `from_seq` (dock_link_windows.stream_records)."""
        return stream_records(self, self._ses(), from_seq, on_batch)

    def put_route(self, data: bytes, sha: bytes, progress: OnProgress | None = None) -> str:
        """Send a route package (dock_link_windows.push_route); returns the route id."""
        return push_route(self, data, sha, progress)
