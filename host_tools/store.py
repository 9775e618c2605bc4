"""The depot's store, by name: `open_store` / `open_existing` open the SQLite file or the
PostgreSQL database that --store, $DEPOT_STORE or $DEPOT_HOME names.

The store is split by purpose: store_interface.py (the `Storage` interface both backends
implement, its record types and errors), store_sqlite.py (`Store`, the SQLite backend, with its
schema in store_sqlite_schema.py) and store_pg.py (`PgStore`, PostgreSQL). The depot's code
imports all of these names from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from host_tools.store_interface import (
    KEY_LEN,
    MAX_SEQ,
    SCHEMA_VERSION,
    AssignedRoute,
    Conflict,
    DeviceInfo,
    FenceChange,
    Incoming,
    IngestResult,
    SchemaTooNew,
    Storage,
    StoreError,
    StoreUnavailable,
    UnknownDevice,
)
from host_tools.store_sqlite import STORE_FILE, Store, default_path

__all__ = ["KEY_LEN", "MAX_SEQ", "SCHEMA_VERSION", "STORE_FILE", "AssignedRoute", "Conflict", "DeviceInfo",
           "FenceChange", "Incoming", "IngestResult", "SchemaTooNew", "Storage", "Store", "StoreError",
           "StoreUnavailable", "UnknownDevice", "default_path", "is_url", "open_existing", "open_store",
           "store_name"]


def is_url(store: str | os.PathLike[str] | None) -> bool:
    return isinstance(store, str) and store.startswith(("postgresql://", "postgres://"))


def store_name(store: str | os.PathLike[str] | None = None) -> str:
    """--store, else $DEPOT_STORE (a path or a postgresql:// URL), else the SQLite default path."""
    chosen = store or os.environ.get("DEPOT_STORE")
    return str(chosen) if is_url(chosen) else str(default_path(chosen))


def open_store(store: str | os.PathLike[str] | None = None) -> Storage:
    """The store named by --store / $DEPOT_STORE / $DEPOT_HOME / the per-user default: a
    postgresql:// URL opens PostgreSQL (host_tools.store_pg), anything else a SQLite file."""
    name = store_name(store)
    if is_url(name):
        from host_tools.store_pg import PgStore  # psycopg is needed only by PostgreSQL depots

        return PgStore(name)
    return Store(name)


def open_existing(store: str | os.PathLike[str] | None = None) -> Storage:
    """The store, for every command but `depot enrol`: a missing one is a mistyped --store,
    DEPOT_STORE or DEPOT_HOME, never an empty fleet, so it is refused rather than created."""
    from host_tools.errors import DepotError

    name = store_name(store)
    if is_url(name):
        from host_tools.store_pg import PgStore

        try:
            st = PgStore(name, migrate=False)
        except StoreError as exc:
            raise DepotError(str(exc), "check --store or DEPOT_STORE") from None
        if st.schema_version() == 0:
            st.close()
            raise DepotError(f"no depot store in the database {st.name}", "check --store or DEPOT_STORE "
                             "(`depot enrol` or `depot store migrate` creates it)")
        st.migrate()
        return st
    if not Path(name).is_file():
        raise DepotError(f"no store at {name}",
                         "check --store or DEPOT_HOME (`depot enrol` creates the store)")
    with open(name, "rb") as f:
        if f.read(16) != b"SQLite format 3\0":
            raise DepotError(f"{name} is not a depot store (not an SQLite file)",
                             "check --store or DEPOT_HOME")
    return Store(name)
