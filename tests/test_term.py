"""host_tools/term.py: what depot commands print while they work, in a terminal and in a log."""

from __future__ import annotations

import io

from host_tools import term


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_a_long_write_prints_a_line_each_ten_percent():
    out, clock = io.StringIO(), Clock()
    lines = term.LiveLines(["/dev/ttyACM0"], stream=out, clock=clock)
    lines.update("/dev/ttyACM0", "connecting")
    for pct in range(1, 101):  # an update every 0.1 s for 10 s
        clock.t += 0.1
        lines.update("/dev/ttyACM0", "writing", f"{pct}%", pct / 100)
    lines.update("/dev/ttyACM0", "ok")
    got = out.getvalue().splitlines()
    assert got[0] == "/dev/ttyACM0  connecting"
    steps = [1, *range(10, 101, 10)]
    assert got[1:-1] == [f"/dev/ttyACM0  writing {p}%" for p in steps]
    assert got[-1] == "/dev/ttyACM0  ok"


def test_in_a_log_slow_progress_still_shows_every_few_seconds():
    out, clock = io.StringIO(), Clock()
    lines = term.LiveLines(["HH-1"], stream=out, clock=clock, every_s=5.0)
    for n in range(1, 13):  # 1 % a second
        lines.update("HH-1", "route", f"{n}%", n / 100)
        clock.t += 1
    assert out.getvalue().splitlines() == ["HH-1  route 1%", "HH-1  route 6%", "HH-1  route 10%"]


def test_in_a_log_a_step_without_a_measure_prints_every_few_seconds():
    out, clock = io.StringIO(), Clock()
    lines = term.LiveLines(["HH-1"], stream=out, clock=clock, every_s=5.0)
    for n in range(1, 13):  # a step reporting every second without a fraction
        lines.update("HH-1", "checking", f"item {n}")
        clock.t += 1
    assert out.getvalue().splitlines() == ["HH-1  checking item 1", "HH-1  checking item 6",
                                           "HH-1  checking item 11"]


def test_on_a_terminal_each_key_keeps_its_line():
    out = Tty()
    lines = term.LiveLines(["a", "bb"], stream=out)
    lines.update("a", "hello")
    lines.update("bb", "records", "3/9", 1 / 3)
    screen = out.getvalue()
    assert screen.endswith("\x1b[2F\x1b[2Ka   hello\n\x1b[2Kbb  records 3/9\n")


def test_table_rules_its_header_and_aligns_numbers_right():
    assert term.table([("device", "pending"), ("HH-0001", 4), ("HH-2", 120)], right=[1]) == (
        "device   pending\n"
        "-------  -------\n"
        "HH-0001        4\n"
        "HH-2         120")
