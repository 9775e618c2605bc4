"""A generated town for the address matcher: OSM-style building footprints and a depot's address
list perturbed the way real lists are (docs/address-matching.md writes the model down).

`generate(seed, buildings, locale)` returns the footprints (an overpass-turbo FeatureCollection),
the address rows (dicts with the CSV's columns) and the truth: each row's building id, or None for
an address whose building is not in the data. Everything follows from the seed.
"""

from __future__ import annotations

import csv
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.town import s10

LAT0, LON0 = 40.0313, -105.2705
M_LAT = 1 / 111195.0
M_LON = M_LAT / math.cos(math.radians(LAT0))

EN_NAMES = ["Maple", "Cedar", "Willow", "Juniper", "Hawthorn", "Chestnut", "Sycamore", "Magnolia",
            "Linden", "Spruce", "Poplar", "Alder", "Hickory", "Walnut", "Cypress", "Laurel", "Sequoia",
            "Aspen", "Redwood", "Mulberry", "Orchard", "Meadow", "Harbor", "Beacon", "Foundry", "Quarry",
            "Lincoln", "Jefferson", "Madison", "Monroe", "Franklin", "Hamilton", "Washington", "Garfield",
            "Highland", "Lakeview", "Riverside", "Fairview", "Greenwood", "Brookside", "Ridgeway",
            "Sunset", "Prospect", "Kingston", "Wellington", "Ashford", "Pinehurst", "Elmwood", "Oakmont",
            "Canyon", "Mesa", "Pearl", "Spring", "Mill", "Church", "Market", "Union", "Center", "Park",
            "Elm", "Oak", "Pine", "Ash", "Bay"]
EN_TYPES = [("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"), ("Lane", "Ln"),
            ("Court", "Ct"), ("Place", "Pl"), ("Boulevard", "Blvd"), ("Way", "Way"), ("Circle", "Cir")]
EN_DIRS = [("North", "N"), ("South", "S"), ("East", "E"), ("West", "W"), ("Southeast", "SE"),
           ("Northwest", "NW")]
EN_TOWNS = [("Boulder", "80302"), ("Louisville", "80027")]
TOWN_EAST_M = 12000.0  # the neighbouring town lies this far east (its streets too): a place of its own
ROUTE_ROWS = 250  # the list is routes of about this many rows, one after another
ZH_ROADS = ["建国", "人民", "中山", "解放", "和平", "胜利", "友谊", "光明", "幸福", "长江", "黄河",
            "文化", "新华", "朝阳", "东风", "红旗", "复兴", "民主", "团结", "青年", "工农", "学府",
            "科技", "金融", "世纪", "滨江", "望京", "安定", "平安", "永安", "龙华", "凤凰", "桂林",
            "长安", "延安", "淮海", "南京", "北京", "天山", "昆仑", "泰山", "华山", "衡山", "嵩山",
            "鼓楼", "钟楼", "新街", "东湖", "西湖", "南湖", "北湖", "翠竹", "松柏", "梧桐", "杨柳",
            "海棠", "牡丹", "芙蓉", "紫荆", "银杏"]
ZH_SUFFIX = ["路", "街", "大道", "巷"]
ZH_PREFIX = ["北京市朝阳区", "北京市海淀区", "北京市", "朝阳区"]
# homophones a pinyin input method offers for the same syllable (the commonest Chinese typo)
ZH_HOMOPHONES = {"建": "健", "国": "果", "民": "明", "山": "衫", "放": "方", "和": "河", "平": "苹",
                 "利": "力", "谊": "义", "明": "名", "福": "府", "江": "疆", "河": "和", "化": "华",
                 "华": "化", "阳": "杨", "风": "峰", "旗": "棋", "兴": "星", "主": "住", "结": "杰",
                 "年": "念", "农": "浓", "府": "符", "技": "记", "金": "今", "融": "容", "纪": "记",
                 "滨": "宾", "京": "经", "安": "按", "龙": "隆", "凤": "奉", "林": "琳", "延": "言",
                 "海": "还", "南": "男", "天": "添", "昆": "坤", "泰": "太", "衡": "恒", "鼓": "古",
                 "钟": "中", "街": "阶", "湖": "胡", "竹": "珠", "松": "送", "桐": "同", "柳": "流",
                 "棠": "堂", "丹": "单", "蓉": "容", "紫": "子", "杏": "幸"}
CN_DIGIT = "零一二三四五六七八九"


@dataclass
class Town:
    footprints: dict[str, Any]
    rows: list[dict[str, str]]
    truth: dict[str, str | None]  # stop_id -> building id, None: not in the data
    perturbations: dict[str, str] = field(default_factory=dict)  # stop_id -> what was done


def _footprint(rng: random.Random, cx: float, cy: float, ang: float, w: float, d: float) -> dict:
    """An irregular, real-looking footprint (metres, rotated with the street): a rectangle with a
    notch, an L, a bevel or a bay, every vertex jittered a little."""
    kind = rng.random()
    if kind < 0.25:  # L-shape
        a, b = w * rng.uniform(0.4, 0.7), d * rng.uniform(0.4, 0.7)
        pts = [(0, 0), (w, 0), (w, b), (a, b), (a, d), (0, d)]
    elif kind < 0.45:  # notch at the back
        a, b, c = w * 0.3, w * 0.7, d * rng.uniform(0.6, 0.85)
        pts = [(0, 0), (w, 0), (w, d), (b, d), (b, c), (a, c), (a, d), (0, d)]
    elif kind < 0.6:  # bevelled corner
        e = min(w, d) * rng.uniform(0.15, 0.3)
        pts = [(0, 0), (w - e, 0), (w, e), (w, d), (0, d)]
    elif kind < 0.75:  # bay window at the front
        a, b = w * 0.35, w * 0.65
        pts = [(0, 0), (a, 0), (a + 0.5, -1.2), (b - 0.5, -1.2), (b, 0), (w, 0), (w, d), (0, d)]
    else:
        pts = [(0, 0), (w, 0), (w, d), (0, d)]
    rot = ang + math.radians(rng.uniform(-3, 3))
    c, s = math.cos(rot), math.sin(rot)
    ring = []
    for u, v in pts:
        u += rng.uniform(-0.25, 0.25)
        v += rng.uniform(-0.25, 0.25)
        x, y = cx + u * c - v * s, cy + u * s + v * c
        ring.append([round(LON0 + x * M_LON, 7), round(LAT0 + y * M_LAT, 7)])
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def _street_names(rng: random.Random, n: int, locale: str) -> list[tuple[str, str, str]]:
    """n distinct (long name, short name, town index) triples; a few names recur in the second town
    and a few bare names with two types (Oak Street and Oak Avenue): the traps real data has."""
    out: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    used: set[str] = set()
    while len(out) < n:
        if locale == "zh":
            core = rng.choice(ZH_ROADS)
            if core in used and rng.random() < 0.85 and len(used) < len(ZH_ROADS):
                continue  # most names are used once; a few recur with another suffix
            used.add(core)
            long = core + rng.choice(ZH_SUFFIX)
            short, town = long, "0"
        else:
            name = rng.choice(EN_NAMES)
            if name in used and rng.random() < 0.85 and len(used) < len(EN_NAMES):
                continue  # most names are used once; a few recur with another type
            used.add(name)
            typ = rng.choice(EN_TYPES)
            long, short = f"{name} {typ[0]}", f"{name} {typ[1]}"
            if rng.random() < 0.15:
                d = rng.choice(EN_DIRS)
                long, short = f"{d[0]} {long}", f"{d[1]} {short}"
            town = "0"
        key = long + town
        if key in seen:
            if locale == "en" and rng.random() < 0.5 and key.replace("0", "1") not in seen:
                town = "1"  # the same street name in the neighbouring town
                key = long + town
            else:
                continue
        seen.add(key)
        out.append((long, short, town))
    return out


def generate(seed: int = 1, buildings: int = 1200, locale: str = "en", no_building: float = 0.05,
             sheds: float = 0.3, geocoded: float = 0.3) -> Town:
    rng = random.Random(seed)
    per_street = 24 if locale == "en" else 16
    streets = _street_names(rng, max(1, buildings // per_street + 1), locale)
    feats: list[dict] = []
    addressed: list[tuple[str, dict, tuple[str, str, str], str, str]] = []  # id, tags, street, number, block
    ghosts: list[tuple[tuple[str, str, str], str]] = []  # addresses whose building is not in the data
    walk: dict[tuple[str, str], tuple] = {}  # (street + town, number) -> where a route walks it
    fid = 10_000_000 + seed * 1_000_000
    cols = max(1, int(math.sqrt(len(streets))))
    made = 0
    for si, street in enumerate(streets):
        ox, oy = (si % cols) * 700.0 + TOWN_EAST_M * int(street[2]), (si // cols) * 90.0
        ang = math.radians(rng.uniform(-20, 20))
        n_lots = per_street if made + per_street <= buildings else max(1, buildings - made)
        u = 0.0
        number = rng.choice([1, 1, 2, 100, 200]) if locale == "en" else 1
        for lot in range(n_lots + 2):
            w = rng.uniform(9, 16) if locale == "en" else rng.uniform(18, 30)
            d = rng.uniform(9, 15) if locale == "en" else rng.uniform(12, 20)
            side = 1 if lot % 2 == 0 else -1
            number += rng.choice([2, 2, 2, 4]) if locale == "en" else 1
            hn = str(number)
            walk[street[0] + street[2], hn] = walk_key(int(street[2]), si, cols, lot)
            if lot >= n_lots:  # new builds past the mapped ones: addresses, no footprint
                ghosts.append((street, hn))
                continue
            if locale == "en" and rng.random() < 0.05:
                hn, number = f"{number}-{number + 2}", number + 2
                walk[street[0] + street[2], hn] = walk[street[0] + street[2], str(number - 2)]
            v0 = 6.0 if side > 0 else -6.0 - d
            cx = ox + u * math.cos(ang) - v0 * math.sin(ang)
            cy = oy + u * math.sin(ang) + v0 * math.cos(ang)
            compound = locale == "zh" and rng.random() < 0.5  # several 号楼 behind one number
            blocks = [str(b) for b in range(1, rng.randint(2, 5))] if compound else [""]
            for bi, block in enumerate(blocks):
                fid += 1
                geom = _footprint(rng, cx + bi * 0.0, cy + bi * (d + 4) * side, ang, w, d)
                if locale == "en" and rng.random() < 0.05:  # house + detached garage, one way
                    g2 = _footprint(rng, cx + w + 1.5, cy, ang, 4, 5)
                    geom = {"type": "MultiPolygon", "coordinates": [geom["coordinates"], g2["coordinates"]]}
                tags: dict[str, str] = {"building": "yes" if locale == "en" else "residential"}
                tags["addr:street"] = street[0]
                tags["addr:housenumber"] = hn if locale == "en" else f"{hn}号"
                if block:
                    tags["name"] = f"{block}号楼"
                if locale == "en":
                    tags["addr:city"], tags["addr:postcode"] = EN_TOWNS[int(street[2])]
                feats.append({"type": "Feature", "id": f"way/{fid}",
                              "properties": {"@id": f"way/{fid}", **tags}, "geometry": geom})
                addressed.append((f"way/{fid}", tags, street, hn, block))
                made += 1
            if rng.random() < sheds:  # an unaddressed shed behind the house
                fid += 1
                feats.append({"type": "Feature", "id": f"way/{fid}",
                              "properties": {"@id": f"way/{fid}", "building": "shed"},
                              "geometry": _footprint(rng, cx + 2, cy + (d + 3) * side, ang, 3, 3)})
            u += w + rng.uniform(1, 5) if side < 0 else 0
    rows: list[dict[str, str]] = []
    truth: dict[str, str | None] = {}
    what: dict[str, str] = {}
    targets: list[tuple[str | None, tuple[str, str, str], str, str]] = []
    for bid, _tags, street, hn, block in addressed:
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 4)):  # flats: several stops
            targets.append((bid, street, hn, block))
    n_ghost = int(round(len(targets) * no_building / (1 - no_building)))
    rng.shuffle(ghosts)
    for street, hn in ghosts[:n_ghost]:
        targets.append((None, street, hn, ""))
    rng.shuffle(targets)
    by_id = {f["id"]: f for f in feats}
    by_street: dict[str, list[tuple[str, str]]] = {}
    for bid, _t, street, hn, _b in addressed:
        by_street.setdefault(street[0] + street[2], []).append((hn, bid))
    route_rng = random.Random(seed * 7 + 3)  # the walk order and the geocoder's town: not the texts'
    for k, (bid, street, hn, block) in enumerate(targets):
        sid = f"S{k + 1:05d}"
        text, done = (_perturb_en if locale == "en" else _perturb_zh)(rng, street, hn, block)
        row = {"stop_id": sid, "seq": "", "name": f"Resident {k + 1}", "address": text,
               "items": " ".join(s10(p, f"{seed % 100:02d}{2 * k + j:06d}") for j, p in
                                 enumerate(("RR", "CP")[: rng.randint(1, 2)]))}
        if rng.random() < geocoded:
            twin = by_street.get(street[0] + ("1" if street[2] == "0" else "0"))
            if twin and "city" not in done and route_rng.random() < 0.5:
                bid_geocoded, done = nearest_number(twin, hn), done + ["geocode in the other town"]
            else:
                bid_geocoded = bid
            row.update(_prior(rng, by_id.get(bid_geocoded) if bid_geocoded else None, feats[0]))
        rows.append(row)
        truth[sid] = bid
        what[sid] = ",".join(done)
    keys = [walk[street[0] + street[2], hn] for _, street, hn, _ in targets]
    rows = in_walk_order(route_rng, rows, keys)
    return Town({"type": "FeatureCollection", "generator": "sim.address_town", "features": feats},
                rows, truth, what)


def nearest_number(street: list[tuple[str, str]], hn: str) -> str:
    """The building a geocoder puts a number on when it picked this street (of a name in two towns):
    the number's own, else the nearest number's (it interpolates along the street)."""
    want = int(re.match(r"\d+", hn).group())  # type: ignore[union-attr]
    return min(street, key=lambda t: abs(int(re.match(r"\d+", t[0]).group()) - want))[1]  # type: ignore[union-attr]


def walk_key(town: int, si: int, cols: int, lot: int) -> tuple[int, int, int, int]:
    """Where a route walks a lot: town by town, the street grid column by column (down one, up the
    next), each street lot after lot, up one street and down the next beside it."""
    row, col = divmod(si, cols)
    return town, col, -row if col % 2 else row, -lot if (row + col) % 2 else lot


def in_walk_order(rng: random.Random, rows: list[dict[str, str]], keys: list[tuple]) -> list[dict[str, str]]:
    """The rows in the order a depot's list has them, seq 1, 2, 3...: routes of ROUTE_ROWS rows cut
    from the walk (a cut falls anywhere, mid-street or between towns), the routes in any order; in a
    route, one row in five a few places off (the carrier's own order), and 2% of all rows anywhere
    in the list (late additions, a stop filed under another route)."""
    order = sorted(range(len(rows)), key=lambda i: (keys[i], rng.random()))  # flats in any order
    routes = [order[i:i + ROUTE_ROWS] for i in range(0, len(order), ROUTE_ROWS)]
    rng.shuffle(routes)
    place = {i: float(k) + (rng.uniform(-3, 3) if rng.random() < 0.2 else 0.0)
             for k, i in enumerate(i for r in routes for i in r)}
    for i in place:
        if rng.random() < 0.02:
            place[i] = rng.uniform(-1, len(rows))
    out = []
    for k, i in enumerate(sorted(place, key=place.__getitem__)):
        out.append({**rows[i], "seq": str(k + 1)})
    return out


def _prior(rng: random.Random, ref: dict | None, fallback: dict) -> dict[str, str]:
    """A prior geocode of unknown quality: near the building, or anywhere for a new build."""
    ring = (ref or fallback)["geometry"]["coordinates"][0]
    if isinstance(ring[0][0], list):
        ring = ring[0]
    lon, lat = ring[0]
    err = rng.choice([5, 10, 20, 40, 150])
    a = rng.uniform(0, 2 * math.pi)
    return {"lat": f"{lat + err * math.sin(a) * M_LAT:.6f}", "lon": f"{lon + err * math.cos(a) * M_LON:.6f}"}


def _typo(rng: random.Random, s: str) -> str:
    if len(s) < 5:
        return s
    i = rng.randrange(1, len(s) - 1)
    op = rng.random()
    if op < 0.3:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]  # transposed letters
    if op < 0.55:
        return s[:i] + s[i + 1:]  # a letter dropped
    if op < 0.8:
        return s[:i] + rng.choice("aeiourstnl") + s[i + 1:]  # a letter wrong
    return s[:i] + s[i] + s[i:]  # a letter doubled


def _perturb_en(rng: random.Random, street: tuple[str, str, str], hn: str,
                block: str) -> tuple[str, list[str]]:
    done: list[str] = []
    long, short, town = street
    name = long if rng.random() < 0.5 else short
    if rng.random() < 0.15:
        words = name.split()
        dirs = {d for pair in EN_DIRS for d in pair}
        i = 1 if words[0] in dirs else 0
        words[i] = _typo(rng, words[i])
        name, done = " ".join(words), done + ["typo"]
    if rng.random() < 0.08 and len(name.split()) > 1:
        name = " ".join(name.split()[:-1])  # no street type
        done.append("no type")
    if "-" in hn and rng.random() < 0.6:
        hn = rng.choice(hn.split("-"))
        done.append("one end of the range")
    if rng.random() < 0.2:
        name = re.sub(r"\b(St|Ave|Rd|Dr|Ln|N|S|E|W)\b", r"\1.", name)
        done.append("punctuation")
    text = f"{name} {hn}" if rng.random() < 0.07 else f"{hn} {name}"
    if text.startswith(name):
        done.append("number after")
    if rng.random() < 0.3:
        unit = rng.choice(["Apt 3", "#2", "Unit B", "flat 4", "Apt. 12", "Suite 200"])
        text, done = (f"{unit}, {text}" if rng.random() < 0.2 else f"{text} {unit}"), done + ["unit"]
    if rng.random() < 0.3:
        city, zipc = EN_TOWNS[int(town)]
        text += rng.choice([f", {city}", f", {city} CO {zipc}", f" {zipc}"])
        done.append("city")
    r = rng.random()
    if r < 0.15:
        text, done = text.lower(), done + ["lower"]
    elif r < 0.22:
        text, done = text.upper(), done + ["upper"]
    return text, done


def _perturb_zh(rng: random.Random, street: tuple[str, str, str], hn: str,
                block: str) -> tuple[str, list[str]]:
    done: list[str] = []
    road = street[0]
    sounds_alike = [i for i, ch in enumerate(road[:-1]) if ch in ZH_HOMOPHONES]
    if sounds_alike and rng.random() < 0.1:
        i = rng.choice(sounds_alike)
        road = road[:i] + ZH_HOMOPHONES[road[i]] + road[i + 1:]
        done.append("homophone")
    if rng.random() < 0.06 and road[-1] in "路街巷":
        road, done = road[:-1], done + ["no type"]
    text = road + f"{hn}号"
    if block:
        b = block
        if rng.random() < 0.15:
            b, done = "".join(CN_DIGIT[int(c)] for c in b), done + ["chinese numeral"]
        text += b + rng.choice(["号楼", "号楼", "栋", "幢"])
    if rng.random() < 0.6:
        text += f"{rng.randint(1, 4)}单元{rng.randint(1, 18)}{rng.randint(1, 4):02d}" + rng.choice(["室", ""])
        done.append("unit")
    if rng.random() < 0.4:
        text, done = rng.choice(ZH_PREFIX) + text, done + ["admin prefix"]
    if rng.random() < 0.1:
        text = text.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        done.append("full-width")
    if rng.random() < 0.1:
        text, done = text + " 100020", done + ["postcode"]
    return text, done


def write(town: Town, folder: str | Path) -> tuple[Path, Path]:
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fp, csv_path = folder / "buildings.geojson", folder / "addresses.csv"
    fp.write_text(json.dumps(town.footprints, ensure_ascii=False))
    with csv_path.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=["stop_id", "seq", "name", "address", "items", "lat", "lon"])
        w.writeheader()
        for row in town.rows:
            w.writerow(row)
    return csv_path, fp


def main(argv: list[str] | None = None) -> int:
    """`python -m sim.address_town OUT_DIR [--locale zh] [--buildings N] [--seed S]`: a town to
    try `depot route build` on (OUT_DIR/addresses.csv and OUT_DIR/buildings.geojson)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sim.address_town", description=main.__doc__)
    ap.add_argument("out", metavar="OUT_DIR")
    ap.add_argument("--locale", choices=("en", "zh"), default="en")
    ap.add_argument("--buildings", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    town = generate(args.seed, args.buildings, args.locale)
    csv_path, fp = write(town, args.out)
    print(f"{csv_path}: {len(town.rows)} addresses; {fp}: {len(town.footprints['features'])} footprints")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
