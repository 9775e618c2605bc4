"""The virtual handheld's console behaves as a board's USB console does for a person at a terminal:
CR LF line ends, auto-indent, paste mode, tracebacks that start at `<stdin>`."""

from __future__ import annotations

import os
import re
import select
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

client = pytest.importorskip("sim.client", reason="the simulator (sim/client.py) is not available")

pytestmark = pytest.mark.slow


class Terminal:
    """The console pty in raw mode, as `mpremote repl` or picocom hold it."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        got = b""
        end = time.monotonic() + timeout
        while not got.endswith(marker) and time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                got += os.read(self.fd, 4096)
        assert got.endswith(marker), f"{marker!r} does not end {got!r}"
        return got

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture(scope="module")
def term(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    image = Path(tmp_path_factory.mktemp("console")) / "blank.img"
    with client.Device.start(image) as dev:  # a blank chip: no main.py, the REPL is up at once
        dev.wait_idle()
        t = Terminal(dev.console)
        t.type(b"\x02")  # a fresh friendly REPL
        t.until(b">>> ")
        yield t
        t.close()


def test_output_lines_end_in_cr_lf(term: Terminal):
    term.type(b"print('one\\ntwo')\r")
    assert term.until(b">>> ") == b"print('one\\ntwo')\r\none\r\ntwo\r\n>>> "
    term.type(b"help()\r")
    out = term.until(b">>> ")
    assert len(out) > 200 and re.search(rb"[^\r]\n", out) is None  # no staircase


def test_auto_indent_after_a_colon_and_backspace_takes_a_level_off(term: Terminal):
    term.type(b"def f(a):\r")
    assert term.until(b"...     ") == b"def f(a):\r\n...     "
    term.type(b"return a*2\r")  # typed without indentation: the REPL put it there
    assert term.until(b"...     ") == b"return a*2\r\n...     "
    term.type(b"\x7f")
    assert term.until(b"\x08 \x08" * 4) == b"\x08 \x08" * 4
    term.type(b"\r")  # Return on an empty line runs the block
    term.until(b">>> ")
    term.type(b"f(21)\r")
    assert term.until(b">>> ") == b"f(21)\r\n42\r\n>>> "


def test_two_returns_end_a_block_and_a_third_runs_it(term: Terminal):
    term.type(b"for i in range(2):\r")
    term.until(b"...     ")
    term.type(b"print(i)\r")  # the line itself, then two blank lines and a third Return
    term.until(b"...     ")
    term.type(b"\r\r\r")
    assert term.until(b">>> ") == b"\r\n...     \r\n... \r\n0\r\n1\r\n>>> "


def test_tracebacks_start_at_stdin(term: Terminal):
    term.type(b"1/0\r")
    assert term.until(b">>> ") == (b"1/0\r\nTraceback (most recent call last):\r\n"
                                   b'  File "<stdin>", line 1, in <module>\r\n'
                                   b"ZeroDivisionError: divide by zero\r\n>>> ")


def test_paste_mode_keeps_the_indentation_given(term: Terminal):
    term.type(b"\x05")
    term.until(b"=== ")
    term.type(b"def g():\r\n    x = 5\r\n    return x\r\n")
    term.until(b"=== ")
    term.type(b"\x04")
    term.until(b">>> ")
    term.type(b"g()\r")
    assert term.until(b">>> ") == b"g()\r\n5\r\n>>> "
