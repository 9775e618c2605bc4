"""`depot route build`: an address list matched to OSM building footprints, in `en` and `zh`.

Each address names the building it must land on, or the reason it must not land anywhere: a
wrong match is worse than none, so the traps (flats, ranges, the number after the street, a
street name in two towns, a bare name with two street types, no building at all) are spelled out.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from host_tools import address, address_zh, cli, route_compile
from host_tools.address_build import build, read_rows
from host_tools.address_match import Index, buildings_from, load_footprints
from host_tools.errors import DepotError
from host_tools.record_dict import OUTCOMES
from sim.town import s10

LAT, LON = 40.0, -105.27
M_LAT = 1 / 111195.0
M_LON = M_LAT / math.cos(math.radians(LAT))


def footprint(k: int, **tags: str) -> dict:
    """A 10 m x 12 m building, the k-th along a line, with OSM tags (overpass-turbo form)."""
    x, y = k * 20.0, 0.0
    ring = [[LON + (x + dx) * M_LON, LAT + (y + dy) * M_LAT] for dx, dy in
            ((0, 0), (10, 0), (10, 12), (4, 12), (4, 8), (0, 8), (0, 0))]
    return {"type": "Feature", "id": f"way/{k}", "properties": {"@id": f"way/{k}", "building": "yes", **tags},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


EN = [
    footprint(1, **{"addr:housenumber": "12", "addr:street": "Main Street", "addr:city": "Springfield",
                    "addr:postcode": "62701"}),
    footprint(2, **{"addr:housenumber": "14-16", "addr:street": "Market Street", "addr:city": "Springfield"}),
    footprint(3, **{"addr:housenumber": "20", "addr:street": "North Oak Avenue"}),
    footprint(4, **{"addr:housenumber": "12", "addr:street": "Main Street", "addr:city": "Shelbyville",
                    "addr:postcode": "62565"}),  # the same street name in the next town
    footprint(5, **{"addr:housenumber": "5", "addr:street": "Elm Street"}),
    footprint(6, **{"addr:housenumber": "5", "addr:street": "Elm Avenue"}),
    footprint(7, **{"addr:housenumber": "30", "addr:street": "Washington Boulevard"}),
    footprint(8),  # a shed: no address
    footprint(9, **{"addr:housenumber": "7", "addr:street": "Market Street", "addr:city": "Springfield"}),
    footprint(10, **{"addr:housenumber": "41", "addr:street": "Southeast Harbor Drive"}),
    footprint(11, **{"addr:housenumber": "3", "addr:street": "Fifth Avenue"}),
    footprint(12, **{"addr:housenumber": "8", "addr:street": "Saint Johns Road"}),
    footprint(13, **{"addr:housenumber": "2", "addr:street": "North Street"}),
    footprint(14, **{"addr:housenumber": "4", "addr:place": "Little Hampden"}),  # a hamlet: no streets
    footprint(15, **{"addr:housenumber": "30", "addr:street": "Main Street", "addr:city": "Springfield",
                     "addr:postcode": "62701"}),  # Shelbyville's Main Street has no 30 mapped
    footprint(16, **{"addr:housenumber": "8", "addr:street": "Johns Road"}),  # beside Saint Johns Road
]

EN_CASES = [  # address as the list has it -> (outcome, building)
    ("7 Market Street", "exact", "way/9"),
    ("7 market st.", "normalized", "way/9"),
    ("7 MARKET ST APT 3", "normalized", "way/9"),  # flats share their building
    ("#2, 7 Market St", "normalized", "way/9"),
    ("Flat 4, 7 Market Street", "normalized", "way/9"),
    ("7 Market St Unit B, Springfield IL 62701", "normalized", "way/9"),
    ("Market Street 7", "normalized", "way/9"),  # number after the street
    ("14-16 Market Street", "exact", "way/2"),
    ("14 Market St", "normalized", "way/2"),  # one end of the building's range
    ("16 Market St.", "normalized", "way/2"),
    ("12 Main Street, Springfield", "normalized", "way/1"),
    ("12 Main St 62565", "normalized", "way/4"),
    ("12 Main Street", "ambiguous", None),  # two towns, nothing says which
    ("20 N Oak Ave", "normalized", "way/3"),
    ("20 North Oak Avenue", "exact", "way/3"),
    ("20 Oak Avenue", "fuzzy", "way/3"),  # the direction left out
    ("20 Southeast Oak Avenue", "none", None),  # a direction that contradicts
    ("41 SE Harbor Dr", "normalized", "way/10"),
    ("30 Washingtn Blvd", "fuzzy", "way/7"),  # a typo
    ("30 Wahsington Boulevard", "fuzzy", "way/7"),  # transposed letters
    ("5 Elm St", "normalized", "way/5"),
    ("5 Elm", "ambiguous", None),  # Elm Street or Elm Avenue
    ("9 Market Street", "none", None),  # the street exists, the building does not: never a neighbour
    ("40 Nowhere Road", "none", None),
    ("Main Street", "none", None),
    ("3 5th Ave", "normalized", "way/11"),  # ordinals written either way
    ("8 St. Johns Rd", "normalized", "way/12"),  # Saint as St
    ("2 N St", "normalized", "way/13"),  # a street named after a direction
    ("4 Little Hampden", "exact", "way/14"),
    ("12 Main Street, Shelbyville", "normalized", "way/4"),
    ("12 Main St, Springfield IL 62565", "none", None),  # town and postcode disagree: neither guessed
    ("30 Main Street, Springfield", "normalized", "way/15"),
    ("30 Main St 62701", "normalized", "way/15"),
    ("30 Main Street", "ambiguous", None),  # Main Street is in two towns; Shelbyville's 30 may be unmapped
    ("30 Main St 62565", "none", None),  # Shelbyville named: it has no 30
    ("8 Saint Johns Road", "exact", "way/12"),
    ("8 Johns Rd", "normalized", "way/16"),  # St is Saint in a name, Street as a type
    ("8 ST JOHNS RD, USA", "normalized", "way/12"),  # a trailing country
    ("c/o J. Smith, 7 Market St, PO Box 12", "normalized", "way/9"),  # care-of and PO box: not places
    ("14 – 16 Market Street", "normalized", "way/2"),  # a range with another dash, spaced
    ("14—16 Market St", "normalized", "way/2"),
    ("41 Harbor Dr S.E.", "normalized", "way/10"),  # a dotted directional after the name
    ("41  HARBOR  DRIVE  SOUTHEAST", "normalized", "way/10"),
    ("3 Fifth Avenue, United States", "normalized", "way/11"),
    ("PO Box 12", "none", None),
    ("3 Fitfh Ave", "fuzzy", "way/11"),  # a typo in a spelled-out ordinal
    ("7 1/2 Market St", "none", None),  # 7½ is an address of its own, often a house behind 7
    ("Lot 7 Market St", "none", None),  # a plot, not house number 7
    ("7 Market St (side door)", "normalized", "way/9"),  # a note for the carrier
    ("7 Market St Floor 2", "normalized", "way/9"),
]


@pytest.fixture(scope="module")
def en_index() -> Index:
    return Index(buildings_from(EN), "en")


@pytest.mark.parametrize("text, kind, building", EN_CASES)
def test_en_addresses_land_on_their_building_or_nowhere(en_index, text, kind, building):
    m = en_index.match(text, en_index.parse(text))
    assert (m.kind, m.building.id if m.building else None) == (kind, building), m.why


def test_en_reasons_name_what_is_missing(en_index):
    def why(text: str) -> str:
        return en_index.match(text, en_index.parse(text)).why

    assert why("9 Market Street") == "no building numbered 9 on market st"
    assert why("40 Nowhere Road") == "no street like 'nowhere rd' in the footprints"
    assert why("12 Main Street") == "2 buildings fit: 12 Main Street (way/1), 12 Main Street (way/4)"
    assert why("5 Elm") == "2 streets fit: elm ave, elm st"
    assert why("30 Main Street") == "main st is in 2 towns (shelbyville, springfield), the address names none"


ZH = [
    footprint(101, **{"addr:street": "建国路", "addr:housenumber": "88号", "name": "1号楼"}),
    footprint(102, **{"addr:street": "建国路", "addr:housenumber": "88号", "name": "2号楼"}),
    footprint(103, **{"addr:street": "人民路", "addr:housenumber": "12号"}),
    footprint(104, **{"addr:street": "中山路", "addr:housenumber": "5号"}),
    footprint(105, **{"addr:street": "中山街", "addr:housenumber": "5号"}),
    footprint(106, **{"addr:street": "解放大道", "addr:housenumber": "100号"}),
    footprint(107, **{"addr:street": "朝阳巷", "addr:housenumber": "3号3号楼"}),
    # a Shanghai lane (弄) off 长乐路, tagged both ways OSM's Chinese data has, and the traps: the
    # road's own 120号 beside lane 120, and the road's own 3号 beside the lane's 3号
    footprint(108, **{"addr:street": "长乐路120弄", "addr:housenumber": "3号"}),
    footprint(109, **{"addr:street": "长乐路", "addr:housenumber": "120弄5号"}),
    footprint(110, **{"addr:street": "长乐路", "addr:housenumber": "120号"}),
    footprint(111, **{"addr:street": "长乐路", "addr:housenumber": "3号"}),
    footprint(112, **{"addr:street": "长乐路", "addr:housenumber": "88弄3号"}),
    # 中山路 is in every city: the same road and number in two cities
    footprint(113, **{"addr:street": "中山东路", "addr:housenumber": "18号", "addr:city": "上海市"}),
    footprint(114, **{"addr:street": "中山东路", "addr:housenumber": "18号", "addr:city": "南京市"}),
    footprint(115, **{"addr:street": "中山东路", "addr:housenumber": "20号", "addr:city": "南京市"}),
]

ZH_CASES = [
    ("人民路12号", "exact", "way/103"),
    ("人民路12号3单元402室", "normalized", "way/103"),  # flats share their building
    ("人民路１２号", "normalized", "way/103"),  # full-width digits
    ("北京市朝阳区人民路12号", "normalized", "way/103"),  # the administrative prefix
    ("人民路 12号 100020", "normalized", "way/103"),  # a postcode appended
    ("人明路12号", "fuzzy", "way/103"),  # typed through pinyin: ming for min
    ("北京市朝阳区建国路88号2号楼3单元501室", "normalized", "way/102"),
    ("建国路88号2号楼", "exact", "way/102"),
    ("建国路88号二号楼", "normalized", "way/102"),
    ("建国路88号1栋", "normalized", "way/101"),
    ("健国路88号1号楼", "fuzzy", "way/101"),  # a homophone
    ("建国路88号", "ambiguous", None),  # which building of the compound?
    ("建国路88号5号楼", "none", None),  # that building is not mapped
    ("解放100号", "fuzzy", "way/106"),  # the road type left out
    ("中山5号", "ambiguous", None),  # 中山路 or 中山街
    ("中山街5号", "exact", "way/105"),
    ("北京市朝阳巷3号3号楼", "normalized", "way/107"),  # a road named like a district
    ("人民路14号", "none", None),
    ("和平路1号", "none", None),
    ("长乐路120弄3号", "exact", "way/108"),  # a lane's house, never 长乐路120号 nor 长乐路3号
    ("长乐路120弄5号", "exact", "way/109"),  # tagged 长乐路 + 120弄5号: the same street key
    ("长乐路120号", "exact", "way/110"),  # the road's own building, never the lane's
    ("长乐路3号", "exact", "way/111"),
    ("长乐路88弄3号", "exact", "way/112"),  # house 3 in another lane
    ("长乐路120弄7号", "none", None),  # not mapped: never the road's 7号 or another lane's
    ("长乐路120弄", "ambiguous", None),  # which house of the lane? listed, not guessed
    ("上海市黄浦区长乐路120弄3号", "normalized", "way/108"),  # province/city/district prefix
    ("中国上海市静安区长乐路120弄3号2楼201室", "normalized", "way/108"),  # floor and room
    ("3号 长乐路120弄", "normalized", "way/108"),  # the number before the road
    ("120号长乐路", "normalized", "way/110"),
    ("3号楼 长乐路 120号", "normalized", "way/110"),  # a compound mapped as one footprint
    ("长乐路120弄3号楼", "normalized", "way/108"),  # inside a lane the house is called 号楼 too
    ("长乐路一百二十弄三号", "normalized", "way/108"),  # Chinese numerals
    ("长乐路十二号", "none", None),  # 12, not 10 + 2; there is no 12号
    ("长乐路１２０弄３號", "normalized", "way/108"),  # full-width digits, 號
    ("长乐路120弄 3", "normalized", "way/108"),  # 号 left out
    ("长乐路120 3单元501", "normalized", "way/110"),  # 号 left out, then a unit
    ("长乐120弄3号", "fuzzy", "way/108"),  # the road type left out, the lane kept
    ("常乐路120弄3号", "fuzzy", "way/108"),  # a homophone in the road, the lane kept
    ("长乐路121弄3号", "none", None),  # no lane 121: never lane 120 nor the road's 3号
    ("建国路88号二栋", "normalized", "way/102"),  # 栋 for 号楼
    ("建国路88号2座", "normalized", "way/102"),
    ("建国路88号2#楼1单元", "normalized", "way/102"),
    ("人民路12号3楼301", "normalized", "way/103"),  # 3楼 is a floor, not a building
    ("上海市黄浦区中山东路18号", "normalized", "way/113"),  # the city named in the prefix
    ("南京市玄武区中山东路18号", "normalized", "way/114"),
    ("中山东路18号", "ambiguous", None),  # two cities, nothing says which
    ("中山东路20号", "ambiguous", None),  # only 南京 has a 20 mapped; 上海's may be missing
    ("南京中山东路20号", "normalized", "way/115"),
    ("收件人 张三 长乐路120号", "normalized", "way/110"),  # 张三 is a name, not a 3
    ("长乐路第120号", "normalized", "way/110"),
    ("长乐路120号之一", "none", None),  # a number of its own, not 120
    ("上海市中山东路20号", "none", None),  # 上海's 中山东路 has no 20 mapped
]


@pytest.fixture(scope="module")
def zh_index() -> Index:
    return Index(buildings_from(ZH), "zh")


@pytest.mark.parametrize("text, kind, building", ZH_CASES)
def test_zh_addresses_land_on_their_building_or_nowhere(zh_index, text, kind, building):
    m = zh_index.match(text, zh_index.parse(text))
    assert (m.kind, m.building.id if m.building else None) == (kind, building), m.why


def test_zh_parts_are_taken_apart():
    p = address_zh.parse_zh("北京市朝阳区建国路88号三号楼2单元501室")
    assert (p.street, p.core, p.street_type, p.numbers, p.building, p.unit, p.place) == \
        ("建国路", "建国", "路", ("88",), "3", "2-501", "北京市朝阳区")
    p = address_zh.parse_zh("3号楼 上海市长乐路120弄 5号 1单元602室 邮编200031")
    assert (p.street, p.core, p.lane, p.numbers, p.building, p.unit, p.place, p.postcode) == \
        ("长乐路120弄", "长乐", "120", ("5",), "3", "1-602", "上海市", "200031")


@pytest.mark.parametrize("tags, street, numbers, block", [
    ({"addr:street": "长乐路120弄", "addr:housenumber": "3号"}, "长乐路120弄", ("3",), ""),
    ({"addr:street": "长乐路", "addr:housenumber": "120弄3号"}, "长乐路120弄", ("3",), ""),
    ({"addr:street": "长乐路", "addr:housenumber": "120"}, "长乐路", ("120",), ""),
    ({"addr:street": "建国路", "addr:housenumber": "88号", "name": "3号楼"}, "建国路", ("88",), "3"),
    ({"addr:street": "建国路", "addr:housenumber": "88号3栋"}, "建国路", ("88",), "3"),
    ({"addr:street": "建国路", "addr:housenumber": "88号", "name": "国贸大厦"}, "建国路", ("88",), ""),
])
def test_zh_osm_tags_read_both_ways(tags, street, numbers, block):
    p = address_zh.zh_tags(tags)
    assert (p.street, p.numbers, p.building) == (street, numbers, block)


@pytest.mark.parametrize("raw, numbers", [
    ("12-14", ("12-14", "12", "14")), ("12 ; 14", ("12-14", "12", "14")), ("12–14", ("12-14", "12", "14")),
    ("12B", ("12b",)), ("12 1/2", ("12\u00bd",)), ("12\u00bd", ("12\u00bd",)),
    ("121/2", ("121/2",)),  # not a range from 121 down to 2: no row numbered 2 lands on it
    ("2-200", ("2-200",)),  # nor a range over a whole street
])
def test_house_numbers_stand_for_themselves_and_a_range_for_its_ends(raw, numbers):
    assert address.house_numbers(raw) == numbers


def test_en_parts_are_taken_apart():
    p = address.parse_en("12-14 N. Main Street, Apt 3, Springfield IL 62701", frozenset({"springfield"}))
    assert (p.street, p.core, p.street_type, p.directions, p.numbers, p.unit, p.place, p.postcode) == \
        ("n main st", "main", "st", ("n",), ("12-14", "12", "14"), "3", "springfield", "62701")


# --- the command ----------------------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict[str, str]], bom: bool = True) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["stop_id", "seq", "name", "address", "items", "lat", "lon"])
        w.writeheader()
        w.writerows(rows)
    return path


def row(seq: int, text: str, *items: str, lat: str = "", lon: str = "") -> dict[str, str]:
    return {"stop_id": f"S{seq:03d}", "seq": str(seq), "name": f"Resident {seq}", "address": text,
            "items": " ; ".join(items) if seq % 2 else " ".join(items), "lat": lat, "lon": lon}


def test_cli_writes_every_row_once_with_its_match_and_a_summary(tmp_path, capsys):
    fp = tmp_path / "buildings.geojson"
    fp.write_text(json.dumps({"type": "FeatureCollection", "features": EN}))
    addresses = write_csv(tmp_path / "north.csv", [
        row(1, "7 Market Street", s10("RR", "00000001"),  # a prior geocode 1.1 km off: flagged, not used
            lat=f"{LAT + 0.01:.6f}", lon=f"{LON + 160 * M_LON:.6f}"),
        row(2, "7 Market St Apt 2", s10("RR", "00000002"), s10("CP", "00000003")),
        row(3, "14 Market St", s10("RR", "00000004")),
        row(4, "30 Washingtn Blvd", s10("RR", "00000005")),
        row(5, "99 New Build Lane", s10("RR", "00000006"), lat=f"{LAT + 0.001:.6f}", lon=f"{LON:.6f}"),
        row(6, "12 Main Street", s10("RR", "00000007")),
        row(7, "<b>123 Nowhere</b>", s10("RR", "00000008")),
    ])
    out, page = tmp_path / "north.geojson", tmp_path / "match.html"
    rc = cli.main(["route", "build", str(addresses), "--footprints", str(fp), "--out", str(out),
                   "--route-id", "NORTH-1", "--html", str(page)])
    stdout = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert stdout[-1] == ("matched 4 of 7 addresses (57.1%): exact 1, normalized 2, fuzzy 1, geocode 1; "
                          "unmatched 1; ambiguous 1")
    fc = json.loads(out.read_text())
    assert fc["route_id"] == "NORTH-1"
    props = [f["properties"] for f in fc["features"]]
    assert [p["stop_id"] for p in props] == [f"S{k:03d}" for k in range(1, 8)]
    assert [(p["match"], p["building_id"]) for p in props] == [
        ("exact", "way/9"), ("normalized", "way/9"), ("normalized", "way/2"), ("fuzzy", "way/7"),
        ("geocode", None), ("none", None), ("none", None)]
    assert set(props[0]) == {"stop_id", "seq", "name", "address", "items", "match", "match_score",
                             "building_id"}
    assert props[1]["items"] == [s10("RR", "00000002"), s10("CP", "00000003")]
    assert props[0]["match_score"] == 1.0 and props[4]["match_score"] == 0.2
    assert fc["features"][0]["geometry"] == fc["features"][1]["geometry"] == EN[8]["geometry"]
    assert fc["features"][4]["geometry"]["type"] == "Point" and props[4]["radius_m"] == 25.0
    assert fc["features"][5]["geometry"] is None  # listed, never dropped, never guessed
    assert ("S006: ambiguous (2 buildings fit: 12 Main Street (way/1), 12 Main Street (way/4); the rows "
            "around it in walk order (S004 before, none after) are not all in one of its towns, kilometres "
            "from main st in the others); no fence: 12 Main Street") in stdout
    html = page.read_text()
    assert html.count("<tr class=") == 3 and 'data-stop-id="S005"' in html
    assert "&lt;b&gt;123 Nowhere&lt;/b&gt;" in html and "<b>123" not in html
    assert html.count('class="exact"') == 1 and html.count('class="geocode"') == 1
    assert "Fuzzy matches to glance at (1)" in html and "30 Washington Boulevard (way/7)" in html
    assert "Matches far from their prior geocode (1)" in html and "<td class=\"num\">1100 m</td>" in html


def test_a_built_route_compiles_when_every_stop_has_a_fence(tmp_path):
    fp = tmp_path / "b.geojson"
    fp.write_text(json.dumps({"type": "FeatureCollection", "features": ZH}))
    addresses = write_csv(tmp_path / "zh.csv", [
        row(1, "人民路12号3单元402室", s10("RR", "00000011")),
        row(2, "建国路88号2号楼", s10("RR", "00000012")),
        row(3, "建国路88号1号楼1单元101", s10("RR", "00000013")),
        row(4, "和平路1号", s10("RR", "00000014"), lat=f"{LAT:.6f}", lon=f"{LON - 0.001:.6f}"),
    ], bom=False)
    fc, outcomes, _ = build(addresses, fp, locale="zh", route_id="ZH-1")
    assert [o.kind for o in outcomes] == ["normalized", "exact", "normalized", "geocode"]
    res = route_compile.compile_geojson(fc, key=bytes(32))
    assert (res.stops, res.route_id, res.repairs) == (4, "ZH-1", [])


def test_the_route_id_follows_the_id_rule(tmp_path, capsys):
    from host_tools.address_build import default_route_id

    assert default_route_id("lists/north 7 (Mon).csv") == "NORTH-7-MON"
    assert default_route_id("/x/___.csv") == "ROUTE"
    assert default_route_id("a-very-long-route-list.csv") == "A-VERY-LONG-ROUT"
    p = write_csv(tmp_path / "a.csv", [row(1, "7 Main Street", "X")])
    rc = cli.main(["route", "build", str(p), "--footprints", str(p), "--out", str(tmp_path / "o"),
                   "--route-id", "../etc"])
    assert rc == 2 and "route id '../etc' is not letters" in capsys.readouterr().err


def test_a_semicolon_separated_list_with_quoted_fields_reads_the_same(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('\ufeffstop_id;seq;name;address;items;lat;lon\n'
                 'S1;1;"Smith; J.";"7 Main St, Apt 2";"RR1 ; CP2";40.1;-105.2\n', encoding="utf-8")
    (r,) = read_rows(p)
    assert (r.stop_id, r.seq, r.name, r.address, r.items, r.lonlat) == \
        ("S1", 1, "Smith; J.", "7 Main St, Apt 2", ["RR1", "CP2"], (-105.2, 40.1))


@pytest.mark.parametrize("content, message", [
    ("stop_id,seq,name,items\nS1,1,A,RR1\n",
     "no column address in the header. "
     "The first row names the columns stop_id,seq,name,address,items[,lat,lon]"),
    ("stop_id,seq,name,address,items\nS1,one,A,1 Main St,X\n",
     "line 2: seq 'one' is not a whole number. The walk order is a whole number, 0..65535"),
    ("stop_id,seq,name,address,items\nS1,1,A,1 Main St,X\nS1,2,B,2 Main St,Y\n",
     "line 3: stop_id S1 already on line 2. Stop ids are unique"),
    ("stop_id,seq,name,address,items,lat,lon\nS1,1,A,1 Main St,X,north,5\n",
     "line 2: lat,lon 'north','5' are not numbers. Leave both empty or give decimal degrees"),
    ("stop_id,seq,name,address,items\n", "no address rows. One row per stop below the header"),
    ("stop_id,seq,name,address,items\nS 1,1,A,1 Main St,X\n",
     "line 2: stop id 'S 1' is not letters, digits, '.', '_' or '-', starting with a letter or a digit. "
     "Use 1 to 40 letters, digits, '.', '_' or '-', starting with a letter or a digit"),
])
def test_bad_lists_get_one_line(tmp_path, content, message):
    p = tmp_path / "a.csv"
    p.write_text(content)
    with pytest.raises(DepotError) as exc:
        read_rows(p)
    assert exc.value.line().endswith(message + ".")


def test_bad_footprints_and_not_utf8_get_one_line(tmp_path, capsys):
    bad = tmp_path / "b.geojson"
    bad.write_text("{")
    with pytest.raises(DepotError, match="not readable as GeoJSON"):
        load_footprints(bad)
    latin = tmp_path / "a.csv"
    latin.write_bytes("stop_id,seq,name,address,items\nS1,1,Müller,1 Main St,X\n".encode("latin-1"))
    rc = cli.main(["route", "build", str(latin), "--footprints", str(bad), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert capsys.readouterr().err == f"depot: error: {latin}: not UTF-8 text. Save the list as CSV UTF-8.\n"
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_built_route_is_compiled_loaded_and_delivered_on_a_virtual_handheld(tmp_path):
    from host_tools import flash, route_assign
    from host_tools.store import Store
    from host_tools.sync import sync_device
    from sim import address_town, day
    from sim.client import Device

    town = address_town.generate(seed=5, buildings=40, locale="en", geocoded=1.0)
    flats = next(b for b in town.truth.values() if b and list(town.truth.values()).count(b) > 1)
    new_build = next(r for r in town.rows if town.truth[r["stop_id"]] is None)
    town.rows = town.rows[:8] + [r for r in town.rows[8:]
                                 if town.truth[r["stop_id"]] == flats or r is new_build]
    assert [town.truth[r["stop_id"]] for r in town.rows].count(flats) >= 2  # flats share a fence
    assert None in [town.truth[r["stop_id"]] for r in town.rows]  # a new build: a geocode fence
    csv_path, fp = address_town.write(town, tmp_path)
    route = tmp_path / "route.geojson"
    pkg = tmp_path / "route.pkg"
    assert cli.main(["route", "build", str(csv_path), "--footprints", str(fp), "--out", str(route),
                     "--route-id", "ADDR-5"]) == 0
    fc = json.loads(route.read_text())
    matched = [f["properties"]["building_id"] for f in fc["features"]]
    assert matched == [town.truth[r["stop_id"]] for r in town.rows]  # every one right, none missing
    assert cli.main(["route", "compile", str(route), "--out", str(pkg), "--date", "2026-11-30"]) == 0
    store = Store(tmp_path / "depot.sqlite3")
    store.enrol("HH-0501")
    route_assign.assign(store, pkg, "HH-0501")
    with Device.start(tmp_path / "hh.img", workdir=tmp_path / "dev", seed=5) as dev:
        res = flash.flash_one(dev.console, "HH-0501", flash.build("sim"), store.key("HH-0501"))
        assert (res.status, res.message) == ("ok", "")
        dev.wait_ready()
        morning = sync_device(dev.dock, store)
        assert (morning.ok, morning.route_pushed) == (True, "ADDR-5")
        out = day.Outcome("HH-0501")
        day.Walker(dev, day.Carrier("HH-0501", str(route)), fc, out).run()
        assert out.errors == [] and out.overrides == 0  # each door is inside its building's fence
        night = sync_device(dev.dock, store)
        assert night.ok, night.error
    got = sorted((OUTCOMES[r.outcome], r.stop_id, r.item_id) for r in store.records("HH-0501"))
    assert got == sorted(out.expected)
    assert {sid for _, sid, _ in got} == {r["stop_id"] for r in town.rows}


def address_node(k: int, x: float, y: float, **tags: str) -> dict:
    """An OSM address node at (x, y) metres from the first footprint's corner."""
    return {"type": "Feature", "id": f"node/{k}", "properties": {"@id": f"node/{k}", **tags},
            "geometry": {"type": "Point", "coordinates": [LON + x * M_LON, LAT + y * M_LAT]}}


def test_address_nodes_inside_a_footprint_address_it():
    shed = footprint(8)  # untagged footprints at 160..170 m and 180..190 m
    plain = footprint(9)
    overlapping = footprint(20)
    overlapping["geometry"] = plain["geometry"]  # mapped twice: nobody can say which
    feats = [shed, address_node(1, 165, 2, **{"addr:housenumber": "3", "addr:street": "Mill Lane"}),
             address_node(2, 165, 3, **{"addr:housenumber": "5", "addr:street": "Mill Lane"}),
             address_node(3, 185, 2, **{"addr:housenumber": "7", "addr:street": "Mill Lane"}),
             address_node(4, 500, 2, **{"addr:housenumber": "9", "addr:street": "Mill Lane"}),
             plain, overlapping]
    index = Index(buildings_from(feats), "en")
    got = {t: (m.kind, m.building.id if m.building else None)
           for t in ("3 Mill Lane", "5 Mill Ln", "7 Mill Lane", "9 Mill Lane")
           for m in [index.match(t, index.parse(t))]}
    assert got == {"3 Mill Lane": ("exact", "way/8"),  # two entrances, one building
                   "5 Mill Ln": ("normalized", "way/8"),
                   "7 Mill Lane": ("none", None),  # inside two footprints: not guessed
                   "9 Mill Lane": ("none", None)}  # inside none


def write_osm(path: Path, features: list[dict]) -> Path:
    """The footprints as an OSM extract: a node per vertex, a closed way per building, a tagged
    node per address node."""
    import osmium
    from osmium.osm import Location
    from osmium.osm.mutable import Node, Way

    writer = osmium.SimpleWriter(str(path))
    ways, node_id = [], 0
    for f in features:
        if f["geometry"]["type"] == "Point":
            tags = {k: v for k, v in f["properties"].items() if not k.startswith("@")}
            writer.add_node(Node(id=10_000 + int(f["id"].split("/")[1]),
                                 location=Location(*f["geometry"]["coordinates"]), tags=tags))
            continue
        refs = []
        for lon, lat in f["geometry"]["coordinates"][0][:-1]:
            node_id += 1
            writer.add_node(Node(id=node_id, location=Location(lon, lat)))
            refs.append(node_id)
        tags = {k: v for k, v in f["properties"].items() if not k.startswith("@")}
        ways.append(Way(id=int(f["id"].split("/")[1]), nodes=refs + refs[:1], tags=tags))
    for w in ways:
        writer.add_way(w)
    writer.close()
    return path


def test_an_osm_pbf_extract_matches_like_its_geojson(tmp_path):
    buildings = load_footprints(write_osm(tmp_path / "town.osm.pbf", EN))
    assert sorted(b.id for b in buildings) == sorted(f["id"] for f in EN)
    index = Index(buildings, "en")
    got = [(m.kind, m.building.id if m.building else None)
           for m in (index.match(t, index.parse(t)) for t, _, _ in EN_CASES)]
    assert got == [(kind, building) for _, kind, building in EN_CASES]
    assert {b.geometry["type"] for b in buildings} == {"Polygon"}
    nodes = [footprint(8), address_node(1, 165, 2, **{"addr:housenumber": "3", "addr:street": "Mill Lane"})]
    index = Index(load_footprints(write_osm(tmp_path / "nodes.osm.pbf", nodes)), "en")
    m = index.match("3 Mill Lane", index.parse("3 Mill Lane"))
    assert (m.kind, m.building.id if m.building else None) == ("exact", "way/8")
    bad = tmp_path / "bad.osm.pbf"
    bad.write_bytes(b"\x00\x00\x00\x0dnot a pbf")
    with pytest.raises(DepotError, match="not readable as an OSM extract"):
        load_footprints(bad)


def test_the_generated_town_is_the_same_for_a_seed(tmp_path, capsys):
    from sim import address_town

    assert address_town.main([str(tmp_path / "a"), "--buildings", "60", "--seed", "3"]) == 0
    assert address_town.main([str(tmp_path / "b"), "--buildings", "60", "--seed", "3"]) == 0
    for name in ("addresses.csv", "buildings.geojson"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "addresses.csv").read_bytes().startswith(b"\xef\xbb\xbfstop_id,seq,")
    assert capsys.readouterr().out.count("footprints") == 2
