"""Django for this folder's tests: configured once, when pytest collects it.

Nothing outside ``tests/django`` imports Django, so the rest of the suite runs
as before. The SQLite databases are migrated at once; the PostgreSQL one is
created and migrated on first use (and skipped without a server, except under
``CI=true``: see ``tests/conftest.py``), then dropped at the end.
"""

from __future__ import annotations

import gc
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import require_postgres
from . import project

DATABASES = project.databases()
project.configure(DATABASES)

from django.core.management import call_command  # noqa: E402 (after configure)
from django.db import connections  # noqa: E402

from troopauth.django.models import (  # noqa: E402
    Account,
    Attachment,
    AuditEntry,
    Member,
    MemberTroop,
    Token,
    Troop,
)

#: troopauth's tables, children first (emptied before each test).
TABLES = (Attachment, MemberTroop, AuditEntry, Member, Token, Troop, Account)

_migrated: set[str] = set()


def migrated(alias: str) -> str:
    """*alias*, its database created (PostgreSQL) and migrated, once a run."""
    if alias in _migrated:
        return alias
    if alias == "postgres":
        import psycopg

        dsn = require_postgres()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASES[alias]["NAME"]}"')
    call_command("migrate", database=alias, verbosity=0, interactive=False)
    _migrated.add(alias)
    return alias


def empty(alias: str) -> None:
    """Delete every row troopauth keeps in *alias*."""
    with connections[alias].cursor() as cursor:
        for model in TABLES:
            table = connections[alias].ops.quote_name(model._meta.db_table)
            cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (a model's table)


@pytest.fixture(autouse=True)
def _threads_connections() -> Iterator[None]:
    """Django opens a connection per thread and closes it at the end of a
    request; the kit's racing threads make no request, so their connections
    are closed when the thread's locals are collected, which the database
    drivers report as a ResourceWarning. Those connections (only) are let go
    quietly, and collected before the test ends."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r".*was deleted while still open", ResourceWarning
        )
        warnings.filterwarnings(
            "ignore", r"unclosed database in <sqlite3\.Connection", ResourceWarning
        )
        yield
        gc.collect()


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_database() -> Iterator[None]:
    """At the end of the run: close Django's connections, drop the database
    and remove the SQLite files."""
    yield
    connections.close_all()
    shutil.rmtree(Path(DATABASES["default"]["NAME"]).parent, ignore_errors=True)
    if "postgres" in _migrated:
        import psycopg

        with psycopg.connect(require_postgres(), autocommit=True) as conn:
            conn.execute(
                f'DROP DATABASE IF EXISTS "{DATABASES["postgres"]["NAME"]}" '
                "WITH (FORCE)"
            )


@pytest.fixture
def sqlite_alias() -> str:
    """The SQLite database (deferred transactions), migrated and empty."""
    empty(migrated("default"))
    return "default"


@pytest.fixture(params=["default", "postgres"])
def alias(request: pytest.FixtureRequest) -> str:
    """Each database backend, migrated and empty."""
    name = migrated(request.param)
    empty(name)
    return name
