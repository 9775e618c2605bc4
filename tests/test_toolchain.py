"""The proof runs on the real MicroPython VM: the fixture must run code there and catch failures."""

import pytest

from firmware import record, sign
from host_tools.record_dict import as_dict


def test_fixture_runs_the_micropython_unix_port(mpy):
    out = mpy("import sys; print(sys.implementation.name)")
    assert out.strip() == "micropython"


def test_fixture_fails_the_test_on_a_traceback(mpy):
    with pytest.raises(pytest.fail.Exception, match="ZeroDivisionError"):
        mpy("1/0")


def test_hmac_matches_cpython_hmac_on_the_vm(mpy):
    import hashlib
    import hmac

    key = bytes(range(40))
    expected = hmac.new(key, b"device|17|payload", hashlib.sha256).hexdigest()
    out = mpy(
        f"""
        import binascii
        from firmware import sign
        print(binascii.hexlify(sign.hmac_sha256({key!r}, b"device|", b"17|payload")).decode())
        """
    )
    assert out.strip() == expected
    assert sign.hmac_sha256(key, b"device|17|payload").hex() == expected


def test_record_round_trips_identically_on_both_vms(mpy):
    rec = record.Record(seq=41, device_id="HH-0001", route_id="R-0042", stop_id="S017",
                        item_id="RR473124829GB", verdict=record.V_INSIDE, match=record.M_ITEM,
                        lat_e6=51_501_234, lon_e6=-141_234, accuracy_dm=48, fix_age_s=2, distance_dm=0)
    host_bytes = rec.encode()
    out = mpy(
        """
        import binascii
        from firmware import record
        r = record.Record(seq=41, device_id="HH-0001", route_id="R-0042", stop_id="S017",
                          item_id="RR473124829GB", verdict=record.V_INSIDE, match=record.M_ITEM,
                          lat_e6=51501234, lon_e6=-141234, accuracy_dm=48, fix_age_s=2, distance_dm=0)
        print(binascii.hexlify(r.encode()).decode())
        """
    )
    assert bytes.fromhex(out.strip()) == host_bytes
    assert as_dict(record.decode(host_bytes)) == as_dict(rec)


def test_board_definitions_name_every_peripheral():
    from host_tools import boards

    for name in boards.names():
        b = boards.load(name)
        assert set(b["uart"]) == {"gnss", "scanner", "modem", "dock"}, name
        assert b["flash"]["block_size"] * b["flash"]["block_count"] >= 2 * 1024 * 1024
        assert b["heap"] <= 262144
