"""The built-in adapters pass the conformance kit, as a third party's would."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from troopauth import MemoryStore, SQLiteStore
from troopauth.postgres import PostgresStore
from troopauth.testing import Capabilities, StoreContract

from .conftest import empty_postgres_schema


class TestMemoryStore(StoreContract):
    """MemoryStore: one process, not durable."""

    @pytest.fixture
    def store(self) -> MemoryStore:
        """A fresh MemoryStore."""
        return MemoryStore()


class TestSQLiteStore(StoreContract):
    """SQLiteStore: shared between connections and processes, durable."""

    capabilities = Capabilities(shared=True, durable=True, processes=True)

    @pytest.fixture
    def store(self, tmp_path: Path) -> partial[SQLiteStore]:
        """Opens SQLiteStores on one file."""
        return partial(SQLiteStore, tmp_path / "kit.db")


class TestPostgresStore(StoreContract):
    """PostgresStore: shared between connections and processes, durable."""

    capabilities = Capabilities(shared=True, durable=True, processes=True)

    @pytest.fixture
    def store(
        self, postgres_dsn: str, postgres_pool: Any, postgres_schema: str
    ) -> partial[PostgresStore]:
        """Opens PostgresStores on the run's schema, emptied first."""
        PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
        empty_postgres_schema(postgres_pool, postgres_schema)
        return partial(PostgresStore, postgres_dsn, schema=postgres_schema, max_size=4)
