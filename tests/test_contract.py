"""The built-in adapters pass the conformance kit, as a third party's would."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from troopauth import MemoryStore, SQLiteStore
from troopauth.testing import Capabilities, StoreContract


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
