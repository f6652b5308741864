"""The shared stores (SQLite, PostgreSQL) under threads and processes racing
for the last seats: exactly the capacity wins, and seats, listings and audit
logs agree with the winners. (The conformance kit races too, on any adapter;
these use more threads and check the audit logs as well.)"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from troopauth import SQLiteStore, TroopAuth
from troopauth.store import Store

from .conftest import FrozenClock
from .store_helpers import (
    GRANT,
    check_race_outcome,
    issue_in_process,
    race,
    run_processes,
    store_setup,
)

THREADS = 16
THREAD_CAPACITY = 5
PROCESSES = 6
ISSUES_PER_PROCESS = 3
PROCESS_CAPACITY = 7


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which shared store."""
    return str(request.param)


@pytest.fixture
def factory(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[..., Store]:
    """A picklable factory of stores over one shared backing store; keyword
    arguments pass through to PostgresStore (its pool size) and are ignored by
    SQLiteStore."""
    if kind == "sqlite":
        return partial(_sqlite, str(tmp_path / "race.db"))
    from troopauth.postgres import PostgresStore

    dsn = request.getfixturevalue("postgres_dsn")
    schema = request.getfixturevalue("postgres_schema")
    request.getfixturevalue("postgres_store")  # empties the schema first
    return partial(PostgresStore, dsn, schema=schema)


def _sqlite(path: str, **_: object) -> SQLiteStore:
    return SQLiteStore(path)


class TestThreadsRaceForSeats:
    """Threads racing for the last seats: exactly the capacity wins."""

    def test_one_shared_store(
        self, factory: Callable[..., Store], clock: FrozenClock
    ) -> None:
        """16 threads over one store object: exactly 5 issues succeed."""
        with factory(max_size=10) as store:  # type: ignore[attr-defined]
            auth = TroopAuth(store, clock=clock)
            s = store_setup(auth, seats=THREAD_CAPACITY)
            won, lost = race(
                lambda: auth.issue_token(s.owner, s.troop_id, GRANT).token_id,
                threads=THREADS,
            )
            assert len(lost) == THREADS - THREAD_CAPACITY
            check_race_outcome(auth, s, won, THREAD_CAPACITY, lost)

    def test_a_store_per_thread(
        self, factory: Callable[..., Store], clock: FrozenClock
    ) -> None:
        """16 threads each with a store object of its own: exactly 5 win."""
        with factory() as store:  # type: ignore[attr-defined]
            auth = TroopAuth(store, clock=clock)
            s = store_setup(auth, seats=THREAD_CAPACITY)

            def issue() -> str:
                with factory(max_size=1) as own:  # type: ignore[attr-defined]
                    mine = TroopAuth(own, clock=clock)
                    actor = mine.authenticate(s.pat_value)
                    return mine.issue_token(actor, s.troop_id, GRANT).token_id

            won, lost = race(issue, threads=THREADS)
            assert len(lost) == THREADS - THREAD_CAPACITY
            check_race_outcome(auth, s, won, THREAD_CAPACITY, lost)


class TestProcessesRaceForSeats:
    """Processes sharing the backing store race for the last seats."""

    @pytest.mark.slow
    def test_spawned_processes(
        self, factory: Callable[..., Store], clock: FrozenClock
    ) -> None:
        """6 processes trying 3 issues each on 7 seats: exactly 7 succeed."""
        child_factory = partial(factory, max_size=1)
        with child_factory() as store:  # type: ignore[attr-defined]
            s = store_setup(TroopAuth(store, clock=clock), seats=PROCESS_CAPACITY)
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(PROCESSES)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=issue_in_process,
                args=(
                    child_factory,
                    s.pat_value,
                    s.troop_id,
                    ISSUES_PER_PROCESS,
                    start,
                    results,
                ),
            )
            for _ in range(PROCESSES)
        ]
        outcomes = run_processes(procs, results)
        assert [o[2] for o in outcomes] == [[]] * PROCESSES
        won = [token_id for o in outcomes for token_id in o[0]]
        assert sum(o[1] for o in outcomes) == (
            PROCESSES * ISSUES_PER_PROCESS - PROCESS_CAPACITY
        )
        with child_factory() as store:  # type: ignore[attr-defined]
            check_race_outcome(TroopAuth(store, clock=clock), s, won, PROCESS_CAPACITY)
