"""The one rule for route, stop and device ids (docs/ARCHITECTURE.md, "Ids").

Ids become file names (the store's routes/ROUTE.pkg), URL path segments (/v1/devices/DEVICE/records),
report rows and the handheld's screen. So an id is 1 to N ASCII letters, digits, '.', '_' or '-',
and starts with a letter or a digit: no '/', no '..', no space, no control or terminal escape
character, no leading '-' an option parser would take for a flag. N is what the record and the
route package hold: 16 bytes for a route id, 40 for a stop or device id.
"""

from __future__ import annotations

import re

from host_tools.errors import DepotError

MAX_LEN = {"route id": 16, "stop id": 40, "device id": 40}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
RULE = "letters, digits, '.', '_' or '-', starting with a letter or a digit"


class BadId(DepotError, ValueError):
    """An id that breaks the rule; a DepotError, so the CLI says it in one line."""


def problem(kind: str, value: object) -> str:
    """Why `value` is not a valid id of this kind ("" if it is)."""
    limit = MAX_LEN[kind]
    if not isinstance(value, str) or not value:
        return f"{kind} {value!r} is empty or not text"
    if not _ID.match(value):
        return f"{kind} {value!r} is not {RULE}"
    if len(value) > limit:
        return f"{kind} {value!r} is longer than {limit} characters"
    return ""


def check(kind: str, value: object) -> str:
    """`value` if it is a valid id of this kind, else BadId saying why."""
    why = problem(kind, value)
    if why:
        raise BadId(why, f"use 1 to {MAX_LEN[kind]} {RULE}")
    assert isinstance(value, str)
    return value
