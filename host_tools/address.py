"""Address parsing and normalisation for `depot route build`, in two locales.

`en`: house number + street, as OSM tags it in most of the world. usaddress labels the tokens;
this module turns them into a comparable key: lower case, no punctuation, street types and
directionals in one spelling (Street/St/St. -> st, Southeast/SE -> se), units (Apt 3, #2, Unit B,
flat 4) set aside since flats share their building, a number written after the street moved in
front, ranges (12-14) kept with both ends.

`zh`: road + 号 + 号楼 + 单元 + room. jionlp strips the administrative prefix (省, 市, 区); a
regular expression takes the rest apart; pypinyin gives each road a sound key, because most typos
in Chinese addresses are homophones typed through a pinyin input method.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import unicodedata
from dataclasses import dataclass, field

import usaddress

LOCALES = ("en", "zh")


@dataclass(frozen=True)
class Parsed:
    """One address taken apart. `street` is the normalised full street ("n main st"), `core` the
    name alone ("main"); `numbers` the normalised house numbers, the written form first."""

    street: str
    core: str
    street_type: str = ""
    directions: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    building: str = ""  # zh 号楼; en never
    unit: str = ""  # Apt 3, #2, 单元 + room: shares the building
    place: str = ""  # city as written, normalised
    postcode: str = ""
    sound: str = ""  # zh: the road's pinyin; en: unused
    notes: list[str] = field(default_factory=list, compare=False, hash=False)

    @property
    def ok(self) -> bool:
        return bool(self.core and self.numbers)


# --- en -----------------------------------------------------------------------------------------

STREET_TYPES = {
    "st": ("street", "str"), "ave": ("avenue", "av", "aven"), "rd": ("road",), "dr": ("drive", "drv"),
    "ln": ("lane",), "blvd": ("boulevard", "boul"), "ct": ("court",), "pl": ("place",),
    "ter": ("terrace", "terr"), "way": ("wy",), "cir": ("circle",), "pkwy": ("parkway", "pky"),
    "hwy": ("highway",), "sq": ("square",), "cres": ("crescent",), "cl": ("close",),
    "trl": ("trail",), "row": (), "walk": (), "grv": ("grove",), "gdns": ("gardens",),
    "hl": ("hill",), "aly": ("alley",), "mews": (), "plz": ("plaza",),
}
TYPE_OF = {alias: canon for canon, aliases in STREET_TYPES.items() for alias in (canon, *aliases)}
DIRECTIONS = {
    "n": ("north",), "s": ("south",), "e": ("east",), "w": ("west",), "ne": ("northeast",),
    "nw": ("northwest",), "se": ("southeast",), "sw": ("southwest",),
}
DIRECTION_OF = {alias: canon for canon, aliases in DIRECTIONS.items() for alias in (canon, *aliases)}
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
             "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()


def _ordinal(k: int) -> str:
    return f"{k}th" if 11 <= k <= 13 else f"{k}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


NAME_WORD = {w: _ordinal(k) for k, w in enumerate(_ORDINALS, 1)}  # Fifth Avenue is 5th Ave
NAME_WORD.update({"saint": "st", "mount": "mt", "fort": "ft"})  # name words, not street types
UNIT_WORDS = r"apt|apartment|unit|flat|suite|ste|fl|floor|rm|room|bldg|#"
_UNIT_RE = re.compile(rf"(?:^|[\s,])(?:{UNIT_WORDS})\.?\s*#?\s*([0-9a-z][0-9a-z-]*)\b", re.I)
_NUMBER_RE = re.compile(r"^\d+[a-z]?(?:\s*[-–/;]\s*\d+[a-z]?)?$", re.I)
_NUMBER_FIRST = re.compile(r"^\s*(\d+[a-z]?(?:\s*-\s*\d+[a-z]?)?)\s+(\D.*?)\s*$", re.I)
_NUMBER_LAST = re.compile(r"^\s*(\D.*?)\s+(\d+[a-z]?)\s*$", re.I)
_POSTCODE_RE = re.compile(r"\b(\d{5})(?:-\d{4})?\s*$")
_PUNCT = re.compile(r"[^\w\s#-]+")

_NAME_LABELS = ("StreetNamePreModifier", "StreetNamePreType", "StreetName")


def fold(s: str) -> str:
    """Lower case, NFKC, punctuation as spaces, single spaces: how en names are compared."""
    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFKC", s)).lower().split())


@functools.lru_cache(maxsize=65536)
def house_numbers(raw: str) -> tuple[str, ...]:
    """'12-14' -> ('12-14', '12', '14'); '12B' -> ('12b',); '12 ; 14' -> ('12-14', '12', '14')."""
    s = re.sub(r"\s+", "", unicodedata.normalize("NFKC", raw).lower()).rstrip("号")
    parts = [p for p in re.split(r"[-–/;,]", s) if p]
    if not parts or not all(re.fullmatch(r"\d+[a-z]?", p) for p in parts):
        return (s,) if s else ()
    if len(parts) == 1:
        return (parts[0],)
    return ("-".join(parts), *parts)


def street_key(words: list[str]) -> tuple[str, str, str, tuple[str, ...]]:
    """Normalised (full, core, type, directions) of a street's words, in any spelling."""
    ws = [NAME_WORD.get(w, w) for w in fold(" ".join(words)).replace("-", " ").split() if w]
    dirs: list[str] = []
    typ = ""
    while ws and ws[0] in DIRECTION_OF and len(ws) > 1:
        dirs.append(DIRECTION_OF[ws.pop(0)])
    while ws and ws[-1] in DIRECTION_OF and len(ws) > 1:
        dirs.append(DIRECTION_OF[ws.pop()])
    if len(ws) > 1 and ws[-1] in TYPE_OF:
        typ = TYPE_OF[ws.pop()]
    if len(ws) == 1 and not typ and ws[0] in TYPE_OF:  # "North Street", "N St": the type is the name
        ws = [TYPE_OF[ws[0]]]
    core = " ".join(ws)
    full = " ".join([*dirs[:1], core, typ, *dirs[1:]]).replace("  ", " ").strip()
    return full, core, typ, tuple(dirs)


@functools.lru_cache(maxsize=65536)
def osm_street_en(street: str) -> tuple[str, str, str, tuple[str, ...]]:
    return street_key(street.split())


def parse_en(address: str, places: frozenset[str] = frozenset()) -> Parsed:
    """A free-text English-style address -> Parsed (an empty core when nothing usable is found).
    `places`: the towns the footprints name (folded), stripped off the end when appended."""
    notes: list[str] = []
    text = unicodedata.normalize("NFKC", address).strip()
    unit = ""
    m = _UNIT_RE.search(text)
    if m:
        unit = m.group(1).lower()
        text = (text[:m.start()] + " " + text[m.end():]).strip(" ,")
    postcode = ""
    pm = _POSTCODE_RE.search(text)
    if pm and not _NUMBER_RE.match(text.strip()):
        postcode = pm.group(1)
        text = text[:pm.start()].strip(" ,")
    place = ""
    if places:
        words = text.replace(",", " , ").split()
        if len(words) > 2 and re.fullmatch(r"[A-Z]{2}", words[-1]):  # state after the town
            words = words[:-1]
        for k in (3, 2, 1):
            if len(words) > k + 1 and fold(" ".join(words[-k:])) in places:
                place, text = fold(" ".join(words[-k:])), " ".join(words[:-k]).strip(" ,")
                break
    written_unit = unit
    tokens = usaddress.parse(text)
    labels = [lab for _, lab in tokens]
    if "AddressNumber" not in labels:  # "Main Street 12": usaddress calls the 12 a unit; move it
        for k, (tok, _) in enumerate(tokens):
            if k > 0 and _NUMBER_RE.match(tok.strip(",")):
                rest = [t for j, (t, _) in enumerate(tokens) if j != k]
                tokens = usaddress.parse(tok.strip(",") + " " + " ".join(rest))
                notes.append("number after the street")
                break
    numbers: tuple[str, ...] = ()
    first = ""  # the house number as usaddress split it off
    name_words: list[str] = []
    place_words: list[str] = []
    dirs_pre: list[str] = []
    dirs_post: list[str] = []
    typ_words: list[str] = []
    for tok, lab in tokens:
        tok = tok.strip(",")
        if not tok:
            continue
        if lab == "AddressNumber":  # "12 - 14" comes in two tokens
            first = f"{first}-{tok.lstrip('-')}" if first else tok
            numbers = house_numbers(first)
        elif lab in _NAME_LABELS:
            name_words.append(tok)
        elif lab == "StreetNamePreDirectional":
            dirs_pre.append(tok)
        elif lab == "StreetNamePostDirectional":
            dirs_post.append(tok)
        elif lab == "StreetNamePostType":
            typ_words.append(tok)
        elif lab == "PlaceName":
            place_words.append(tok)
        elif lab == "ZipCode" and not postcode:
            postcode = tok[:5]
        elif lab == "OccupancyIdentifier" and not unit:
            unit = tok.lstrip("#").strip().lower()
    if not numbers or not (name_words or typ_words):  # "5 Elm": too short for usaddress's model
        before, after = _NUMBER_FIRST.match(text), _NUMBER_LAST.match(text)
        found = (before.group(1), before.group(2)) if before else None
        found = found or ((after.group(2), after.group(1)) if after else None)
        if found:
            num, street = found
            numbers, name_words, typ_words, dirs_pre, dirs_post = house_numbers(num), [street], [], [], []
            unit = written_unit
    # street_key keeps a lone word as the name even when it looks like a street type
    full, core, typ, dirs = street_key(dirs_pre + name_words + typ_words + dirs_post)
    return Parsed(street=full, core=core, street_type=typ, directions=dirs, numbers=numbers,
                  unit=unit, place=place or fold(" ".join(place_words)), postcode=postcode, notes=notes)


# --- zh -----------------------------------------------------------------------------------------

ROAD_SUFFIXES = ("大道", "大街", "胡同", "路", "街", "道", "巷", "弄", "里")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_NUM = re.compile(r"[零〇一二两三四五六七八九十百]+(?=号楼|号|栋|幢|座|单元|室|层)")
_ADMIN = re.compile(r"(省|自治区|市|区|县|旗|镇|乡|街道)")
_ZH_RE = re.compile(
    r"^(?P<road>[^\d]+?)(?P<no>\d+(?:\s*[-–]\s*\d+)?[a-z]?)(?:号院|号)?"
    r"(?:(?P<bldg>\d+)(?:号楼|栋|幢|座|号))?"
    r"(?:(?P<unit>\d+)单元)?"
    r"(?:(?P<room>\d+)(?:室|号)?)?(?P<rest>.*)$", re.I)


def _cn_number(s: str) -> str:
    """Chinese numerals below 1,000 -> digits ('十二' -> '12', '三' -> '3', '一百零五' -> '105')."""
    total, cur = 0, 0
    for ch in s:
        if ch in "十百":
            total, cur = total + (cur or 1) * (10 if ch == "十" else 100), 0
        else:
            cur = cur * 10 + _CN_DIGITS[ch]
    return str(total + cur)


def _zh_fold(s: str) -> str:
    s = re.sub(r"[\s,，、。·()（）]+", "", unicodedata.normalize("NFKC", s))
    return _CN_NUM.sub(lambda m: _cn_number(m.group(0)), s)


@functools.lru_cache(maxsize=1)
def _jionlp():
    with contextlib.redirect_stdout(io.StringIO()):  # it greets on stdout when imported
        import jionlp
    return jionlp


_ADMIN_PREFIX = re.compile(r"^.*(?:省|自治区|市|区|县)")


@functools.lru_cache(maxsize=65536)
def _strip_admin(head: str, known: frozenset[str]) -> tuple[str, str]:
    """The administrative prefix off a road: ('北京市朝阳区建国路' -> ('建国路', '北京市朝阳区')).
    A road the footprints know is found by its longest known ending; otherwise jionlp decides."""
    for k in range(len(head) - 1):
        if head[k:] in known:
            return head[k:], head[:k]
    if not _ADMIN.search(head[:-1]):
        return head, ""
    with contextlib.redirect_stdout(io.StringIO()):
        detail = _jionlp().parse_location(head).get("detail") or head
    if len(detail) <= 2 and detail in ROAD_SUFFIXES or not head.endswith(detail):
        # jionlp took a road named like a district (朝阳巷): cut at the last explicit marker only
        m = _ADMIN_PREFIX.match(head[:-1])
        detail = head[m.end():] if m else head
    return detail, head[: len(head) - len(detail)]


@functools.lru_cache(maxsize=65536)
def road_key(road: str) -> tuple[str, str, str, str]:
    """(full, core, suffix, pinyin of the core): '中山路' -> ('中山路', '中山', '路', 'zhongshan')."""
    from pypinyin import lazy_pinyin

    road = _zh_fold(road)
    suffix = next((s for s in ROAD_SUFFIXES if road.endswith(s) and len(road) > len(s)), "")
    core = road[: len(road) - len(suffix)]
    return road, core, suffix, "".join(lazy_pinyin(core))


def parse_zh(address: str, known: frozenset[str] = frozenset()) -> Parsed:
    """A Chinese address -> Parsed. `known`: the roads the footprints name (full and bare), which
    find the road behind an administrative prefix without a parser."""
    text = _zh_fold(address)
    postcode = ""
    pm = re.search(r"(?:邮编|邮政编码)?[:：]?(?<!\d)(\d{6})$", text)
    if pm and pm.start() > 0 and not text[pm.start() - 1].isdigit():
        postcode, text = pm.group(1), text[: pm.start()]
    m = re.search(r"\d", text)
    if not m:
        return Parsed(street="", core="")
    head, place = _strip_admin(text[: m.start()], known)
    mm = _ZH_RE.match(head + text[m.start():])
    if not mm:
        return Parsed(street="", core="")
    full, core, suffix, sound = road_key(mm.group("road"))
    unit = "-".join(x for x in (mm.group("unit"), mm.group("room")) if x)
    return Parsed(street=full, core=core, street_type=suffix, numbers=house_numbers(mm.group("no")),
                  building=mm.group("bldg") or "", unit=unit, place=place, postcode=postcode,
                  sound=sound)


def zh_building_of(tags: dict) -> tuple[tuple[str, ...], str]:
    """An OSM building's (house numbers, 号楼) in China: '88号' + name '3号楼', or '88号3号楼'."""
    hn = _zh_fold(str(tags.get("addr:housenumber", "")))
    m = re.match(r"^(\d+(?:-\d+)?[a-z]?)(?:号院|号)?(?:(\d+)(?:号楼|栋|幢|座|号))?$", hn, re.I)
    if not m:
        return house_numbers(hn), ""
    bldg = m.group(2) or ""
    if not bldg:
        nm = re.match(r"^(\d+)(?:号楼|栋|幢|座)$", _zh_fold(str(tags.get("name", ""))))
        bldg = nm.group(1) if nm else ""
    return house_numbers(m.group(1)), bldg


def parse(address: str, locale: str, places: frozenset[str] = frozenset()) -> Parsed:
    """`places`: en, the towns the footprints name; zh, the roads they name."""
    return parse_zh(address, places) if locale == "zh" else parse_en(address, places)
