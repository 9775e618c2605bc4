"""Chinese addresses for `depot route build --locale zh`: road + (lane 弄) + 号 + 号楼 + 单元 + room.

The parts are found by their markers, not by their order, because lists write them in both orders
("长乐路120弄3号", "3号 长乐路120弄", "3号楼 长乐路 120号"). The text is folded first: NFKC
(full-width digits), traditional forms (號 -> 号), Chinese numerals before a marker (十二号 -> 12号),
a space between two numbers kept as a boundary (a missing 号: "人民路12 3单元"). jionlp strips an
administrative prefix (省, 市, 区) the footprints' road names do not explain; pypinyin gives each
road a sound key, because most typos in Chinese addresses are homophones typed through pinyin.

A lane (弄) is part of the street: "长乐路120弄3号" is house 3 of lane 120 off 长乐路, never
"长乐路120号". OSM tags a lane's houses either `addr:street` 长乐路120弄 + `addr:housenumber` 3号,
or `addr:street` 长乐路 + `addr:housenumber` 120弄3号; both read as the same street key here.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import unicodedata

from host_tools.address import Parsed, house_numbers

ROAD_SUFFIXES = ("大道", "大街", "胡同", "路", "街", "道", "巷", "弄", "里")
_TRADITIONAL = str.maketrans({"號": "号", "棟": "栋", "樓": "楼", "單": "单", "區": "区", "縣": "县",
                              "臺": "台", "–": "-", "—": "-", "~": "-", "至": "-"})
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_MARKERS = "号楼|号院|号|弄|栋|幢|座|#楼|#|单元|室|层|楼"
# Chinese numerals as a number: before a marker, or alone between boundaries ("路 四 3栋": 号 left
# out), never inside a word before a boundary (张三 is a name)
_NUMERALS = "[零〇一二两三四五六七八九十百千]+"
_CN_NUM = re.compile(rf"{_NUMERALS}(?={_MARKERS})|(?:(?<=\|)|(?<=[路街道巷弄里之])){_NUMERALS}(?=\||$)")
_PART = re.compile(rf"(\d+(?:-\d+|之\d+)?[a-z]?|(?<![a-z])[a-z](?=座|栋|幢|号楼))({_MARKERS})?", re.I)
_BLOCK = ("号楼", "栋", "幢", "座", "#楼", "#")
_ADMIN = re.compile(r"(省|自治区|市|区|县|旗|镇|乡|街道)")
_ADMIN_PREFIX = re.compile(r"^.*(?:省|自治区|市|区|县)")
_COUNTRY = re.compile(r"^(?:中华人民共和国|中国)")


def _cn_number(s: str) -> str:
    """Chinese numerals below 10,000 -> digits ('十二' -> '12', '三' -> '3', '一百零五' -> '105');
    written digit by digit too ('一二〇' -> '120')."""
    if not any(ch in "十百千" for ch in s):
        return "".join(str(_CN_DIGITS[ch]) for ch in s)
    total, cur = 0, 0
    for ch in s:
        if ch in "十百千":
            total, cur = total + (cur or 1) * {"十": 10, "百": 100, "千": 1000}[ch], 0
        else:
            cur = cur * 10 + _CN_DIGITS[ch]
    return str(total + cur)


def fold(s: str) -> str:
    """How zh addresses are compared: NFKC, 號 -> 号, numerals as digits, no spaces or punctuation;
    a space between two numbers stays as '|' (it is all that separates them when 号 is left out)."""
    s = unicodedata.normalize("NFKC", s).translate(_TRADITIONAL).lower()
    s = re.sub(r"[\s,，、。·()（）:：]+", "|", s)
    s = _CN_NUM.sub(lambda m: _cn_number(m.group(0)), s)
    s = re.sub(r"第(?=\d)", "", s)  # 第12号 is 12号
    s = re.sub(r"(\d+)号之(\d+)", r"\1之\2号", s)  # 120号之一 is a number of its own, not 120
    s = re.sub(r"(?<!\d)\|+|\|+(?!\d)", "", s)  # a boundary matters only between two numbers
    return s.strip("|")


@functools.lru_cache(maxsize=1)
def _jionlp():
    with contextlib.redirect_stdout(io.StringIO()):  # it greets on stdout when imported
        import jionlp
    return jionlp


@functools.lru_cache(maxsize=65536)
def strip_admin(head: str, known: frozenset[str]) -> tuple[str, str]:
    """The administrative prefix off a road: ('北京市朝阳区建国路' -> ('建国路', '北京市朝阳区')).
    A road the footprints know is found by its longest known ending; otherwise jionlp decides."""
    for k in range(len(head) - 1):
        if head[k:] in known:
            return head[k:], head[:k]
    country = _COUNTRY.match(head)
    if country:
        detail, place = strip_admin(head[country.end():], known)
        return detail, head[: country.end()] + place
    if not _ADMIN.search(head[:-1]):
        return head, ""
    with contextlib.redirect_stdout(io.StringIO()):
        detail = _jionlp().parse_location(head).get("detail") or ""
    if len(detail) <= 2 and detail in ROAD_SUFFIXES or not head.endswith(detail):
        # jionlp took a road named like a district (朝阳巷): cut at the last explicit marker only
        m = _ADMIN_PREFIX.match(head[:-1])
        detail = head[m.end():] if m else head
    return detail, head[: len(head) - len(detail)]


@functools.lru_cache(maxsize=65536)
def road_key(road: str) -> tuple[str, str, str, str]:
    """(full, core, suffix, pinyin of the core): '中山路' -> ('中山路', '中山', '路', 'zhongshan')."""
    from pypinyin import lazy_pinyin

    suffix = next((s for s in ROAD_SUFFIXES if road.endswith(s) and len(road) > len(s)), "")
    core = road[: len(road) - len(suffix)]
    return road, core, suffix, "".join(lazy_pinyin(core))


def parse_zh(address: str, known: frozenset[str] = frozenset(), admin: bool = True) -> Parsed:
    """A Chinese address -> Parsed. `known`: the roads the footprints name, which find the road
    behind an administrative prefix without a parser. `admin=False` for OSM tags (no prefix)."""
    text = fold(address)
    postcode = ""
    pm = re.search(r"(?:邮编|邮政编码)?\|?(?<!\d)(\d{6})$", text)
    if pm and pm.start() > 0:
        postcode, text = pm.group(1), text[: pm.start()].rstrip("|")
    lane = house = block = unit = room = ""
    runs: list[str] = []
    pos = 0
    for m in _PART.finditer(text):
        after_road = bool(text[pos:m.start()].strip("|"))
        if after_road:
            runs.append(text[pos:m.start()].strip("|"))
        pos = m.end()
        num, marker = m.group(1), m.group(2) or ""
        if marker == "弄" and not lane:
            lane = num
        elif marker in ("号", "号院") and not house:
            house = num
        elif marker in _BLOCK or (marker == "号" and not block):
            block = block or num
        elif marker == "单元":
            unit = unit or num
        elif not marker and not house and (after_road or not (block or unit or room)):
            house = num  # 号 left out
        elif marker == "室" or not marker:
            room = room or num  # 1#1803: the room of building 1
    runs.append(text[pos:].strip("|"))
    if lane and not house and block:  # inside a lane the house is often called 号楼
        house, block = block, ""
    road, place = "", ""
    for run in (r for r in runs if r):
        found, before = strip_admin(run, known) if admin else (run, "")
        if found and (found in known or found.endswith(ROAD_SUFFIXES) or not road):
            road, place = found, place + before
            if found in known or found.endswith(ROAD_SUFFIXES):
                break
        else:
            place += run
    if not road:
        return Parsed(street="", core="")
    full, core, suffix, sound = road_key(road)
    return Parsed(street=full + (f"{lane}弄" if lane else ""), core=core, street_type=suffix,
                  numbers=house_numbers(house) if house else (), building=block,
                  unit="-".join(x for x in (unit, room) if x), place=place, postcode=postcode,
                  sound=sound, lane=lane)


def zh_tags(tags: dict) -> Parsed:
    """An OSM building's address in China, its parts as a list's would be: street + housenumber
    (`长乐路` + `120弄3号`, `长乐路120弄` + `3号`, `建国路` + `88号3号楼`), and a `name` `3号楼`."""
    hn = str(tags.get("addr:housenumber", ""))
    name = str(tags.get("name", ""))
    p = parse_zh(f"{tags.get('addr:street') or tags.get('addr:place') or ''}|{hn}", admin=False)
    if p.numbers and not p.building and re.fullmatch(r"(?:\d+|[a-z])(?:号楼|栋|幢|座)", fold(name)):
        p = parse_zh(f"{tags.get('addr:street') or tags.get('addr:place') or ''}|{hn}|{name}", admin=False)
    return p
