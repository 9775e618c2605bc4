"""Scanned-code parser: what the serial scan engine sent -> the item identifier to match on the route.

Input is the engine's raw bytes: an optional AIM symbology identifier ("]C1" GS1-128, "]d2" GS1
DataMatrix, "]Q3" GS1 QR, "]e0" GS1 DataBar, ...), the data, and the CR/LF suffix (stripped here
if present). Recognised: UPU S10 with its check digit; GS1 element strings (FNC1 transmitted as GS,
0x1D) with AI 00 SSCC (mod-10 check), 420 and 421 ship-to postal codes, and the other common AIs
skipped by their known lengths; the route's own formats (scan_code_format.Format, a module the app
loads only for a route that has some). Anything else is refused with
an error code, a short message for the screen and a buzzer pattern: a refused code writes no
delivery. Runs on MicroPython and CPython.
"""

try:
    from micropython import const
except ImportError:  # CPython
    const = lambda x: x  # noqa: E731

KIND_S10 = "s10"
KIND_SSCC = "sscc"
KIND_GS1 = "gs1"

OK = const(0)
E_MISREAD = const(1)  # empty, control bytes, truncated element string: scan again
E_CHECK = const(2)  # well-formed but the check digit is wrong
E_UNKNOWN = const(3)  # readable, but no format this route knows
E_TOO_LONG = const(4)

# buzzer/LED pattern names the UI plays for each outcome
PATTERN_OK = "ok"
PATTERN_MISREAD = "misread"
PATTERN_INVALID = "invalid"
PATTERN_UNKNOWN = "unknown"
# indexed by the error code (OK, E_MISREAD, E_CHECK, E_UNKNOWN, E_TOO_LONG): a constant tuple, where
# a dict would be built in RAM at import
PATTERNS = (PATTERN_OK, PATTERN_MISREAD, PATTERN_INVALID, PATTERN_UNKNOWN, PATTERN_INVALID)
MESSAGES = ("", "Misread: scan again", "Bad check digit", "Unknown code", "Code too long")

MAX_RAW = const(160)  # longest scan accepted (a GS1 DataMatrix with several AIs)
MAX_ITEM = const(40)  # record.MAX_TEXT: an item id must fit the delivery record

_GS = "\x1d"
_GS1_AIM = ("C1", "d2", "Q3", "e0", "J1")  # symbologies whose data is a GS1 element string
_S10_W = (8, 6, 4, 2, 3, 5, 9, 7)

# GS1 AIs, one 15-character record each: AI or prefix (padded to 4), AI digits, min and max data
# length, numeric (1/0). A prefix shorter than the AI digits covers the whole family (e.g. "31" =
# 3100-3169). One str constant: it stays in ROM, where a tuple per AI is built in RAM at import.
_AIS = (
    "00   2 18 18 1|01   2 14 14 1|02   2 14 14 1|10   2 01 20 0|11   2 06 06 1|12   2 06 06 1|"
    "13   2 06 06 1|15   2 06 06 1|16   2 06 06 1|17   2 06 06 1|20   2 02 02 1|21   2 01 20 0|"
    "22   2 01 20 0|240  3 01 30 0|241  3 01 30 0|250  3 01 30 0|251  3 01 30 0|253  3 13 30 0|"
    "254  3 01 20 0|30   2 01 08 1|31   4 06 06 1|32   4 06 06 1|33   4 06 06 1|34   4 06 06 1|"
    "35   4 06 06 1|36   4 06 06 1|37   2 01 08 1|390  4 01 15 1|391  4 04 18 1|392  4 01 15 1|"
    "393  4 04 18 1|400  3 01 30 0|401  3 01 30 0|402  3 17 17 1|403  3 01 30 0|41   3 13 13 1|"
    "420  3 01 20 0|421  3 04 12 0|422  3 03 03 1|7001 4 13 13 1|8004 4 01 30 0|8005 4 06 06 1|"
    "8006 4 18 18 1|8018 4 18 18 1|8020 4 01 25 0|90   2 01 30 0|9    2 01 90 0|"
)
_AI_REC = const(15)
_FIXED = ("00", "01", "02", "03", "04", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20",
          "31", "32", "33", "34", "35", "36", "41")  # GS1's predefined-length prefixes


_IDENTITY = ("01", "02", "21", "253", "401", "402", "8004", "8006", "8018")


class Scan:
    """A parsed scan: `kind` ("s10", "sscc", "gs1" or a route format's name), `item_id` (what the
    route lists), `postal`/`country` when the code carries them, `ais` (GS1 AI -> value),
    `symbology` (the AIM id without "]"); or `error` != OK with `message` and `pattern`."""

    def __init__(self, kind="", item_id="", postal="", country="", symbology="", error=OK, ais=None):
        self.kind = kind
        self.item_id = item_id
        self.postal = postal
        self.country = country
        self.symbology = symbology
        self.error = error
        self.ais = ais or {}

    @property
    def ok(self):
        return self.error == OK

    @property
    def message(self):
        return MESSAGES[self.error]

    @property
    def pattern(self):
        return PATTERNS[self.error]

    def __repr__(self):
        if self.error:
            return "Scan(error=%d %r)" % (self.error, self.message)
        return "Scan(%s %r)" % (self.kind, self.item_id)


def _fail(code, sym=""):
    return Scan(symbology=sym, error=code)


def s10_check(serial):
    """UPU S10 check digit of the 8 serial digits (weights 8 6 4 2 3 5 9 7; 10 -> 0, 11 -> 5)."""
    total = 0
    for i in range(8):
        total += (ord(serial[i]) - 48) * _S10_W[i]
    c = 11 - total % 11
    return 0 if c == 10 else 5 if c == 11 else c


def mod10_check(digits):
    """GS1 check digit of `digits` (weights 3, 1, 3, ... from the right)."""
    total = 0
    w = 3
    for i in range(len(digits) - 1, -1, -1):
        total += (ord(digits[i]) - 48) * w
        w = 4 - w
    return (10 - total % 10) % 10


def _digits(s):
    for c in s:
        if c < "0" or c > "9":
            return False
    return len(s) > 0


def _upper(c):
    return "A" <= c <= "Z"


def _s10(data):
    """Scan, or None when `data` is not S10-shaped at all."""
    if len(data) != 13:
        return None
    d = data.upper()
    if not (_upper(d[0]) and _upper(d[1]) and _upper(d[11]) and _upper(d[12]) and _digits(d[2:11])):
        return None
    if s10_check(d[2:10]) != ord(d[10]) - 48:
        return _fail(E_CHECK)
    return Scan(KIND_S10, d, country=d[11:13])


def _ai_spec(s, i):
    """(AI digits, min data, max data, numeric) of the AI starting at s[i], or None."""
    t = _AIS
    k = 0
    while k < len(t):
        digits = ord(t[k + 5]) - 48
        if s.startswith(t[k:k + 4].rstrip(), i) and len(s) - i >= digits and _digits(s[i:i + digits]):
            return digits, int(t[k + 7:k + 9]), int(t[k + 10:k + 12]), t[k + 13] == "1"
        k += _AI_REC
    return None


def gs1(s, sym=""):
    """Parse a GS1 element string (GS as FNC1; a leading GS is allowed) into a Scan."""
    ais = {}
    i = 1 if s.startswith(_GS) else 0
    n = len(s)
    while i < n:
        spec = _ai_spec(s, i)
        if spec is None:
            return _fail(E_MISREAD if _digits(s[i:i + 2]) else E_UNKNOWN, sym)
        ai = s[i:i + spec[0]]
        i += spec[0]
        if s[i - spec[0]:i - spec[0] + 2] in _FIXED:
            end = i + spec[2]
            if end > n:
                return _fail(E_MISREAD, sym)  # truncated fixed-length field
        else:
            end = s.find(_GS, i)
            if end < 0:
                end = n
        val = s[i:end]
        if len(val) < spec[1]:
            return _fail(E_MISREAD, sym)
        if len(val) > spec[2]:
            return _fail(E_TOO_LONG, sym)
        if spec[3] and not _digits(val):
            return _fail(E_MISREAD, sym)
        if ai in ("00", "01", "02", "402", "410", "411", "412", "413", "414", "415", "416", "417",
                  "8006", "8018") and mod10_check(val[:-1] if ai != "8006" else val[:13]) \
                != ord(val[-1] if ai != "8006" else val[13]) - 48:
            return _fail(E_CHECK, sym)
        if ai == "421" and not _digits(val[:3]):
            return _fail(E_MISREAD, sym)
        ais[ai] = val
        i = end + 1 if end < n and s[end] == _GS else end
    if not ais:
        return _fail(E_MISREAD, sym)
    postal = country = ""
    if "421" in ais:
        country, postal = ais["421"][:3], ais["421"][3:]
    elif "420" in ais:
        postal = ais["420"]
    if "00" in ais:
        kind, item = KIND_SSCC, ais["00"]
    else:
        # the AIs that identify one thing, as a compact element string ("01...21..."); batch,
        # dates or a postal code alone name no parcel
        item = ""
        for k in _IDENTITY:
            if k in ais:
                item += k + ais[k]
        kind = KIND_GS1
        if not item:
            return Scan(symbology=sym, error=E_UNKNOWN, ais=ais)
    if len(item) > MAX_ITEM:
        return _fail(E_TOO_LONG, sym)
    return Scan(kind, item, postal, country, sym, OK, ais)


def parse(raw, formats=()):
    """Parse one scan (bytes/bytearray/memoryview/str, CR/LF suffix allowed) into a Scan;
    `formats` are the route's own scan_code_format.Format objects, tried after S10 and GS1."""
    if len(raw) > MAX_RAW + 2:
        return _fail(E_TOO_LONG)
    if not isinstance(raw, str):
        for b in bytes(raw):
            if b > 126:
                return _fail(E_MISREAD)  # not ASCII: a misread or a scanner in the wrong mode
        raw = bytes(raw).decode()
    s = raw.rstrip("\r\n")
    sym = ""
    if s.startswith("]") and len(s) >= 3:
        sym = s[1:3]
        s = s[3:]
    if not s:
        return _fail(E_MISREAD, sym)
    for c in s:
        if c < " " and c != _GS:
            return _fail(E_MISREAD, sym)
    if len(s) > MAX_RAW:
        return _fail(E_TOO_LONG, sym)
    if sym in _GS1_AIM or s.startswith(_GS):
        return gs1(s, sym)
    if s.startswith("(") and ")" in s:  # human-readable "(00)...(420)...": keyed in or a test
        return _hri(s, sym)
    s10 = _s10(s)
    if s10 is not None and s10.ok:
        s10.symbology = sym
        return s10
    for f in formats:  # after a failed S10 check too: a route's own format may share its shape
        r = f.match(s)
        if r is not None:
            r.symbology = sym
            return r
    if s10 is not None:
        s10.symbology = sym
        return s10
    if len(s) == 20 and s.startswith("00") and _digits(s):
        return gs1(s, sym)  # an SSCC from an engine not set to send AIM ids
    if len(s) > MAX_ITEM:
        return _fail(E_TOO_LONG, sym)
    return _fail(E_UNKNOWN, sym)


def _hri(s, sym):
    out = ""
    i = 0
    while i < len(s):
        if s[i] != "(":
            return _fail(E_MISREAD, sym)
        j = s.find(")", i)
        if j < 0:
            return _fail(E_MISREAD, sym)
        k = s.find("(", j)
        if k < 0:
            k = len(s)
        if out:
            out += _GS
        out += s[i + 1:j] + s[j + 1:k]
        i = k
    return gs1(out, sym)
