"""A route's own code format for scan_code.parse (its `formats`): kept out of scan_code, which the
app holds all day, because no route the device loads carries formats yet."""

from firmware.scan_code import E_CHECK, Scan, mod10_check


class Format:
    """A route's own code format. `pattern`: "A" a letter, "#" a digit, "*" a letter or digit, "?"
    any printable character, anything else itself ("\\" escapes); a class may be followed by
    {n} or {m,n} repeats, e.g. "AA#########AA" or "JJD#{12,24}". `check="mod10"` verifies a GS1
    check digit on the code's digits."""

    def __init__(self, name, pattern, check=None):
        self.name = name
        self.check = check
        self._parts = []  # (class char or literal, is_class, min, max)
        i = 0
        while i < len(pattern):
            c = pattern[i]
            cls = c in "A#*?"
            if c == "\\" and i + 1 < len(pattern):
                i += 1
                c = pattern[i]
                cls = False
            i += 1
            lo = hi = 1
            if i < len(pattern) and pattern[i] == "{":
                j = pattern.index("}", i)
                rng = pattern[i + 1:j].split(",")
                lo = int(rng[0])
                hi = int(rng[-1])
                i = j + 1
            self._parts.append((c, cls, lo, hi))

    @staticmethod
    def _is(c, k):
        if k == "A":
            return "A" <= c <= "Z" or "a" <= c <= "z"
        if k == "#":
            return "0" <= c <= "9"
        if k == "*":
            return "A" <= c <= "Z" or "a" <= c <= "z" or "0" <= c <= "9"
        return " " <= c <= "~"

    def _match(self, s, i, p):
        if p == len(self._parts):
            return i == len(s)
        c, cls, lo, hi = self._parts[p]
        k = 0
        while k < hi and i + k < len(s) and (self._is(s[i + k], c) if cls else s[i + k] == c):
            k += 1
        while k >= lo:  # greedy, then give back: patterns are tiny
            if self._match(s, i + k, p + 1):
                return True
            k -= 1
        return False

    def match(self, data):
        if not self._match(data, 0, 0):
            return None
        if self.check == "mod10":
            d = "".join(c for c in data if "0" <= c <= "9")
            if len(d) < 2 or mod10_check(d[:-1]) != ord(d[-1]) - 48:
                return Scan(error=E_CHECK)
        return Scan(self.name, data)
