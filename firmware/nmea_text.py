"""The parser's state as text, for logs, tools and tests (sim/nmea_dump.py): the app never imports
this module, so a handheld's heap does not hold it.
"""

NAMES = ("", "RMC", "GGA", "GNS", "GSA", "GLL", "GSV", "ZDA")  # NAMES[code] is the type's name


def civil(days):
    """(year, month, day) of a day count since 1970-01-01 (allocates a tuple: not for hot paths)."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (1 if m <= 2 else 0), m, d)



def iso(p):
    """ISO 8601 UTC of a parser's last sentence ("2024-03-05T12:35:19Z", milliseconds when
    non-zero), None without a date."""
    if p.days < 0 or p.ms < 0:
        return None
    y, mo, d = civil(p.days)
    s = p.ms // 1000
    t = "%04d-%02d-%02dT%02d:%02d:%02d" % (y, mo, d, s // 3600, s // 60 % 60, s % 60)
    if p.ms % 1000:
        t += ".%03d" % (p.ms % 1000)
    return t + "Z"
