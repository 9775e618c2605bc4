"""Issue 13 item 5: the store holds every device's key, so only the depot's account may read it.
Folder 0700; the store, its -wal and -shm, route packages and the kept per-device copies 0600,
whatever the umask (the tests set the most permissive one, 000)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from firmware import record
from host_tools import route_assign, route_compile, routes
from host_tools.store import STORE_FILE, Store
from sim import town


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture()
def open_umask():
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_new_store_and_its_wal_and_shm_are_private_whatever_the_umask(tmp_path, monkeypatch, open_umask):
    home = tmp_path / "depot-home"
    monkeypatch.setenv("DEPOT_HOME", str(home))
    store = Store()  # $DEPOT_HOME/depot.sqlite3, folder created here
    store.enrol("P-1")
    store.ingest("P-1", [record.Record(seq=1, device_id="P-1", item_id="RR000000019GB").encode()], "dock")
    files = {p.name: mode(p) for p in home.iterdir()}
    assert mode(home) == 0o700
    assert files == {STORE_FILE: 0o600, STORE_FILE + "-wal": 0o600, STORE_FILE + "-shm": 0o600}
    store.close()


def test_an_existing_world_readable_store_is_restricted_when_opened(tmp_path, monkeypatch, open_umask):
    home = tmp_path / "old"
    home.mkdir(mode=0o755)
    first = Store(home / STORE_FILE)
    first.enrol("P-1")
    first.close()
    for p in [home, *home.iterdir()]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)  # what an older depot left behind
    monkeypatch.setenv("DEPOT_HOME", str(home))
    again = Store()
    again.enrol("P-2")
    assert mode(home) == 0o700
    assert {p.name: mode(p) for p in home.iterdir()} == {
        STORE_FILE: 0o600, STORE_FILE + "-wal": 0o600, STORE_FILE + "-shm": 0o600}
    again.close()


def test_route_packages_and_their_per_device_copies_are_private(tmp_path, open_umask):
    store = Store(tmp_path / "store" / STORE_FILE)
    store.enrol("P-1")
    fc = town.town(seed=2, stops=4, area="south", route_id="PRIV", service_date="2026-11-27")
    out = tmp_path / "out" / "priv.pkg"
    route_compile.write_package(route_compile.compile_geojson(fc, key=bytes(32)).package, out)
    assert mode(out) == 0o600
    route_assign.assign(store, out, "P-1")
    kept = routes.folder(store.path) / "PRIV.pkg"
    assert (mode(kept.parent), mode(kept)) == (0o700, 0o600)
    assert mode(store.path.parent) == 0o700  # a folder the store created
    store.close()


def test_depot_serve_refuses_a_tls_key_or_token_file_other_users_can_read(tmp_path, capsys):
    from host_tools import cli

    key, token, cert = tmp_path / "server.key", tmp_path / "operator.token", tmp_path / "server.crt"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    token.write_text("s3cret\n")
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    os.chmod(key, 0o644)
    os.chmod(token, 0o640)
    store = str(tmp_path / "depot.sqlite3")
    assert cli.main(["--store", store, "serve", "--tls-cert", str(cert), "--tls-key", str(key)]) == 2
    assert capsys.readouterr().err == (f"depot: error: the TLS key {key} is readable by other users "
                                       f"(mode 644). Run chmod 600 {key}.\n")
    assert cli.main(["--store", store, "serve", "--operator-token-file", str(token)]) == 2
    assert capsys.readouterr().err == (f"depot: error: the operator token file {token} is readable by other "
                                       f"users (mode 640). Run chmod 600 {token}.\n")
