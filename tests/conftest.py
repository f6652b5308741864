"""Shared fixtures and the Hypothesis profiles.

Profiles: ``ci`` (thorough, chosen when ``CI`` is set), ``dev`` (the default,
quick) and ``debug``. Pick one with ``HYPOTHESIS_PROFILE=...``.

PostgreSQL: the server named by ``TROOPAUTH_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``). Each test run works in a schema
of its own (``troopauth_test_<random>``), emptied before each test and dropped
at the end. Without a reachable server the PostgreSQL tests skip, with the
reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, Verbosity, settings

from troopauth import MemoryStore, SQLiteStore, TroopAuth

if TYPE_CHECKING:
    from troopauth.postgres import PostgresStore

#: The PostgreSQL server the tests use.
POSTGRES_DSN = os.environ.get(
    "TROOPAUTH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
#: The tables a test may fill, children first (emptied before each test).
POSTGRES_TABLES = (
    "attachments",
    "member_troops",
    "audit",
    "members",
    "tokens",
    "troops",
    "accounts",
)

settings.register_profile(
    "ci",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "debug", max_examples=10, deadline=None, verbosity=Verbosity.verbose
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


class FrozenClock:
    """A clock that stands still until a test moves it: no sleeps for expiry."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen, advanceable clock."""
    return FrozenClock()


@cache
def postgres_unreachable() -> str | None:
    """Why the test server cannot be used, or None if it can (asked once)."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover (the dev extra brings psycopg)
        return f"psycopg is not installed: {exc}"
    try:
        with psycopg.connect(POSTGRES_DSN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at TROOPAUTH_TEST_POSTGRES is unreachable: {exc}"
    return None


def require_postgres() -> str:
    """The test server's DSN; skip the test without one, or fail it under CI."""
    reason = postgres_unreachable()
    if reason is not None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run)")
        pytest.skip(reason)
    return POSTGRES_DSN


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of the reachable test server."""
    return require_postgres()


@pytest.fixture(scope="session")
def postgres_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema of this test run's own, dropped (with all it holds) at the end."""
    import psycopg
    from psycopg import sql

    name = f"troopauth_test_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def postgres_pool(postgres_dsn: str) -> Iterator[Any]:
    """One connection pool for the run's stores (opening one per test is slow)."""
    from psycopg_pool import ConnectionPool

    pool: ConnectionPool[Any] = ConnectionPool(
        postgres_dsn,
        min_size=1,
        max_size=8,
        kwargs={"autocommit": True},
        name="troopauth-tests",
        open=True,
    )
    with pool:
        yield pool


def empty_postgres_schema(pool: Any, schema: str) -> None:
    """Delete every row troopauth keeps (DELETE: far faster than TRUNCATE here)."""
    from psycopg import sql

    with pool.connection() as conn:
        for table in POSTGRES_TABLES:
            conn.execute(
                sql.SQL("DELETE FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            )


@pytest.fixture
def postgres_store(postgres_pool: Any, postgres_schema: str) -> Iterator[PostgresStore]:
    """A PostgresStore on the run's schema, emptied first (it shares the pool)."""
    from troopauth.postgres import PostgresStore

    with PostgresStore(pool=postgres_pool, schema=postgres_schema) as s:
        empty_postgres_schema(postgres_pool, postgres_schema)
        yield s


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Each built-in store, fresh per test."""
    if request.param == "memory":
        with MemoryStore() as s:
            yield s
    elif request.param == "sqlite":
        with SQLiteStore(tmp_path / "troopauth.db") as s:
            yield s
    else:
        yield request.getfixturevalue("postgres_store")


@pytest.fixture
def auth(
    store: MemoryStore | SQLiteStore | PostgresStore, clock: FrozenClock
) -> TroopAuth:
    """A TroopAuth over each store, on the frozen clock."""
    return TroopAuth(store, clock=clock)
