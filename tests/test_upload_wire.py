"""Upload batch and acknowledgement format (firmware/upload_wire.py), on the real MicroPython VM and on
CPython, each decoding what the other encoded; MACs checked against CPython's own hmac."""

from __future__ import annotations

import hashlib
import hmac
import struct

from firmware import record, upload_wire
from firmware.sign import Signer
from host_tools.upload_server_wire import Batch, encode_ack, encode_batch

KEY = bytes(range(32))
DEV = "DEV-0001"


def make_records(first: int, n: int) -> list[bytes]:
    return [
        record.Record(seq=s, device_id=DEV, route_id="R-17", stop_id="S%03d" % (s % 200),
                      item_id="RR%08d9GB" % s, verdict=record.V_INSIDE, lat_e6=52_370_000 + s,
                      lon_e6=4_890_000 - s, accuracy_dm=40, fix_age_s=1, device_time=1_700_000_000 + s,
                      gnss_time=1_700_000_000 + s).encode()
        for s in range(first, first + n)
    ]


MPY_ENCODE = """
import sys, binascii
from firmware import record, upload_wire
from firmware.sign import Signer
w = upload_wire.BatchWriter("DEV-0001", Signer(bytes(range(32))))
for s in range(%d, %d):
    r = record.Record(seq=s, device_id="DEV-0001", route_id="R-17", stop_id="S%%03d" %% (s %% 200),
                      item_id="RR%%08d9GB" %% s, verdict=record.V_INSIDE, lat_e6=52370000 + s,
                      lon_e6=4890000 - s, accuracy_dm=40, fix_age_s=1, device_time=1700000000 + s,
                      gnss_time=1700000000 + s).encode()
    assert w.add(s, r)
print(binascii.hexlify(w.finish(%d, 1700000123)).decode())
"""


def test_batch_encoded_on_micropython_decodes_on_cpython(mpy):
    out = mpy(MPY_ENCODE % (10, 42, 77)).strip()
    data = bytes.fromhex(out)
    b = Batch(data)
    signer = Signer(KEY)
    assert b.authentic(signer) and b.intact()
    assert (b.device_id, b.counter, b.clock, b.first, b.last, b.count) == (DEV, 77, 1700000123, 10, 41, 32)
    assert b.records() == make_records(10, 32)
    # byte-identical to the CPython convenience encoder
    assert data == encode_batch(DEV, signer, 77, 1700000123, make_records(10, 32))


def test_batch_encoded_on_cpython_decodes_on_micropython(mpy):
    recs = make_records(100, 32)
    plain = encode_batch(DEV, Signer(KEY), 5, 1, recs)
    packed = encode_batch(DEV, Signer(KEY), 6, 1, recs, compress=True)
    assert Batch(packed).flags == upload_wire.F_DEFLATE and len(packed) < len(plain)
    digest = hashlib.sha256(b"".join(recs)).hexdigest()
    out = mpy(f"""
        import binascii, hashlib
        from firmware.sign import Signer
        from host_tools.upload_server_wire import Batch
        s = Signer(bytes(range(32)))
        for hx in ({plain.hex()!r}, {packed.hex()!r}):
            b = Batch(binascii.unhexlify(hx))
            recs = b.records()
            h = hashlib.sha256()
            for r in recs:
                h.update(r)
            print(b.authentic(s), b.intact(), b.counter, b.first, b.last, len(recs),
                  binascii.hexlify(h.digest()).decode())
    """)
    assert out.split("\n")[:2] == [f"True True 5 100 131 32 {digest}", f"True True 6 100 131 32 {digest}"]


def test_mac_matches_cpython_hmac_and_covers_every_header_field():
    recs = make_records(1, 3)
    data = encode_batch(DEV, Signer(KEY), 9, 1234, recs)
    hlen = upload_wire.header_len(DEV.encode())
    head, mac = data[: hlen - 32], data[hlen - 32: hlen]
    assert mac == hmac.new(KEY, b"upload-batch/1" + head, hashlib.sha256).digest()
    assert head[-32:] == hashlib.sha256(data[hlen:]).digest()
    assert struct.unpack_from("<4sBBBBIIIIHI", data) == (b"PSUB", 1, 0, len(DEV), 0, 9, 1234, 1, 3, 3,
                                                         len(data) - hlen)
    # flipping any header byte breaks the MAC; flipping a body byte keeps the MAC, breaks the hash
    for i in range(hlen - 32):
        bad = bytearray(data)
        bad[i] ^= 1
        try:
            b = Batch(bytes(bad))
        except upload_wire.FormatError:
            continue
        assert not b.authentic(Signer(KEY)), i
    bad = bytearray(data)
    bad[-1] ^= 1
    b = Batch(bytes(bad))
    assert b.authentic(Signer(KEY)) and not b.intact()
    assert not Batch(data).authentic(Signer(bytes(32)))


def test_ack_vectors_and_device_side_verification(mpy):
    ack = encode_ack(Signer(KEY), DEV, 77, 41, stored=32, duplicates=0, conflicts=0)
    assert ack[:22] == struct.pack("<4sBBBBIIHHH", b"PSAK", 1, 0, len(DEV), 0, 77, 41, 32, 0, 0)
    assert ack[-32:] == hmac.new(KEY, b"upload-ack/1" + ack[:-32], hashlib.sha256).digest()
    forged = encode_ack(Signer(bytes(32)), DEV, 77, 41)
    other = encode_ack(Signer(KEY), "DEV-0002", 77, 41)
    out = mpy(f"""
        import binascii
        from firmware import upload_wire
        from firmware.sign import Signer
        s = Signer(bytes(range(32)))
        ack = binascii.unhexlify({ack.hex()!r})
        a = upload_wire.parse_ack(ack, s, "DEV-0001", 77)
        print(a.ack_seq, a.stored, a.status)
        print(upload_wire.parse_ack(ack, s, "DEV-0001", 78))          # answer to another request
        print(upload_wire.parse_ack(ack[:-1], s, "DEV-0001", 77))      # truncated
        print(upload_wire.parse_ack(binascii.unhexlify({forged.hex()!r}), s, "DEV-0001", 77))
        print(upload_wire.parse_ack(binascii.unhexlify({other.hex()!r}), s, "DEV-0001", 77))
        print(upload_wire.parse_ack(b"OK", s, "DEV-0001", 77))         # a bare 200 body
    """)
    assert out.split() == ["41", "32", "0", "None", "None", "None", "None", "None"]


def test_batch_writer_refuses_a_record_that_does_not_fit():
    w = upload_wire.BatchWriter(DEV, Signer(KEY), size=upload_wire.header_len(DEV.encode()) + 150)
    r1, r2 = make_records(1, 2)
    assert w.add(1, r1) and not w.add(2, r2)
    assert Batch(bytes(w.finish(1, 0))).records() == [r1]


def test_counter_lease_skips_but_never_reuses_across_power_cuts(mpy, tmp_path):
    out = mpy(f"""
        from firmware import upload_wire
        p = {str(tmp_path / "ctr")!r}
        seen = []
        for boot in range(4):            # each boot takes a few counters, then power is cut
            c = upload_wire.CounterLease(p, lease=16)
            for _ in range(boot * 7 + 3):
                seen.append(c.take())
        print(len(seen), len(set(seen)), seen == sorted(seen), seen[0], seen[3], seen[13])
    """)
    # boots take 3, 10, 17, 24 counters: 1-3, then 17-26, then 33-49 (a new lease mid-way), ...
    assert out.split() == ["54", "54", "True", "1", "17", "33"]


def test_range_declares_the_seqs_the_journal_never_held(mpy):
    out = mpy("""
        import binascii
        from firmware import record, upload_wire
        from firmware.sign import Signer
        w = upload_wire.BatchWriter("DEV-0001", Signer(bytes(range(32))))
        w.begin(11)                       # watermark 10; the journal holds 13, 14 and 20
        for s in (13, 14, 20):
            w.add(s, record.Record(seq=s, device_id="DEV-0001").encode())
        print(binascii.hexlify(w.finish(3, 0)).decode())
    """)
    b = Batch(bytes.fromhex(out.strip()))
    recs = b.records()
    assert (b.first, b.last, b.count) == (11, 20, 3)
    assert b.absent(recs) == [11, 12, 15, 16, 17, 18, 19]
    out_of_order = encode_batch(DEV, Signer(KEY), 1, 0, [recs[1], recs[0]])
    try:
        Batch(out_of_order).records()
        raise AssertionError("accepted records out of order")
    except upload_wire.FormatError:
        pass
