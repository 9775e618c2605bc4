"""A second town for the address matcher, in styles it was not tuned on (docs/address-matching.md,
"Second benchmark: held-out styles", written before the matcher was changed for it).

Its own street names (none shared with sim/address_town.py), its own tagging (ordinal and saint
streets, directionals after the name, Shanghai lanes 弄 tagged both ways OSM's Chinese data does)
and its own perturbations. Only the footprint shapes, the prior geocodes, the walk order (seq) and
the Town record come from sim/address_town.py. `generate(seed, buildings, locale)` returns a Town.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from sim import address_town as first
from sim.address_town import LAT0, LON0, M_LAT, M_LON, TOWN_EAST_M, Town, _footprint, _prior
from sim.town import s10

NAMES = ["Birch", "Dogwood", "Hemlock", "Tamarack", "Buckeye", "Catalpa", "Locust", "Sassafras",
         "Larkspur", "Goldenrod", "Thistle", "Clover", "Heather", "Primrose", "Bluebell", "Foxglove",
         "Yarrow", "Marigold", "Rosemary", "Hazel", "Adams", "Grant", "Pierce", "Tyler", "Hayes", "Polk",
         "Taylor", "Fillmore", "Buchanan", "Harrison", "Cleveland", "McKinley", "Roosevelt", "Coolidge",
         "Hoover", "Truman", "Kennedy", "Jackson", "Arthur", "Wilson"]
SAINTS = ["Paul", "Louis", "Charles", "James", "Joseph", "Francis", "Andrew", "Thomas"]
ORDINAL_WORDS = ["First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth",
                 "Tenth", "Eleventh", "Twelfth"]
TYPES = {"Street": ["St"], "Avenue": ["Ave", "Av."], "Road": ["Rd"], "Boulevard": ["Blvd"],
         "Drive": ["Dr"], "Place": ["Pl"], "Terrace": ["Ter"], "Parkway": ["Pkwy"], "Court": ["Ct"],
         "Lane": ["Ln"]}
DIRS = {"North": ["N", "N."], "South": ["S", "S."], "East": ["E", "E."], "West": ["W", "W."],
        "Northwest": ["NW", "N.W."], "Northeast": ["NE", "N.E."], "Southwest": ["SW", "S.W."],
        "Southeast": ["SE", "S.E."]}
TOWNS = [("Fairmont", "80520"), ("Westbury", "80524")]
UNITS = ["Apt #3", "Unit 3-B", "Ste. 210", "Apartment 4C", "# 5"]
DASHES = ["–", "—", " - ", " – "]
COUNTRIES = [", USA", ", United States", " US", ", U.S.A."]
KEYS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]

ZH_ROADS = ["长乐", "陕西南", "淮海中", "复兴西", "武康", "愚园", "巨鹿", "富民", "茂名南", "瑞金二",
            "岳阳", "泰安", "兴国", "湖南", "五原", "永福", "高安", "宛平", "安福", "常熟", "襄阳北",
            "汾阳", "桃江", "思南", "皋兰", "香山", "重庆南", "合肥", "顺昌", "济南", "黄陂南", "太仓",
            "马当", "绍兴", "建德", "嘉善", "陕西北", "新闸", "江宁", "昌平"]
ZH_PREFIXES = ["上海市黄浦区", "上海市", "徐汇区", "中国上海市静安区", "上海上海市黄浦区"]
ZH_BLOCK_WORDS = ["号楼", "栋", "幢", "座", "#楼"]
CN = "零一二三四五六七八九"


@dataclass
class EnStreet:
    pre: str
    name: str  # as tagged: "4th", "Fourth", "Saint Paul", "Birch"
    typ: str
    post: str
    kind: str  # ordinal, saint, plain
    town: int

    @property
    def tag(self) -> str:
        return " ".join(w for w in (self.pre, self.name, self.typ, self.post) if w)


def _en_streets(rng: random.Random, n: int) -> list[EnStreet]:
    out: list[EnStreet] = []
    seen: set[tuple[str, int]] = set()
    while len(out) < n:
        r = rng.random()
        typ = rng.choice(list(TYPES))
        if r < 0.15:
            k = rng.randrange(12)
            name, kind = (ORDINAL_WORDS[k] if rng.random() < 1 / 3 else _ordinal(k + 1)), "ordinal"
        elif r < 0.25:
            name, kind = "Saint " + rng.choice(SAINTS), "saint"
        else:
            name, kind = rng.choice(NAMES), "plain"
        d = rng.random()
        pre = rng.choice(list(DIRS)[:4]) if d < 0.15 else ""
        post = rng.choice(list(DIRS)[4:]) if 0.15 <= d < 0.3 else ""
        street = EnStreet(pre, name, typ, post, kind, 0)
        if (street.tag, 0) in seen:
            continue
        batch = [street]
        if kind == "saint" and rng.random() < 0.5:  # Paul Street beside Saint Paul Street
            batch.append(EnStreet(pre, name.split()[1], typ, post, "plain", 0))
        if rng.random() < 0.1:  # the same name in the neighbouring town
            batch.append(EnStreet(pre, name, typ, post, kind, 1))
        for s in batch:
            if (s.tag, s.town) not in seen:
                seen.add((s.tag, s.town))
                out.append(s)
    return out[:n]


def _ordinal(k: int) -> str:
    return f"{k}th" if 11 <= k <= 13 else f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _cn(n: int) -> str:
    """A whole number below 1,000 in Chinese numerals: 3 三, 12 十二, 120 一百二十, 105 一百零五."""
    if n < 10:
        return CN[n]
    if n < 20:
        return "十" + (CN[n % 10] if n % 10 else "")
    if n < 100:
        return CN[n // 10] + "十" + (CN[n % 10] if n % 10 else "")
    rest = n % 100
    if not rest:
        return CN[n // 100] + "百"
    tens = "零" + CN[rest] if rest < 10 else _cn(rest) if rest >= 20 else "一" + _cn(rest)  # 一百一十
    return CN[n // 100] + "百" + tens


def generate(seed: int = 1, buildings: int = 1200, locale: str = "en", no_building: float = 0.05,
             geocoded: float = 0.3) -> Town:
    rng = random.Random(seed * 7919 + 17)
    feats: list[dict] = []
    addressed: list[tuple[str, object, str, str, str]] = []  # id, street, number, lane, block
    ghosts: list[tuple[object, str, str]] = []
    walk: dict[tuple[str, int, str, str], tuple] = {}  # (street, town, number, lane) -> walk key
    fid = 60_000_000 + seed * 1_000_000

    def add(geom: dict, tags: dict[str, str]) -> str:
        nonlocal fid
        fid += 1
        feats.append({"type": "Feature", "id": f"way/{fid}", "properties": {"@id": f"way/{fid}", **tags},
                      "geometry": geom})
        return f"way/{fid}"

    lots = 20 if locale == "en" else 14
    streets: list = (_en_streets(rng, buildings // lots + 2) if locale == "en"
                     else [ZH_ROADS[i % len(ZH_ROADS)] + ("路", "街", "大道")[i // len(ZH_ROADS) % 3]
                           for i in range(buildings // 20 + 2)])
    cols = max(1, int(math.sqrt(len(streets))))
    made = 0
    for si, street in enumerate(streets):
        if made >= buildings:
            break
        town = street.town if isinstance(street, EnStreet) else 0
        name = street.tag if isinstance(street, EnStreet) else street
        ox, oy = (si % cols) * 900.0 + TOWN_EAST_M * town, (si // cols) * 160.0
        ang = math.radians(rng.uniform(-15, 15))
        c, s = math.cos(ang), math.sin(ang)

        def at(u: float, v: float) -> tuple[float, float]:
            return ox + u * c - v * s, oy + u * s + v * c  # noqa: B023

        def walked(town: int, lot: int, sub: int = 0) -> tuple:
            return (*first.walk_key(town, si, cols, lot), sub)  # noqa: B023

        if locale == "en":
            number = 10
            for lot in range(lots):
                number += 6 if rng.random() < 1 / 8 else 2
                hn = str(number)
                start = hn
                if rng.random() < 0.05:
                    hn, number = f"{number}-{number + 4}", number + 4
                x, y = at(lot * 18.0, 6.0)
                tags = {"building": "house", "addr:street": street.tag, "addr:housenumber": hn,
                        "addr:city": TOWNS[street.town][0], "addr:postcode": TOWNS[street.town][1]}
                geom = _footprint(rng, x, y, ang, rng.uniform(9, 14), rng.uniform(9, 13))
                addressed.append((add(geom, tags), street, hn, "", ""))
                walk[name, town, hn, ""] = walk[name, town, start, ""] = walked(town, lot)
                made += 1
            ghosts += [(street, str(number + 2 * k), "") for k in (1, 2)]
            walk.update({(name, town, str(number + 2 * k), ""): walked(town, lots + k)
                         for k in (1, 2)})
            continue
        lane_road = rng.random() < 0.4
        for lot in range(lots):
            hn = str(lot + 1)
            side = 1.0 if lot % 2 == 0 else -1.0
            u = (lot // 2) * 34.0
            if lane_road and lot % 3 == 2:  # a lane off the road, houses numbered inside it
                lane_style = rng.random() < 0.5
                for k in range(1, rng.randint(3, 7) + 1):
                    x, y = at(u, side * (8 + 16 * k))
                    tags = ({"addr:street": f"{street}{hn}弄", "addr:housenumber": f"{k}号"} if lane_style
                            else {"addr:street": street, "addr:housenumber": f"{hn}弄{k}号"})
                    bid = add(_footprint(rng, x, y, ang, 12, 10), {"building": "residential", **tags})
                    addressed.append((bid, street, str(k), hn, ""))
                    made += 1
                ghosts.append((street, str(k + 1), hn))
                walk.update({(name, 0, str(j), hn): walked(0, lot, j) for j in range(1, k + 2)})
                if rng.random() < 1 / 3:  # the road's own building with the lane's number
                    x, y = at(u + 14, side * 6)
                    bid = add(_footprint(rng, x, y, ang, 8, 6),
                              {"building": "retail", "addr:street": name, "addr:housenumber": f"{hn}号"})
                    addressed.append((bid, street, hn, "", ""))
                    made += 1
                walk[name, 0, hn, ""] = walked(0, lot)
                continue
            blocks = [str(b) for b in range(1, rng.randint(2, 4) + 1)] if rng.random() < 0.25 else [""]
            for bi, block in enumerate(blocks):
                x, y = at(u, side * (8 + 22 * bi))
                tags = {"building": "residential", "addr:street": street, "addr:housenumber": f"{hn}号"}
                if block:
                    tags["name"] = f"{block}号楼"
                addressed.append((add(_footprint(rng, x, y, ang, 20, 14), tags), street, hn, "", block))
                made += 1
            walk[name, 0, hn, ""] = walked(0, lot)
        ghosts += [(street, str(lots + k), "") for k in (1, 2)]
        walk.update({(name, 0, str(lots + k), ""): walked(0, lots + k) for k in (1, 2)})
    for k in range(len(feats) // 4):  # unaddressed outbuildings
        ring = feats[k * 4]["geometry"]["coordinates"][0]
        ring = ring[0] if isinstance(ring[0][0], list) else ring
        x, y = (ring[0][0] - LON0) / M_LON, (ring[0][1] - LAT0) / M_LAT
        add(_footprint(rng, x + 2, y - 20, 0.0, 3, 3), {"building": "shed"})
    targets: list[tuple[str | None, object, str, str, str]] = []
    for bid, street, hn, lane, block in addressed:
        for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
            targets.append((bid, street, hn, lane, block))
    rng.shuffle(ghosts)
    n_ghost = int(round(len(targets) * no_building / (1 - no_building)))
    targets += [(None, street, hn, lane, "") for street, hn, lane in (ghosts * 4)[:n_ghost]]
    rng.shuffle(targets)
    by_id = {f["id"]: f for f in feats}
    by_street: dict[tuple[str, int], list[tuple[str, str]]] = {}
    for bid, st, hn, _lane, _b in addressed:
        if isinstance(st, EnStreet):
            by_street.setdefault((st.tag, st.town), []).append((hn, bid))
    route_rng = random.Random(seed * 7 + 5)  # the walk order and the geocoder's town: not the texts'
    rows, truth, what = [], {}, {}
    for k, (bid, street, hn, lane, block) in enumerate(targets):
        sid = f"H{k + 1:05d}"
        if isinstance(street, EnStreet):
            text, done = perturb_en(rng, street, hn)
        else:
            text, done = perturb_zh(rng, str(street), hn, lane, block)
        row = {"stop_id": sid, "seq": str(k + 1), "name": f"Resident {k + 1}", "address": text,
               "items": s10("RR", f"{seed % 100:02d}{k:06d}")}
        if rng.random() < geocoded:
            twin = by_street.get((street.tag, 1 - street.town)) if isinstance(street, EnStreet) else None
            if twin and "city" not in done and route_rng.random() < 0.5:
                bid_geocoded, done = first.nearest_number(twin, hn), done + ["geocode in the other town"]
            else:
                bid_geocoded = bid
            row.update(_prior(rng, by_id.get(bid_geocoded) if bid_geocoded else None, feats[0]))
        rows.append(row)
        truth[sid] = bid
        what[sid] = ",".join(done)
    keys = [walk[(street.tag, street.town, hn, lane) if isinstance(street, EnStreet)
                 else (str(street), 0, hn, lane)] for _, street, hn, lane, _ in targets]
    rows = first.in_walk_order(route_rng, rows, keys)
    return Town({"type": "FeatureCollection", "generator": "sim.address_heldout", "features": feats},
                rows, truth, what)


def _neighbour_typo(rng: random.Random, word: str) -> str:
    spots = [i for i in range(1, len(word) - 1) if word[i].isalpha()]
    i = rng.choice(spots)
    row = next((r for r in KEYS if word[i].lower() in r), None)
    if row is None:
        return word
    j = row.index(word[i].lower())
    near = row[j - 1] if j and (j == len(row) - 1 or rng.random() < 0.5) else row[j + 1]
    return word[:i] + near + word[i + 1:]


def perturb_en(rng: random.Random, st: EnStreet, hn: str) -> tuple[str, list[str]]:
    done: list[str] = []
    pre, name, typ, post = st.pre, st.name, st.typ, st.post
    if rng.random() < 0.5:
        typ, done = rng.choice(TYPES[typ]), done + ["type abbreviated"]
    if (pre or post) and rng.random() < 0.6:
        pre, post = (rng.choice(DIRS[pre]) if pre else ""), (rng.choice(DIRS[post]) if post else "")
        done.append("direction abbreviated")
    if post and rng.random() < 0.1:
        pre, post, done = post, "", done + ["direction moved in front"]
    if st.kind == "ordinal" and rng.random() < 0.5:
        if name in ORDINAL_WORDS:
            name = _ordinal(ORDINAL_WORDS.index(name) + 1)
        else:
            name = ORDINAL_WORDS[int(name.rstrip("stndrh")) - 1]
        done.append("ordinal the other way")
    if st.kind == "saint" and rng.random() < 0.7:
        name, done = rng.choice(["St.", "St"]) + name[5:], done + ["saint abbreviated"]
    if rng.random() < 0.06 and len(name) >= 6 and name.isalpha():
        name, done = _neighbour_typo(rng, name), done + ["keyboard typo"]
    if "-" in hn and rng.random() < 0.5:
        hn, done = hn.replace("-", rng.choice(DASHES)), done + ["dash"]
    text = " ".join(w for w in (hn, pre, name, typ, post) if w)
    if rng.random() < 0.2:
        text += rng.choice([" ", ", "]) + rng.choice(UNITS)
        done.append("unit")
    if rng.random() < 0.05:
        text += rng.choice([", PO Box 123", ", P.O. Box 45", " POB 9"])
        done.append("po box")
    if rng.random() < 0.03:
        text, done = "c/o Smith, " + text, done + ["care of"]
    city, zipc = TOWNS[st.town]
    if rng.random() < 0.3:
        text += rng.choice([f", {city}, CO {zipc}", f", {city} Colorado", f" {city} CO", f", {zipc}"])
        done.append("city")
    if rng.random() < 0.15:
        text, done = text + rng.choice(COUNTRIES), done + ["country"]
    if rng.random() < 0.15:
        text, done = text.replace(" ", "  "), done + ["double spaces"]
    if rng.random() < 0.05:
        text, done = text.replace(",", " ,"), done + ["space before comma"]
    if rng.random() < 0.15:
        text, done = text.upper(), done + ["capitals"]
    return text, done


def perturb_zh(rng: random.Random, road: str, hn: str, lane: str, block: str) -> tuple[str, list[str]]:
    done: list[str] = []
    number_word = "号"
    if rng.random() < 0.08:
        number_word, done = "號", done + ["traditional 號"]
    numerals = rng.random() < 0.1
    if numerals:
        done.append("chinese numerals")

    def num(n: str) -> str:
        return _cn(int(n)) if numerals else n

    house = num(hn) + number_word
    if lane and rng.random() < 0.15:
        house, done = num(hn) + "号楼", done + ["lane house as 号楼"]
    if rng.random() < 0.1 and not house.endswith("号楼"):
        house, done = num(hn), done + ["no 号"]
    parts = [road + (num(lane) + "弄" if lane else ""), house]
    if block:
        parts.append(block + rng.choice(ZH_BLOCK_WORDS))
    if rng.random() < 0.5:
        floor = rng.randint(1, 9)
        parts.append(rng.choice([f"{floor}01室", f"{floor}楼{floor}01", f"{floor}层",
                                 f"{rng.randint(1, 3)}单元{floor}01室"]))
        done.append("floor or room")
    if rng.random() < 0.15:
        if lane:
            parts = [house, parts[0], *parts[2:]]
        elif block:
            parts = [parts[2], road, house, *parts[3:]]
        else:
            parts = [house, road, *parts[2:]]
        done.append("number before road")
    spaced = rng.random() < 0.2 or (house == num(hn) and parts.index(house) < len(parts) - 1)
    text = (" " if spaced else "").join(parts)
    if spaced:
        done.append("spaces")
    if rng.random() < 0.4:
        text, done = rng.choice(ZH_PREFIXES) + text, done + ["admin prefix"]
    if rng.random() < 0.1:
        text = text.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        done.append("full-width")
    if rng.random() < 0.08:
        text, done = text + rng.choice([" 200031", " 邮编200031"]), done + ["postcode"]
    return text, done
