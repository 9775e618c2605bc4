"""Dock framing: COBS agrees with the `cobs` package, CRC32 catches damage, decoding never raises
and allocates nothing on the VM."""

from __future__ import annotations

import binascii
import struct

from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import dock_wire as P


def frame(ftype: int, seq: int, ack: int, payload: bytes) -> bytes:
    enc = P.Encoder()
    enc.payload[: len(payload)] = payload
    return bytes(enc.frame(ftype, seq, ack, len(payload)))


def decode_all(wire: bytes) -> list[tuple[int, int, int, bytes]]:
    dec = P.Decoder()
    out = []
    pos = 0
    while pos < len(wire):
        pos = dec.feed(wire, pos, len(wire))
        if dec.ready:
            out.append((dec.type, dec.seq, dec.ack, bytes(dec.buf[P.HEAD: P.HEAD + dec.plen])))
    return out


@given(st.binary(max_size=P.MAX_PAYLOAD), st.integers(0, 255), st.integers(0, 255))
@settings(max_examples=300)
def test_wire_format_is_cobs_of_header_payload_crc(payload: bytes, seq: int, ack: int) -> None:
    raw = bytes((P.RECORDS, seq, ack)) + payload
    raw += struct.pack("<I", binascii.crc32(raw))
    wire = frame(P.RECORDS, seq, ack, payload)
    assert wire == cobs.encode(raw) + b"\0"
    assert len(wire) <= P.MAX_WIRE
    assert decode_all(wire) == [(P.RECORDS, seq, ack, payload)]


def test_zero_runs_and_254_byte_blocks_round_trip() -> None:
    for payload in (b"", b"\0", b"\0" * 1000, b"\1" * 254, b"\1" * 253 + b"\0", bytes(range(256)) * 3):
        assert decode_all(frame(P.HELLO, 1, 2, payload[: P.MAX_PAYLOAD])) == [
            (P.HELLO, 1, 2, payload[: P.MAX_PAYLOAD])]


def test_the_longest_frame_without_zeros_is_stuffed_in_place_without_overrunning_its_input() -> None:
    # the frame is stuffed inside the wire buffer, 4 bytes after its start: a frame with no zero
    # byte gains the most code bytes (one per 254), and a second frame reuses the same buffer
    enc = P.Encoder()
    for payload in (bytes(range(1, 256)) * 3 + b"\xff" * 235, b"\x5a" * P.MAX_PAYLOAD, b"ok"):
        raw = bytes((P.PUT_DATA, 9, 8)) + payload
        raw += struct.pack("<I", binascii.crc32(raw))
        enc.payload[: len(payload)] = payload
        assert bytes(enc.frame(P.PUT_DATA, 9, 8, len(payload))) == cobs.encode(raw) + b"\0"


def test_every_single_bit_flip_is_rejected() -> None:
    wire = frame(P.ACK, 7, 0, b"acknowledge me" * 3)
    for i in range(len(wire) - 1):
        for bit in range(8):
            bad = bytearray(wire)
            bad[i] ^= 1 << bit
            # a flip that makes a zero splits the frame: neither half may pass either
            assert decode_all(bytes(bad)) == [], (i, bit)


def test_decoder_resynchronises_after_garbage_and_truncation() -> None:
    good = frame(P.STATUS, 3, 0, b"ok")
    wire = b"\x13\x37garbage" + b"\0" + good[:5] + b"\0" + good + good
    dec = P.Decoder()
    frames = []
    pos = 0
    while pos < len(wire):
        pos = dec.feed(wire, pos, len(wire))
        if dec.ready:
            frames.append(bytes(dec.buf[P.HEAD: P.HEAD + dec.plen]))
    assert frames == [b"ok", b"ok"]
    assert dec.bad == 2


def test_oversized_frame_is_dropped_and_the_next_one_decodes() -> None:
    wire = b"\x01" * 5000 + b"\0" + frame(P.HELLO, 1, 0, b"x")
    assert decode_all(wire) == [(P.HELLO, 1, 0, b"x")]


def test_frames_split_across_reads() -> None:
    wire = frame(P.RECORDS, 1, 9, bytes(range(200))) + frame(P.RECORDS, 2, 9, b"\0\0")
    dec = P.Decoder()
    got = []
    for i in range(len(wire)):  # one byte per read, as a slow UART delivers them
        pos = 0
        while pos < 1:
            pos = dec.feed(wire[i: i + 1], pos, 1)
            if dec.ready:
                got.append(dec.seq)
    assert got == [1, 2]


@given(st.binary(max_size=3000))
@settings(max_examples=500)
def test_decode_never_raises_on_noise(noise: bytes) -> None:
    for f in decode_all(noise):
        assert 0 <= len(f[3]) <= P.MAX_PAYLOAD


def test_ack_message_binds_device_and_seq_and_the_session_key_binds_both_nonces() -> None:
    from firmware import sign

    m = P.ack_message("DEV1", 300)
    assert m == b"DOCKACK2\x04DEV1" + struct.pack("<I", 300)
    assert m != P.ack_message("DEV1", 301) != P.ack_message("DEV2", 300)
    s = sign.Signer(b"k" * 32)
    a, b = b"a" * P.NONCE, b"b" * P.NONCE
    assert len({P.session_key(s, a, b), P.session_key(s, b, a), P.session_key(s, a, a),
                P.session_key(sign.Signer(b"j" * 32), a, b)}) == 4


def test_vm_round_trip_and_decode_allocates_nothing(mpy) -> None:
    wire = frame(P.PUT_DATA, 4, 0, bytes(range(256)) * 3)
    out = mpy(f"""
        import micropython
        from firmware import dock_wire as P
        wire = {wire!r}
        dec = P.Decoder()
        def decode(w, n):
            micropython.heap_lock()
            try:
                pos = 0
                while pos < n:
                    pos = dec.feed(w, pos, n)
                ok = dec.ready
            finally:
                micropython.heap_unlock()
            return ok
        print(decode(wire, len(wire)), dec.type, dec.seq, dec.plen)
        bad = bytearray(wire)
        bad[100] ^= 4
        print(decode(bad, len(bad)), dec.bad)
        enc = P.Encoder()
        enc.payload[:3] = b"abc"
        print(bytes(enc.frame(P.HELLO, 1, 2, 3)) == {frame(P.HELLO, 1, 2, b"abc")!r})
    """)
    assert out.split() == ["True", str(P.PUT_DATA), "4", "768", "False", "1", "True"]


class _Journal:
    """The journal API the dock uses, in memory."""

    def __init__(self, n: int):
        from firmware import record

        self.recs = {s: record.Record(seq=s, device_id="DEV1", item_id="I%d" % s).encode()
                     for s in range(1, n + 1)}
        self.watermark = 0
        self.next_seq = n + 1
        self.last_seq = n
        self.acked: list[int] = []
        self.frame = bytearray(record.MAX_LEN + 6)  # journal.FRAME_MAX: the buffer readers share

    def pending(self) -> int:
        return len([s for s in self.recs if s > self.watermark])

    def acknowledge(self, seq: int) -> None:
        self.acked.append(seq)
        self.watermark = max(self.watermark, min(seq, self.next_seq - 1))

    def records(self, from_seq: int, buf: bytearray):
        for s in sorted(self.recs):
            if s >= from_seq:
                yield s, memoryview(self.recs[s])

    def space(self) -> str:
        return "ok"


class _Stream:
    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, b) -> int:
        self.out += bytes(b)
        return len(b)


def frames_of(s: _Stream) -> list[tuple[int, int, int, bytes]]:
    out = decode_all(bytes(s.out))
    s.out.clear()
    return out


def open_session(d, s: _Stream, key: bytes, device_id: str = "DEV1"):
    """HELLO and AUTH against an in-process Dock, as the host does; the session's Signer."""
    from firmware import sign

    host_nonce = bytes(range(P.NONCE))
    d._handle(P.HELLO, 1, memoryview(host_nonce))
    (_, _, _, hello), = frames_of(s)
    dnonce = struct.unpack_from(P.HELLO_FIXED, hello, 0)[-1]
    signer = sign.Signer(key)
    assert signer.verify(hello[-32:], P.HELLO_TAG, host_nonce, hello[:-32])
    d._handle(P.AUTH, 2, memoryview(signer.mac(P.auth_message(host_nonce, dnonce, device_id))))
    assert frames_of(s) == [(P.AUTH | P.REPLY, 0, 2, b"")]
    return sign.Signer(P.session_key(signer, host_nonce, dnonce))


_TYPES = st.sampled_from([P.HELLO, P.AUTH, P.SET_KEY, P.SET_CLOCK, P.PUT_BEGIN, P.PUT_DATA, P.PUT_END,
                          P.GET_RECORDS, P.PROGRESS, P.ACK, P.STATUS, 0x00, 0x55, 0xFF])


@given(st.lists(st.tuples(_TYPES, st.integers(0, 255), st.binary(max_size=80)), max_size=30))
@settings(max_examples=300, deadline=None)
def test_random_requests_never_kill_the_dock_nor_acknowledge(tmp_path_factory, frames) -> None:
    from firmware import dock_session

    route_dir = tmp_path_factory.mktemp("route")
    j = _Journal(20)
    d = dock_session.Session(_Stream(), j, "DEV1", b"\x07" * 32, route_dir=str(route_dir),
                             set_time=lambda t: None)
    for t, seq, payload in frames:
        d._handle(t, seq, memoryview(payload))  # must not raise
        if d._it is not None:
            d._send_records()
    assert j.acked == [] and j.watermark == 0  # nothing without the key
    assert not (route_dir / "active.pkg").exists()


def test_dock_answers_a_repeated_ack_from_its_cache(tmp_path) -> None:
    from firmware import dock_session

    key = b"\x07" * 32
    j = _Journal(20)
    s = _Stream()
    d = dock_session.Session(s, j, "DEV1", key, route_dir=str(tmp_path), set_time=lambda t: None)
    ses = open_session(d, s, key)
    ack = struct.pack(P.ACK_FIXED, 12, ses.mac(P.ack_message("DEV1", 12)))
    d._handle(P.ACK, 9, memoryview(ack))
    first = bytes(s.out)
    d._handle(P.ACK, 9, memoryview(ack))  # the host lost our answer and sends it again
    assert bytes(s.out) == first * 2
    assert decode_all(first) == [(P.ACK | P.REPLY, 0, 9, struct.pack("<I", 12))]
    assert j.acked == [12]


def test_every_request_but_hello_and_auth_is_refused_until_the_host_proves_the_key(tmp_path) -> None:
    """Issue 13.1: a dock that proved nothing got PUT_BEGIN (size 0xFFFFFFFF), PUT_DATA,
    GET_RECORDS and SET_CLOCK obeyed. Each is now an ERROR E_AUTH, and nothing happens."""
    from firmware import dock_session

    key = b"\x07" * 32
    j = _Journal(20)
    s = _Stream()
    clock: list[int] = []
    d = dock_session.Session(s, j, "DEV1", key, route_dir=str(tmp_path), set_time=clock.append)
    host_nonce = b"n" * P.NONCE
    requests = [(P.SET_CLOCK, struct.pack("<I", 1)),
                (P.PUT_BEGIN, struct.pack(P.PUT_BEGIN_FIXED, 0xFFFFFFFF, bytes(32))),
                (P.PUT_DATA, struct.pack(P.PUT_DATA_FIXED, 0) + b"x" * 50), (P.PUT_END, b""),
                (P.GET_RECORDS, struct.pack(P.GET_FIXED, 1, 8, 1000)), (P.STATUS, b""),
                (P.ACK, struct.pack(P.ACK_FIXED, 20, bytes(32))),
                (P.SET_KEY, struct.pack(P.SET_KEY_FIXED, bytes(32), bytes(32)))]
    for phase in ("before HELLO", "after HELLO", "after a wrong AUTH"):
        if phase == "after HELLO":
            d._handle(P.HELLO, 1, memoryview(host_nonce))
            assert frames_of(s)[0][0] == P.HELLO | P.REPLY
        if phase == "after a wrong AUTH":
            d._handle(P.AUTH, 2, memoryview(bytes(32)))
            refusal = bytes((P.E_AUTH, P.AUTH, 18)) + b"host proof refused"
            assert frames_of(s) == [(P.ERROR, 0, 2, refusal)]
        for i, (t, pl) in enumerate(requests):
            d._handle(t, 10 + i, memoryview(pl))
            refusal = bytes((P.E_AUTH, t, 18)) + b"authenticate first"
            assert frames_of(s) == [(P.ERROR, 0, 10 + i, refusal)]
    assert (clock, j.acked, d._it, d.inbox, sorted(p.name for p in tmp_path.iterdir())) == (
        [], [], None, None, [])


def test_an_ack_recorded_in_one_session_is_refused_in_the_next(tmp_path) -> None:
    """Issue 13.1: a genuine ACK replayed into another session moved the watermark."""
    from firmware import dock_session

    key = b"\x07" * 32
    j = _Journal(50)
    s = _Stream()
    d = dock_session.Session(s, j, "DEV1", key, route_dir=str(tmp_path), set_time=lambda t: None)
    first = open_session(d, s, key)
    recorded = struct.pack(P.ACK_FIXED, 50, first.mac(P.ack_message("DEV1", 50)))
    second = open_session(d, s, key)  # the next session: same host nonce even, fresh device nonce
    assert second.mac(b"x") != first.mac(b"x")
    d._handle(P.ACK, 30, memoryview(recorded))
    refusal = bytes((P.E_ACK_REFUSED, P.ACK, 26)) + b"ack refused: bad signature"
    assert frames_of(s) == [(P.ERROR, 0, 30, refusal)]
    assert j.acked == []
    d._handle(P.ACK, 31, memoryview(struct.pack(P.ACK_FIXED, 60, second.mac(P.ack_message("DEV1", 60)))))
    assert frames_of(s)[0][3] == bytes((P.E_ACK_REFUSED, P.ACK, 34)) + b"ack refused: seq 60 beyond last 50"
    d._handle(P.ACK, 32, memoryview(struct.pack(P.ACK_FIXED, 50, second.mac(P.ack_message("DEV1", 50)))))
    assert frames_of(s) == [(P.ACK | P.REPLY, 0, 32, struct.pack("<I", 50))]
    assert j.acked == [50]


def test_a_rotated_key_reaches_the_one_signer_the_dock_shares_with_the_uploader(tmp_path) -> None:
    # The app builds one Signer for both (RAM: one padded key, not two); a SET_KEY rekeys it, so the
    # uploader signs its next batch, and checks the server's acknowledgement, under the new key.
    from firmware import dock_session, sign, uploader

    key, new = b"\x07" * 32, b"\x09" * 32
    shared = sign.Signer(key)
    j = _Journal(3)
    s = _Stream()
    up = uploader.Uploader(j, None, "DEV1", key, "http://h", state_dir=str(tmp_path / "up"), signer=shared)
    d = dock_session.Session(s, j, "DEV1", key, route_dir=str(tmp_path), set_time=lambda t: None,
                             save_key=up.set_key, signer=shared)
    ses = open_session(d, s, key)
    pad = ses.mac(P.KEY_TAG)
    sealed = bytes(new[i] ^ pad[i] for i in range(32))
    d._handle(P.SET_KEY, 3, memoryview(struct.pack(P.SET_KEY_FIXED, sealed, ses.mac(P.KEY_TAG, sealed))))
    assert frames_of(s) == [(P.SET_KEY | P.REPLY, 0, 3, b"")]
    assert d._signer is shared and up.signer is shared and up.writer.signer is shared
    assert shared.mac(b"batch") == sign.Signer(new).mac(b"batch") != sign.Signer(key).mac(b"batch")
