"""The status line while the receiver has no fix: how many satellites it hears of those in view
(GSV), so the carrier can tell acquiring from a dead receiver."""

from __future__ import annotations

from tests.test_nmea import S
from tests.test_screen import run


def test_without_a_fix_the_status_line_counts_satellites_heard_of_those_in_view(mpy, tmp_path):
    gsv = [S("GPGSV,2,1,07,03,03,111,00,04,15,270,31,06,01,010,,13,06,292,24"),
           S("GPGSV,2,2,07,14,25,170,00,16,57,208,39,18,67,296,"),
           S("GLGSV,1,1,02,65,10,100,30,66,20,200,")]
    body = ("app = main.App()\napp.draw()\ndump('cold')\n"
            + "".join(f"app.gnss.parse({line.encode()!r})\n" for line in gsv)
            + "app.draw()\ndump('acquiring')\n")
    screens, _ = run(mpy, tmp_path, body)
    assert screens["cold"][0].startswith("*NO FIX Q0")
    assert screens["acquiring"][0].startswith("*NO FIX 4/9sv Q0")  # GPS 3 of 7 heard, GLONASS 1 of 2
