"""Address parsing and normalisation for `depot route build`, in two locales.

`en`: house number + street, as OSM tags it in most of the world. usaddress labels the tokens;
this module turns them into a comparable key: lower case, no punctuation, street types and
directionals in one spelling (Street/St/St. -> st, Southeast/SE -> se), units (Apt 3, #2, Unit B,
flat 4) set aside since flats share their building, a number written after the street moved in
front, ranges (12-14) kept with both ends.

`zh` (road + lane + 号 + 号楼 + 单元 + room) is taken apart in host_tools/address_zh.py.
"""

from __future__ import annotations

import functools
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
    lane: str = ""  # zh: the lane (弄) number, part of the street
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


def misspelt_ordinals(core: str) -> str:
    """A name with a typo in a spelled-out ordinal, as its number ('eifhth' -> '8th'): the index
    keeps ordinals as numbers, so a fuzzy search over names never sees the word."""
    from rapidfuzz.distance import OSA

    words = core.split()
    for k, w in enumerate(words):
        if len(w) >= 5 and w.isalpha() and w not in NAME_WORD:
            near = [o for o in _ORDINALS if OSA.distance(w, o, score_cutoff=1) <= 1]
            if len(near) == 1:
                words[k] = NAME_WORD[near[0]]
    return " ".join(words)
NAME_WORD.update({"saint": "st", "mount": "mt", "fort": "ft"})  # name words, not street types
UNIT_WORDS = r"apartment|apt|unit|flat|suite|ste|floor|fl|room|rm|bldg|lot|#"  # longest first
_UNIT_RE = re.compile(rf"(?:^|[\s,])(?:{UNIT_WORDS})\.?\s*#?\s*([0-9a-z][0-9a-z-]*)\b", re.I)
_NUMBER_RE = re.compile(r"^\d+[a-z]?(?:\s*[-–/;]\s*\d+[a-z]?)?$", re.I)
_NUMBER_FIRST = re.compile(r"^\s*(\d+[a-z]?(?:\s*-\s*\d+[a-z]?)?)\s+(\D.*?)\s*$", re.I)
_NUMBER_LAST = re.compile(r"^\s*(\D.*?)\s+(\d+[a-z]?)\s*$", re.I)
_POSTCODE_RE = re.compile(r"\b(\d{5})(?:-\d{4})?\s*$")
_PUNCT = re.compile(r"[^\w\s#-]+")

_NAME_LABELS = ("StreetNamePreModifier", "StreetNamePreType", "StreetName")
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"})
_RANGE = re.compile(r"(?<![\w-])(\d+[a-z]?)\s*-\s*(\d+[a-z]?)(?![\w-])", re.I)  # "12 - 14" is 12-14
_DOTTED_DIR = re.compile(r"\b([NS])\.\s?([EW])\b\.?", re.I)  # S.E. is SE, not S and E
_REMARK = re.compile(r"\s*\([^()]*\)")  # "(side entrance)": a note for the carrier
_HALF = re.compile(r"\b(\d+)(?:\s+1\s*/\s*2|\s*1\u20442|\s*\u00bd)(?!\d)")  # 12 1/2 is an address of its own
_CARE_OF = re.compile(r"^\s*(?:c/o|attn\.?:?)\s[^,]*,\s*", re.I)  # a person's name, not a place
_PO_BOX = re.compile(r"[\s,]*\b(?:p\.?\s?o\.?\s?box|pob|post\s+office\s+box)\s*#?\s*\d+\b\.?", re.I)
_US = r"u\.?\s?s\.?(?:\s?a\.?)?|united\s+states(?:\s+of\s+america)?"
_COUNTRY = re.compile(rf"(?:[\s,]+(?:{_US})|\s*,\s*(?:canada|u\.?k\.?|united\s+kingdom|great\s+britain|"
                      r"england|scotland|wales|ireland|australia|new\s+zealand))\s*$", re.I)


def clean_en(text: str) -> str:
    """What is not the building's address, taken off: a care-of name in front, a PO box, a country
    at the end; dashes of every kind as '-', a range's spaces closed, dotted compass points joined."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).strip()
    text = _HALF.sub("\\1\u00bd", _REMARK.sub("", text))
    text = _CARE_OF.sub("", text)
    text = _PO_BOX.sub("", text)
    text = _COUNTRY.sub("", text).strip(" ,")
    text = _RANGE.sub(r"\1-\2", text)
    return _DOTTED_DIR.sub(r"\1\2", text)


@functools.lru_cache(maxsize=65536)  # towns and streets recur across thousands of footprints
def fold(s: str) -> str:
    """Lower case, NFKC, punctuation as spaces, single spaces: how en names are compared."""
    return " ".join(_PUNCT.sub(" ", unicodedata.normalize("NFKC", s)).lower().split())


@functools.lru_cache(maxsize=65536)
def house_numbers(raw: str) -> tuple[str, ...]:
    """'12-14' -> ('12-14', '12', '14'); '12B' -> ('12b',); '12 ; 14' -> ('12-14', '12', '14')."""
    s = _HALF.sub("\\1\u00bd", unicodedata.normalize("NFKC", raw).translate(_DASHES))  # after NFKC: ½ is 1⁄2
    s = re.sub(r"\s+", "", s.lower()).rstrip("号")
    parts = [p for p in re.split(r"[-–/;,]", s) if p]
    if not parts or not all(re.fullmatch(r"\d+[a-z]?", p) for p in parts):
        return (s,) if s else ()
    if len(parts) == 1:
        return (parts[0],)
    values = [int(p[:-1] if p[-1].isalpha() else p) for p in parts]
    if values != sorted(values) or values[-1] - values[0] > 50:  # 121/2 is not 2 to 121
        return (s,)
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
    text = clean_en(address)
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


def parse(address: str, locale: str, places: frozenset[str] = frozenset()) -> Parsed:
    """`places`: en, the towns the footprints name; zh, the roads they name."""
    if locale == "zh":
        from host_tools.address_zh import parse_zh

        return parse_zh(address, places)
    return parse_en(address, places)
