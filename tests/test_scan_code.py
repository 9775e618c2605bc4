"""Scanned codes (firmware/scan_code.py): S10 and GS1 read right, python-stdnum as the GS1 oracle, every
refusal with its own code, message and buzzer pattern, and the same answers on the MicroPython VM."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import ean, gs1_128  # pyright: ignore[reportMissingImports]

from firmware import scan_code, scan_code_format

GS = "\x1d"


def s10(serial: str, prefix="RR", country="GB") -> str:
    total = sum(int(d) * w for d, w in zip(serial, (8, 6, 4, 2, 3, 5, 9, 7), strict=True))
    c = 11 - total % 11
    return f"{prefix}{serial}{ {10: 0, 11: 5}.get(c, c)}{country}"


def sscc(body17: str) -> str:
    return body17 + ean.calc_check_digit(body17)


def test_s10_published_example_and_a_wrong_check_digit():
    r = scan_code.parse(b"RR473124829GB\r\n")
    assert (r.ok, r.kind, r.item_id, r.country, r.pattern) == (True, "s10", "RR473124829GB", "GB", "ok")
    bad = scan_code.parse(b"RR473124828GB")
    assert (bad.ok, bad.error, bad.message, bad.pattern) == (False, scan_code.E_CHECK, "Bad check digit",
                                                             scan_code.PATTERN_INVALID)


@pytest.mark.parametrize("serial", ["00000000", "47312482", "12345678", "99999999", "10000003", "00000017"])
def test_s10_check_digit_including_the_10_and_11_cases(serial):
    code = s10(serial)
    assert scan_code.parse(code.encode()).item_id == code
    wrong = code[:10] + str((int(code[10]) + 1) % 10) + code[11:]
    assert scan_code.parse(wrong.encode()).error == scan_code.E_CHECK


def test_check_digit_rules_hit_every_remainder():
    seen = {scan_code.s10_check(f"{n:08d}") for n in range(0, 3000, 7)}
    assert seen == set(range(10))
    assert scan_code.s10_check("47312482") == 9


def test_sscc_with_ship_to_postal_codes_under_each_symbology():
    code = sscc("03761234500000001")
    for prefix in ("]C1", "]d2", "]Q3"):
        r = scan_code.parse(f"{prefix}{GS}00{code}420{'75008'}{GS}10LOT7\r".encode())
        got = (r.kind, r.item_id, r.postal, r.country, r.symbology)
        assert got == ("sscc", code, "75008", "", prefix[1:])
        assert r.ais == {"00": code, "420": "75008", "10": "LOT7"}
    r = scan_code.parse(f"]d2{GS}00{code}421276{'10115'}".encode())
    assert (r.postal, r.country) == ("10115", "276")
    bad = code[:-1] + str((int(code[-1]) + 3) % 10)
    assert scan_code.parse(f"]C100{bad}".encode()).error == scan_code.E_CHECK


def test_refusals_each_have_their_own_code_message_and_pattern():
    cases = {
        b"": scan_code.E_MISREAD,
        b"\r\n": scan_code.E_MISREAD,
        b"RR47\x003124829GB": scan_code.E_MISREAD,
        b"\xff\xfe\x80": scan_code.E_MISREAD,
        f"]C100{sscc('03761234500000001')[:10]}".encode(): scan_code.E_MISREAD,  # truncated
        b"]C1420" + b"1" * 25: scan_code.E_TOO_LONG,
        b"Z" * 300: scan_code.E_TOO_LONG,
        b"HELLO WORLD": scan_code.E_UNKNOWN,
        b"]E04006381333931": scan_code.E_UNKNOWN,  # an EAN-13 is a product, not a parcel
    }
    for raw, err in cases.items():
        r = scan_code.parse(raw)
        assert (r.ok, r.error, r.item_id) == (False, err, ""), raw
        assert r.message == scan_code.MESSAGES[err] and r.pattern == scan_code.PATTERNS[err]
    assert {scan_code.PATTERNS[e] for e in (1, 2, 3)} == {"misread", "invalid", "unknown"}


def test_route_formats_match_by_pattern_and_length_range():
    fmts = [scan_code_format.Format("dhl", "JJD#{12,24}"), scan_code_format.Format("local", "AA#########AA"),
            scan_code_format.Format("crate", "C-#{7}", check="mod10")]
    assert scan_code.parse(b"JJD000390007827240066", fmts).kind == "dhl"
    assert scan_code.parse(b"JJD00039", fmts).error == scan_code.E_UNKNOWN  # too short for {12,24}
    r = scan_code.parse(b"XY123456789ZZ", fmts)
    assert (r.kind, r.item_id) == ("local", "XY123456789ZZ")
    assert scan_code.parse(b"C-1234565", fmts).kind == "crate"
    assert scan_code.parse(b"C-1234566", fmts).error == scan_code.E_CHECK
    assert scan_code.parse(b"RR473124829GB", fmts).kind == "s10"  # S10 wins over a route pattern
    # a failed S10 check falls through to a route format of the same shape, else is refused
    assert scan_code.parse(b"RR473124828GB", fmts).kind == "local"
    assert scan_code.parse(b"RR473124828GB", fmts[:1]).error == scan_code.E_CHECK
    r = scan_code.parse(f"]d2{GS}0109506000134352{GS}21ABC{GS}10L1".encode())
    assert (r.kind, r.item_id) == ("gs1", "010950600013435221ABC")


_GTIN = st.text("0123456789", min_size=13, max_size=13).map(lambda s: s + ean.calc_check_digit(s))
_SSCC = st.text("0123456789", min_size=17, max_size=17).map(sscc)
_TEXT = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-./", min_size=1, max_size=20)
_AI_VALUES = {
    "00": _SSCC, "01": _GTIN, "10": _TEXT, "21": _TEXT, "400": _TEXT, "403": _TEXT,
    "17": st.dates(dt.date(2001, 1, 1), dt.date(2049, 12, 28)),
    "11": st.dates(dt.date(2001, 1, 1), dt.date(2049, 12, 28)),
    "30": st.integers(0, 99_999_999), "37": st.integers(1, 99_999),
    "3103": st.integers(0, 999_999).map(lambda n: decimal.Decimal(n) / 1000),
    "420": st.text("0123456789ABCDEFGHJK", min_size=3, max_size=10),
    "421": st.tuples(st.sampled_from(["276", "250", "826", "840"]),
                     st.text("0123456789", min_size=4, max_size=9)).map("".join),
    "90": _TEXT,
}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(_AI_VALUES)), st.none(), min_size=1, max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: _AI_VALUES[k] for k in keys})),
    st.sampled_from(["]C1", "]d2", "]Q3"]))
def test_gs1_element_strings_read_as_stdnum_gs1_128_reads_them(data, aim):
    text = gs1_128.encode(data, separator=GS)
    oracle = gs1_128.info(text, separator=GS)
    assert gs1_128.validate(text, separator=GS)
    r = scan_code.parse((aim + GS + text + "\r\n").encode())
    # a string that names no item (only a batch, dates, a postal code...) is not a parcel's code
    assert r.ok == ("00" in data or "01" in data or "21" in data), (text, r)
    assert r.ok or r.error == scan_code.E_UNKNOWN
    assert set(r.ais) == set(oracle)
    for ai, raw in r.ais.items():  # each field we cut out means to stdnum what the whole string does
        assert gs1_128.info(ai + raw)[ai] == oracle[ai]
    if "00" in data:
        assert (r.kind, r.item_id) == ("sscc", data["00"])
    if "421" in data and r.ok:
        assert r.country + r.postal == data["421"]
    elif "420" in data and r.ok:
        assert r.postal == data["420"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_scan_or_a_refusal_never_an_exception(raw):
    r = scan_code.parse(raw)
    assert r.ok == (r.error == scan_code.OK) and (r.item_id != "") == r.ok
    assert len(r.item_id) <= scan_code.MAX_ITEM


CODES = ["RR473124829GB", "RR473124828GB", "rr473124829gb", f"]C1{GS}00{sscc('03761234500000001')}42075008",
         f"]d2{GS}01{'09506000134352'}21ABC{GS}421276{'10115'}", f"]Q300{sscc('12345678901234567')}",
         "(00)037612345000000017(420)75008", "", "HELLO", "]C100123", "JJD000390007827240066", "C-1234565"]


def _summary(r) -> list:
    return [r.kind, r.item_id, r.postal, r.country, r.symbology, r.error, r.message, r.pattern,
            sorted(r.ais.items())]


def test_the_vm_reads_every_code_as_cpython_does(mpy):
    fmts = [scan_code_format.Format("dhl", "JJD#{12,24}"),
            scan_code_format.Format("crate", "C-#{7}", check="mod10")]
    expected = [_summary(scan_code.parse(c.encode() + b"\r\n", fmts)) for c in CODES]
    raws = [c.encode() + b"\r\n" for c in CODES]
    out = mpy(f"""
        import json
        from firmware import scan_code, scan_code_format
        fmts = [scan_code_format.Format("dhl", "JJD#{{12,24}}"),
                scan_code_format.Format("crate", "C-#{{7}}", check="mod10")]
        for c in {raws!r}:
            r = scan_code.parse(c, fmts)
            print(json.dumps([r.kind, r.item_id, r.postal, r.country, r.symbology, r.error, r.message,
                              r.pattern, sorted(r.ais.items())]))
        """)
    got = [json.loads(line) for line in out.splitlines()]
    assert got == json.loads(json.dumps(expected))
    assert got[0][:2] == ["s10", "RR473124829GB"] and got[1][5] == scan_code.E_CHECK
