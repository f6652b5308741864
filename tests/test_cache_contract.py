"""CachedStore is a Store: it passes the conformance kit over SQLite and
PostgreSQL. It does not declare ``shared``: another store object's change
reaches a cache within max_staleness, not at once, as the kit's shared tests
require (tests/test_cache.py covers that bound); and it offers no feed of its
own, so the kit's feed tests do not apply."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from troopauth import SQLiteStore
from troopauth.cache import CachedStore
from troopauth.postgres import PostgresStore
from troopauth.testing import Capabilities, StoreContract

from .conftest import empty_postgres_schema


def cached_sqlite(path: Path) -> CachedStore:
    """A CachedStore over a SQLiteStore on *path*."""
    return CachedStore(SQLiteStore(path))


def cached_postgres(dsn: str, schema: str) -> CachedStore:
    """A CachedStore over a PostgresStore on *schema*."""
    return CachedStore(PostgresStore(dsn, schema=schema, max_size=4))


class TestCachedSQLiteStore(StoreContract):
    """CachedStore over SQLiteStore: durable, shared by processes."""

    capabilities = Capabilities(durable=True, processes=True)

    @pytest.fixture
    def store(self, tmp_path: Path) -> partial[CachedStore]:
        """Opens CachedStores over one SQLite file."""
        return partial(cached_sqlite, tmp_path / "kit.db")


class TestCachedPostgresStore(StoreContract):
    """CachedStore over PostgresStore: durable, shared by processes."""

    capabilities = Capabilities(durable=True, processes=True)

    @pytest.fixture
    def store(
        self, postgres_dsn: str, postgres_pool: Any, postgres_schema: str
    ) -> partial[CachedStore]:
        """Opens CachedStores over the run's schema, emptied first."""
        PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
        empty_postgres_schema(postgres_pool, postgres_schema)
        return partial(cached_postgres, postgres_dsn, postgres_schema)
