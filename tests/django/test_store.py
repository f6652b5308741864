"""DjangoStore passes the conformance kit on SQLite and PostgreSQL."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from troopauth.testing import Capabilities, StoreContract

from . import project
from .conftest import DATABASES, empty, migrated

#: Shared by many store objects, threads and processes; durable.
EVERYTHING = Capabilities(shared=True, durable=True, processes=True, threads=True)


def _factory(alias: str) -> partial[Any]:
    """Opens DjangoStores on *alias*, emptied first (picklable: the kit's
    process races send it to child processes)."""
    empty(migrated(alias))
    return partial(project.open_store, alias, DATABASES)


class TestDjangoStoreSQLite(StoreContract):
    """DjangoStore on Django's SQLite backend, transactions DEFERRED (Django's
    default): the store takes the write lock itself."""

    capabilities = EVERYTHING

    @pytest.fixture
    def store(self) -> partial[Any]:
        """Opens DjangoStores on the ``default`` SQLite database."""
        return _factory("default")


class TestDjangoStoreSQLiteImmediate(StoreContract):
    """DjangoStore on SQLite with ``"transaction_mode": "IMMEDIATE"``."""

    capabilities = EVERYTHING

    @pytest.fixture
    def store(self) -> partial[Any]:
        """Opens DjangoStores on the ``immediate`` SQLite database."""
        return _factory("immediate")


class TestDjangoStorePostgres(StoreContract):
    """DjangoStore on PostgreSQL: the account row locked FOR UPDATE."""

    capabilities = EVERYTHING

    @pytest.fixture
    def store(self) -> partial[Any]:
        """Opens DjangoStores on the run's own PostgreSQL database."""
        return _factory("postgres")
