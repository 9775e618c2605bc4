"""Shared fixtures. `mpy` runs firmware on the real MicroPython VM and fails the test on any traceback."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator

import pytest

from sim import mpy as _mpy
from sim import wasm32 as _wasm32


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


class MicroPython32:
    """The 32-bit VM (MicroPython's WebAssembly port under Node): the same call as `mpy`."""

    def __call__(self, code: str, heap: str = _mpy.DEFAULT_HEAP, **kw) -> str:
        try:
            return _wasm32.run(textwrap.dedent(code), heap=heap, **kw)
        except _mpy.MicroPythonError as exc:
            pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def mpy32() -> MicroPython32:
    """`mpy32(code, heap="256K")` -> stdout of `code` run on the 32-bit WebAssembly port. Without
    node or the npm package the test is skipped, with the reason, and fails on CI (CI=true)."""
    why = _wasm32.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"the 32-bit VM must run on CI: {why}", pytrace=False)
        pytest.skip(f"32-bit VM: {why}")
    return MicroPython32()


# -- stores: SQLite and a private PostgreSQL cluster (tests/pgcluster.py) -------------------------

@pytest.fixture(scope="session")
def pg_cluster():
    """One private PostgreSQL cluster for the session. A missing PostgreSQL fails the tests that
    need it (never a skip): `make setup` installs Debian's postgresql package."""
    from tests.pgcluster import PgCluster

    with PgCluster() as pg:
        yield pg


@pytest.fixture
def pg_url(pg_cluster, request) -> Iterator[str]:
    """A fresh, empty database in the session's cluster, dropped after the test."""
    import psycopg
    from psycopg import sql

    name = "t_%s" % abs(hash(request.node.nodeid))
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_cluster.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(drop)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """An empty store of each backend: a SQLite file's path or a PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "depot.sqlite3")
    return request.getfixturevalue("pg_url")
