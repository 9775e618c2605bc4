"""Shared fixtures. `mpy` runs firmware on the real MicroPython VM and fails the test on any traceback."""

from __future__ import annotations

import textwrap

import pytest

import host_tools  # noqa: F401  (puts firmware/ on sys.path: shared logic also runs on CPython)
from sim import mpy as _mpy


class MicroPython:
    exe = staticmethod(_mpy.micropython_exe)

    def __call__(self, code: str, heap: str = _mpy.DEFAULT_HEAP, **kw) -> str:
        try:
            return _mpy.run(textwrap.dedent(code), heap=heap, **kw)
        except _mpy.MicroPythonError as exc:
            pytest.fail(str(exc), pytrace=False)

    def script(self, path, *args: str, heap: str = _mpy.DEFAULT_HEAP, **kw) -> str:
        try:
            return _mpy.run(script=path, args=args, heap=heap, **kw)
        except _mpy.MicroPythonError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def mpy() -> MicroPython:
    """`mpy(code, heap="256K")` -> stdout of `code` run on the `micropython` unix port."""
    return MicroPython()
