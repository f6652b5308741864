"""PostgresStore specifics: opening, schema and migrations, durability, one round
trip per verify, account locks and snapshots, races for the last seat between
threads and between processes, and lost connections.

The rules themselves run on PostgresStore through the ``store`` fixture (see
conftest.py); the SIGKILL fault tests are in test_faults.py.
"""

from __future__ import annotations

import multiprocessing
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from troopauth import (
    InvalidArgument,
    InvalidToken,
    Permission,
    StoreError,
    TroopAuth,
    TroopAuthError,
    core,
)
from troopauth.postgres import SCHEMA_VERSION, PostgresStore
from troopauth.tokens import digest, new_value

from .conftest import POSTGRES_TABLES, FrozenClock, empty_postgres_schema
from .store_helpers import (
    GRANT,
    DeliberateError,
    run_processes,
)
from .store_helpers import StoreSetup as Setup
from .store_helpers import store_setup as _setup
from .store_helpers import write_then_raise as _write_then_raise

OPENERS = 4
#: How long a test waits for another thread or backend to reach a state.
PATIENCE = 30.0


def _admin(dsn: str) -> psycopg.Connection[Any]:
    """A connection of the test's own, outside any store."""
    return psycopg.connect(dsn, autocommit=True)


def _ident(*names: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(n) for n in names)


def _tables(dsn: str, schema: str) -> set[str]:
    with _admin(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    return {r[0] for r in rows}


def _versions(dsn: str, schema: str) -> list[int]:
    with _admin(dsn) as conn:
        rows = conn.execute(
            sql.SQL("SELECT version FROM {} ORDER BY version").format(
                _ident(schema, "schema_version")
            )
        ).fetchall()
    return [r[0] for r in rows]


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll *condition* until it holds (a state another thread reaches)."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _lock_waiters(dsn: str, application_name: str) -> int:
    """How many backends of *application_name* wait for a lock now."""
    with _admin(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'",
            (application_name,),
        ).fetchone()
    return 0 if row is None else int(row[0])


def _terminate(dsn: str, application_name: str) -> int:
    """Terminate every backend of *application_name*; wait until each is gone."""
    with _admin(dsn) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


@pytest.fixture
def new_schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name of this test's own (not created yet), dropped afterwards."""
    name = f"troopauth_t_{new_value()[8:20].lower()}"
    yield name
    with _admin(postgres_dsn) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(_ident(name)))


@pytest.fixture
def schema(postgres_pool: Any, postgres_schema: str) -> str:
    """The run's schema, migrated and emptied (tests open their own stores)."""
    PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
    empty_postgres_schema(postgres_pool, postgres_schema)
    return postgres_schema


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    """An application_name that picks out this test's store connections."""
    return f"troopauth-test-{request.node.name}"[:60]


@pytest.fixture
def named_dsn(postgres_dsn: str, app_name: str) -> str:
    """The test DSN with this test's application_name."""
    return make_conninfo(postgres_dsn, application_name=app_name)


# -- opening -----------------------------------------------------------------------


class TestOpen:
    """The constructor: a DSN or a pool, checked arguments, no secret in repr."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            pytest.param({}, id="neither"),
            pytest.param({"dsn": "x", "pool": object()}, id="both"),
            pytest.param({"pool": object()}, id="pool-not-a-pool"),
            pytest.param({"dsn": "x", "schema": ""}, id="empty-schema"),
            pytest.param({"dsn": "x", "schema": "1abc"}, id="schema-digit"),
            pytest.param({"dsn": "x", "schema": "a-b"}, id="schema-dash"),
            pytest.param({"dsn": "x", "schema": 'a"b'}, id="schema-quote"),
            pytest.param({"dsn": "x", "schema": "a" * 64}, id="schema-long"),
            pytest.param({"dsn": "x", "schema": 7}, id="schema-int"),
            pytest.param({"dsn": "x", "timeout": 0}, id="timeout-zero"),
            pytest.param({"dsn": "x", "timeout": True}, id="timeout-bool"),
            pytest.param({"dsn": "x", "timeout": "1"}, id="timeout-text"),
            pytest.param({"dsn": "x", "min_size": -1}, id="min-negative"),
            pytest.param({"dsn": "x", "max_size": 0}, id="max-zero"),
            pytest.param({"dsn": "x", "min_size": 3, "max_size": 2}, id="max-below"),
            pytest.param({"dsn": 5}, id="dsn-int"),
            pytest.param({"dsn": "host=a port"}, id="dsn-malformed"),
        ],
    )
    def test_bad_arguments(self, kwargs: dict[str, Any]) -> None:
        """Bad constructor arguments raise InvalidArgument before connecting."""
        with pytest.raises(InvalidArgument):
            PostgresStore(**kwargs)

    def test_unreachable_server(self) -> None:
        """A server nobody listens for is a StoreError within the timeout."""
        before = threading.active_count()
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            PostgresStore(
                "postgresql://postgres@127.0.0.1:9/none?connect_timeout=1",
                timeout=1.0,
            )
        assert time.monotonic() - started < PATIENCE
        assert not isinstance(info.value, psycopg.Error)
        # The pool the store made is closed again: no worker threads linger.
        _wait_for(lambda: threading.active_count() <= before, "pool threads to end")

    def test_repr_leaves_the_dsn_out(self, postgres_dsn: str, schema: str) -> None:
        """repr names the schema only (a DSN may hold a password)."""
        dsn = make_conninfo(postgres_dsn, password="hunter2-secret")  # noqa: S106 (a fake)
        with PostgresStore(dsn, schema=schema) as store:
            assert repr(store) == f"PostgresStore(schema={schema!r})"
            assert "hunter2" not in repr(store)
            assert store.schema == schema

    def test_cheap_lookup_is_false(self, postgres_store: PostgresStore) -> None:
        """The lookup crosses the network, so verify checks the checksum first."""
        assert PostgresStore.cheap_lookup is False
        assert postgres_store.cheap_lookup is False

    def test_own_pool_closed(self, postgres_dsn: str, schema: str) -> None:
        """A store opened from a DSN closes the pool it made."""
        store = PostgresStore(postgres_dsn, schema=schema)
        pool = store._pool
        store.close()
        assert pool.closed

    def test_given_pool_left_open(self, postgres_pool: Any, schema: str) -> None:
        """A store given a pool uses it and leaves it open on close."""
        with PostgresStore(pool=postgres_pool, schema=schema) as store:
            assert store.troop_account("troop_none") is None
        assert not postgres_pool.closed
        with postgres_pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

    def test_pool_without_autocommit(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """A pool whose connections are not in autocommit works, and gets its
        connections back as they were."""
        with ConnectionPool(postgres_dsn, min_size=1, max_size=2, open=True) as pool:
            with PostgresStore(pool=pool, schema=schema) as store:
                auth = TroopAuth(store, clock=clock)
                s = _setup(auth)
                issued = auth.issue_token(s.owner, s.troop_id, GRANT)
                principal = auth.verify(
                    issued.value, s.troop_id, Permission.EDIT, "deploy"
                )
                assert principal.token_id == issued.token_id
                assert auth.seats(s.account_id).used == 1
            with pool.connection() as conn:
                assert conn.autocommit is False
                status = conn.info.transaction_status
                assert status == psycopg.pq.TransactionStatus.IDLE

    def test_pool_with_other_row_factory(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """A pool whose connections return dict rows works all the same."""
        kwargs = {"autocommit": True, "row_factory": dict_row}
        with (
            ConnectionPool(
                postgres_dsn, kwargs=kwargs, min_size=1, max_size=2, open=True
            ) as pool,
            PostgresStore(pool=pool, schema=schema) as store,
        ):
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth)
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)
            found = auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
            assert found.token_id == issued.token_id
            assert [t.token_id for t in auth.tokens(s.troop_id)] == [issued.token_id]

    def test_datetimes_in_utc_whatever_the_session_zone(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """Times come back as UTC even on a session in another time zone."""
        kwargs = {"autocommit": True, "options": "-c TimeZone=Asia/Tokyo"}
        with (
            ConnectionPool(
                postgres_dsn, kwargs=kwargs, min_size=1, max_size=2, open=True
            ) as pool,
            PostgresStore(pool=pool, schema=schema) as store,
        ):
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth)
            expires = clock.now.replace(year=2027)
            auth.issue_token(s.owner, s.troop_id, GRANT, expires_at=expires)
            (info,) = auth.tokens(s.troop_id)
            assert info.created_at == clock.now
            assert info.expires_at == expires
            assert info.created_at.utcoffset() == timedelta(0)
            assert str(info.created_at) == str(clock.now)


# -- schema ------------------------------------------------------------------------


def _open_in_process(dsn: str, schema: str, start: Any, results: Any) -> None:
    """Child process: wait for the others, then open the store (migrating it)."""
    try:
        start.wait(timeout=PATIENCE)
        with PostgresStore(dsn, schema=schema, min_size=0, max_size=1) as store:
            results.put(("ok", store.troop_account("troop_none")))
    except Exception as exc:
        results.put(("error", repr(exc)))


#: Every schema version a new store records, oldest first.
ALL_VERSIONS = list(range(1, SCHEMA_VERSION + 1))


class TestSchema:
    """The tables live in their own schema, versioned and migrated once."""

    def test_created_in_its_schema(self, postgres_dsn: str, new_schema: str) -> None:
        """Opening creates the schema, every table and every version up to the
        newest."""
        PostgresStore(postgres_dsn, schema=new_schema).close()
        assert _tables(postgres_dsn, new_schema) == {
            "schema_version",
            *POSTGRES_TABLES,
        }
        assert _versions(postgres_dsn, new_schema) == ALL_VERSIONS == [1, 2]

    def test_reopen_is_idempotent(
        self, postgres_dsn: str, new_schema: str, clock: FrozenClock
    ) -> None:
        """Opening again keeps one version row and all the data."""
        with PostgresStore(postgres_dsn, schema=new_schema) as first:
            s = _setup(TroopAuth(first, clock=clock))
        for _ in range(3):
            with PostgresStore(postgres_dsn, schema=new_schema) as again:
                assert (
                    TroopAuth(again, clock=clock).authenticate(s.pat_value) == s.owner
                )
        assert _versions(postgres_dsn, new_schema) == ALL_VERSIONS

    def test_open_of_a_current_schema_takes_no_lock(
        self, postgres_dsn: str, new_schema: str
    ) -> None:
        """A current schema opens while another holds the migration lock (the
        common open runs no DDL and waits for nobody)."""
        PostgresStore(postgres_dsn, schema=new_schema).close()
        key = _migration_lock_key(new_schema)
        with _admin(postgres_dsn) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (key,))
            with PostgresStore(postgres_dsn, schema=new_schema, timeout=2) as store:
                assert store.troop_account("troop_none") is None

    def test_migration_waits_for_the_lock(
        self, postgres_dsn: str, new_schema: str
    ) -> None:
        """A missing schema is created only under the migration lock: while
        another holds it, the open waits and then fails with StoreError."""
        key = _migration_lock_key(new_schema)
        with _admin(postgres_dsn) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (key,))
            with pytest.raises(StoreError, match="lock"):
                PostgresStore(postgres_dsn, schema=new_schema, timeout=0.3)
            assert _tables(postgres_dsn, new_schema) == set()
        PostgresStore(postgres_dsn, schema=new_schema).close()
        assert _versions(postgres_dsn, new_schema) == ALL_VERSIONS

    @pytest.mark.slow
    def test_processes_opening_at_once(
        self, postgres_dsn: str, new_schema: str
    ) -> None:
        """4 processes opening a new schema together all succeed; it is
        migrated once."""
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(OPENERS)
        results = ctx.Queue()
        procs = [
            ctx.Process(
                target=_open_in_process,
                args=(postgres_dsn, new_schema, start, results),
            )
            for _ in range(OPENERS)
        ]
        outcomes = run_processes(procs, results)
        assert outcomes == [("ok", None)] * OPENERS
        assert _versions(postgres_dsn, new_schema) == ALL_VERSIONS
        assert _tables(postgres_dsn, new_schema) == {
            "schema_version",
            *POSTGRES_TABLES,
        }

    def test_newer_schema_refused(self, postgres_dsn: str, new_schema: str) -> None:
        """A schema whose version says 99 raises StoreError and is left as is."""
        with _admin(postgres_dsn) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(_ident(new_schema)))
            table = _ident(new_schema, "schema_version")
            conn.execute(
                sql.SQL("CREATE TABLE {} (version integer PRIMARY KEY)").format(table)
            )
            conn.execute(sql.SQL("INSERT INTO {} VALUES (99)").format(table))
        with pytest.raises(StoreError, match="99"):
            PostgresStore(postgres_dsn, schema=new_schema)
        assert _tables(postgres_dsn, new_schema) == {"schema_version"}
        assert _versions(postgres_dsn, new_schema) == [99]

    def test_newer_version_of_a_used_schema_refused(
        self, postgres_dsn: str, new_schema: str
    ) -> None:
        """A troopauth schema later migrated to a newer version is refused on
        open."""
        PostgresStore(postgres_dsn, schema=new_schema).close()
        with _admin(postgres_dsn) as conn:
            conn.execute(
                sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(
                    _ident(new_schema, "schema_version")
                ),
                (SCHEMA_VERSION + 1,),
            )
        with pytest.raises(StoreError, match="upgrade troopauth"):
            PostgresStore(postgres_dsn, schema=new_schema)

    def test_schemas_are_apart(
        self, postgres_dsn: str, schema: str, new_schema: str, clock: FrozenClock
    ) -> None:
        """Two schemas in one database hold two separate worlds."""
        with (
            PostgresStore(postgres_dsn, schema=schema) as one,
            PostgresStore(postgres_dsn, schema=new_schema) as two,
        ):
            s = _setup(TroopAuth(one, clock=clock))
            with pytest.raises(InvalidToken):
                TroopAuth(two, clock=clock).authenticate(s.pat_value)
            assert two.troop_account(s.troop_id) is None
            assert one.troop_account(s.troop_id) == s.account_id


def _migration_lock_key(schema: str) -> int:
    from troopauth.postgres import _lock_key

    return _lock_key(schema, "migrate")


# -- durability --------------------------------------------------------------------


class TestDurability:
    """What a call committed is there for a new store, after close and reopen."""

    def test_everything_survives_reopen(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """Accounts, troops, tokens, seats, members and audit logs survive."""
        with PostgresStore(postgres_dsn, schema=schema) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=4)
            other = auth.create_troop(s.account_id, "search")
            kept = auth.issue_token(s.owner, s.troop_id, GRANT, name="kept")
            auth.attach(s.owner, kept.token_id, other.id, GRANT)
            rotated = auth.issue_token(s.owner, s.troop_id, GRANT, name="rotated")
            clock.advance(seconds=1)
            renewed = auth.rotate(s.owner, rotated.token_id)
            revoked = auth.issue_token(s.owner, s.troop_id, GRANT, name="revoked")
            auth.revoke(s.owner, revoked.token_id)
            auth.add_member(s.owner, s.troop_id, "alice", GRANT)

            def state(auth: TroopAuth) -> tuple[object, ...]:
                return (
                    auth.seats(s.account_id),
                    auth.tokens(s.troop_id),
                    auth.tokens(other.id),
                    auth.audit_log(s.troop_id),
                    auth.audit_log(other.id),
                    auth.account_audit_log(s.account_id),
                    auth.member(s.account_id, "alice"),
                )

            before = state(auth)
        with PostgresStore(postgres_dsn, schema=schema) as store:
            auth = TroopAuth(store, clock=clock)
            after = state(auth)
            assert after == before
            assert auth.seats(s.account_id).used == 2
            assert auth.check_audit_log(s.troop_id) is None
            assert auth.check_audit_log(other.id) is None
            assert auth.check_account_audit_log(s.account_id) is None
            assert auth.authenticate(s.pat_value) == s.owner
            assert (
                auth.verify(kept.value, other.id, Permission.EDIT, "deploy").token_id
                == kept.token_id
            )
            assert (
                auth.verify(
                    renewed.value, s.troop_id, Permission.EDIT, "deploy"
                ).token_id
                == renewed.token_id
            )
            for dead in (rotated.value, revoked.value):
                with pytest.raises(InvalidToken):
                    auth.verify(dead, s.troop_id, Permission.EDIT, "deploy")

    def test_second_store_sees_changes_at_once(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """A revoke through one store is seen by verify on another (no cache)."""
        with (
            PostgresStore(postgres_dsn, schema=schema) as writer,
            PostgresStore(postgres_dsn, schema=schema) as reader,
        ):
            auth = TroopAuth(writer, clock=clock)
            watcher = TroopAuth(reader, clock=clock)
            s = _setup(auth, seats=2)
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)
            seen = watcher.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
            assert seen.token_id == issued.token_id
            auth.revoke(s.owner, issued.token_id)
            with pytest.raises(InvalidToken):
                watcher.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")


# -- the verify path: one round trip -------------------------------------------------


@attrs.frozen
class Wire:
    """What a traced connection sent and received."""

    round_trips: int  # ReadyForQuery messages: one per request-and-answer
    executes: int  # Execute (extended protocol) messages: statements run
    parses: int  # Parse messages: statements prepared
    queries: int  # Query (simple protocol) messages


def _wire(trace: str) -> Wire:
    def count(direction: str, message: str) -> int:
        return len(re.findall(rf"^{direction}\t\d+\t{message}\b", trace, re.M))

    return Wire(
        round_trips=count("B", "ReadyForQuery"),
        executes=count("F", "Execute"),
        parses=count("F", "Parse"),
        queries=count("F", "Query"),
    )


Tracer = Callable[[Callable[[], object]], Wire]


@contextmanager
def _traced_store(
    dsn: str, schema: str, tmp_path: Path, **conn_kwargs: Any
) -> Iterator[tuple[PostgresStore, Tracer]]:
    """A store on a one-connection pool, and a function that runs a callable
    with libpq's protocol trace on and returns what went over the wire."""
    with (
        ConnectionPool(
            dsn,
            min_size=1,
            max_size=1,
            kwargs={"autocommit": True, **conn_kwargs},
            open=True,
        ) as pool,
        PostgresStore(pool=pool, schema=schema) as store,
    ):
        runs = iter(range(1_000_000))

        def traced_call(fn: Callable[[], object]) -> Wire:
            path = tmp_path / f"trace-{next(runs)}.txt"
            with path.open("w") as out:
                with pool.connection() as conn:
                    conn.pgconn.trace(out.fileno())
                    conn.pgconn.set_trace_flags(
                        psycopg.pq.Trace.SUPPRESS_TIMESTAMPS
                        | psycopg.pq.Trace.REGRESS_MODE
                    )
                try:
                    fn()
                finally:
                    with pool.connection() as conn:
                        conn.pgconn.untrace()
            return _wire(path.read_text())

        yield store, traced_call


@pytest.fixture
def traced(
    postgres_dsn: str, schema: str, tmp_path: Path
) -> Iterator[tuple[PostgresStore, Tracer]]:
    """A traced store on a one-connection pool (see _traced_store)."""
    with _traced_store(postgres_dsn, schema, tmp_path) as found:
        yield found


class TestOneRoundTrip:
    """verify on PostgresStore: one indexed statement, one round trip."""

    VERIFIES = 40

    def test_each_verify_is_one_round_trip(
        self, traced: Any, clock: FrozenClock
    ) -> None:
        """40 verifies over 8 tokens: 40 round trips, 40 statements, no prepare."""
        store, trace = traced
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth, seats=8)
        values = [auth.issue_token(s.owner, s.troop_id, GRANT).value for _ in range(8)]
        auth.verify(values[0], s.troop_id, Permission.EDIT, "deploy")  # prepares

        def run() -> None:
            for i in range(self.VERIFIES):
                auth.verify(values[i % 8], s.troop_id, Permission.EDIT, "deploy")

        wire = trace(run)
        assert wire == Wire(
            round_trips=self.VERIFIES, executes=self.VERIFIES, parses=0, queries=0
        )

    def test_refusals_cost_one_round_trip_too(
        self, traced: Any, clock: FrozenClock
    ) -> None:
        """A denied verify and an unknown value each cost exactly one round trip."""
        store, trace = traced
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
        unknown = new_value()
        wire = trace(lambda: _raises(auth.verify, unknown, s.troop_id, Permission.VIEW))
        assert wire == Wire(round_trips=1, executes=1, parses=0, queries=0)
        wire = trace(
            lambda: _raises(auth.verify, issued.value, s.troop_id, Permission.MANAGE)
        )
        assert wire == Wire(round_trips=1, executes=1, parses=0, queries=0)

    def test_malformed_value_costs_no_round_trip(
        self, traced: Any, clock: FrozenClock
    ) -> None:
        """A value with a wrong checksum is refused before the store is asked."""
        store, trace = traced
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth)
        good = new_value()
        bad = good[:-1] + ("0" if good[-1] != "0" else "1")
        wire = trace(lambda: _raises(auth.verify, bad, s.troop_id, Permission.VIEW))
        assert wire == Wire(round_trips=0, executes=0, parses=0, queries=0)

    def test_first_lookup_on_a_connection_prepares_once(
        self, traced: Any, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """The lookup is a prepared statement: prepared once per connection."""
        store, trace = traced
        with PostgresStore(postgres_dsn, schema=schema) as other:
            s = _setup(TroopAuth(other, clock=clock))
        wire = trace(lambda: [store.lookup(digest(s.pat_value)) for _ in range(3)])
        assert wire.parses == 1
        assert wire.executes == 3

    def test_without_prepared_statements(
        self, postgres_dsn: str, schema: str, tmp_path: Path, clock: FrozenClock
    ) -> None:
        """A pool that disables prepared statements (as behind PgBouncer in
        transaction mode) still costs one round trip per verify."""
        with _traced_store(postgres_dsn, schema, tmp_path, prepare_threshold=None) as (
            store,
            trace,
        ):
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth)
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)

            def run() -> None:
                for _ in range(self.VERIFIES):
                    auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")

            wire = trace(run)
        assert wire == Wire(
            round_trips=self.VERIFIES,
            executes=self.VERIFIES,
            parses=self.VERIFIES,
            queries=0,
        )

    def test_lookup_uses_the_digest_index(
        self, postgres_store: PostgresStore, postgres_pool: Any
    ) -> None:
        """The lookup statement is answered from the unique digest index, and
        asks the rotation-overlap index only when that finds nothing."""
        digest_ = b"\0" * 32
        with postgres_pool.connection() as conn:
            conn.execute("SET enable_seqscan = off")
            try:
                plan = conn.execute(
                    b"EXPLAIN (ANALYZE, COSTS OFF) " + postgres_store._q.lookup,
                    (digest_, digest_),
                ).fetchall()
            finally:
                conn.execute("RESET enable_seqscan")
        text = "\n".join(r[0] for r in plan)
        assert "Index Scan using tokens_digest_key" in text
        assert "Index Scan using tokens_prev_digest" in text
        assert "Seq Scan" not in text


def _raises(fn: Callable[..., object], *args: Any) -> BaseException | None:
    try:
        fn(*args)
    except Exception as exc:
        return exc
    return None


# -- transactions ------------------------------------------------------------------


class TestTransaction:
    """A transaction commits whole or not at all and sees its own writes."""

    def test_raising_transaction_leaves_nothing(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """put_token, put_account, then an exception: nothing is stored."""
        store = postgres_store
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth, seats=3)
        template = auth.issue_token(s.owner, s.troop_id, GRANT)
        existing = store.lookup(digest(template.value))
        assert existing is not None
        ghost_digest = digest(new_value())
        ghost = attrs.evolve(existing, id="tok_ghost", digest=ghost_digest)
        with pytest.raises(DeliberateError):
            _write_then_raise(store, s.account_id, ghost)
        assert store.lookup(ghost_digest) is None
        with store.transaction(s.account_id, write=False) as tx:
            assert tx.get_token("tok_ghost") is None
            attached = {t.id for t in tx.attached_tokens(s.troop_id)}
            assert attached == {existing.id, s.owner.token_id}
        assert auth.seats(s.account_id).used == 1
        auth.issue_token(s.owner, s.troop_id, GRANT)
        assert auth.seats(s.account_id).used == 2

    def test_reads_see_own_writes(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """Inside a transaction every get_* sees the writes made before it."""
        store = postgres_store
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth, seats=3)
        existing = store.lookup(digest(s.pat_value))
        assert existing is not None
        new_digest = digest(new_value())
        with store.transaction(s.account_id) as tx:
            account = tx.get_account()
            assert account is not None
            tx.put_account(attrs.evolve(account, seats=9))
            moved = attrs.evolve(existing, digest=new_digest, generation=1)
            tx.put_token(moved)
            assert tx.get_account() == attrs.evolve(account, seats=9)
            assert tx.get_token(existing.id) == moved
            assert [t.digest for t in tx.attached_tokens(s.troop_id)] == [new_digest]
        assert store.lookup(new_digest) is not None
        assert store.lookup(digest(s.pat_value)) is None
        assert auth.seats(s.account_id).capacity == 9

    def test_gets_are_scoped_to_the_account(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """Another account's troop, token and member read as missing."""
        store = postgres_store
        auth = TroopAuth(store, clock=clock)
        mine = _setup(auth)
        theirs = _setup(auth)
        auth.add_member(theirs.owner, theirs.troop_id, "bob", GRANT)
        with store.transaction(mine.account_id, write=False) as tx:
            assert tx.get_troop(theirs.troop_id) is None
            assert tx.get_token(theirs.owner.token_id or "") is None
            assert tx.get_member("bob") is None
            assert tx.attached_tokens(theirs.troop_id) == []
            assert [t.id for t in tx.troops()] == [mine.troop_id]
            assert tx.audit_events(theirs.troop_id) == []

    def test_a_token_id_of_another_account_is_refused(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """put_token with another account's token id changes nothing: StoreError."""
        store = postgres_store
        auth = TroopAuth(store, clock=clock)
        mine = _setup(auth)
        theirs = _setup(auth)
        victim = store.lookup(digest(theirs.pat_value))
        assert victim is not None
        forged = attrs.evolve(
            victim, account_id=mine.account_id, grants={mine.troop_id: GRANT}
        )
        with pytest.raises(StoreError), store.transaction(mine.account_id) as tx:
            tx.put_token(forged)
        assert store.lookup(digest(theirs.pat_value)) == victim

    def test_duplicate_digest_refused(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """A second token with a digest in use is a StoreError; nothing lands."""
        store = postgres_store
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth)
        pat = store.lookup(digest(s.pat_value))
        assert pat is not None
        twin = attrs.evolve(pat, id="tok_twin")
        with (
            pytest.raises(StoreError, match="digest"),
            store.transaction(s.account_id) as tx,
        ):
            tx.put_token(twin)
        with store.transaction(s.account_id, write=False) as tx:
            assert tx.get_token("tok_twin") is None

    def test_swallowed_error_does_not_commit(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """A body that catches a failed statement and carries on cannot commit:
        the transaction raises StoreError and leaves nothing behind."""
        store = postgres_store
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth)
        pat = store.lookup(digest(s.pat_value))
        assert pat is not None
        twin = attrs.evolve(pat, id="tok_twin")
        caught: list[StoreError] = []

        def swallow() -> None:
            with store.transaction(s.account_id) as tx:
                account = tx.get_account()
                assert account is not None
                tx.put_account(attrs.evolve(account, seats=99))
                try:
                    tx.put_token(twin)
                except StoreError as exc:
                    caught.append(exc)

        with pytest.raises(StoreError, match="nothing was changed"):
            swallow()
        assert len(caught) == 1
        assert auth.seats(s.account_id).capacity == 5

    def test_read_transaction_is_a_snapshot(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """A read transaction does not see a change committed after its first read."""
        with PostgresStore(postgres_dsn, schema=schema) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth)
            with store.transaction(s.account_id, write=False) as tx:
                first = tx.get_account()
                assert first is not None
                issued = auth.issue_token(s.owner, s.troop_id, GRANT)
                attached = [t.id for t in tx.attached_tokens(s.troop_id)]
                assert attached == [s.owner.token_id]
                assert tx.get_token(issued.token_id) is None
                assert core.seat_pool(tx, clock.now).used == 0
            assert auth.seats(s.account_id).used == 1

    def test_read_transaction_is_read_only(
        self, postgres_store: PostgresStore, clock: FrozenClock
    ) -> None:
        """A write inside write=False is refused with StoreError, not psycopg's."""
        auth = TroopAuth(postgres_store, clock=clock)
        s = _setup(auth)

        def write_in_a_read() -> None:
            with postgres_store.transaction(s.account_id, write=False) as tx:
                account = tx.get_account()
                assert account is not None
                tx.put_account(attrs.evolve(account, seats=0))

        with pytest.raises(StoreError) as info:
            write_in_a_read()
        assert not isinstance(info.value, psycopg.Error)
        assert auth.seats(s.account_id).capacity == 5


# -- locks ---------------------------------------------------------------------------


class TestAccountLock:
    """A change holds its account's lock until it commits."""

    def test_second_change_of_an_account_waits(
        self, named_dsn: str, postgres_dsn: str, schema: str, app_name: str
    ) -> None:
        """A second transaction on the account waits for the first to commit,
        and then sees its writes; another account is not held up."""
        clock = FrozenClock()
        with PostgresStore(named_dsn, schema=schema, max_size=4) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth)
            other = _setup(auth)
            entered, release = threading.Event(), threading.Event()
            order: list[str] = []

            def first() -> None:
                with store.transaction(s.account_id) as tx:
                    account = tx.get_account()
                    assert account is not None
                    tx.put_account(attrs.evolve(account, seats=account.seats + 1))
                    entered.set()
                    release.wait(timeout=PATIENCE)
                    order.append("first commits")

            def second() -> None:
                with store.transaction(s.account_id) as tx:
                    order.append("second in")
                    account = tx.get_account()
                    assert account is not None
                    order.append(f"second sees {account.seats}")

            a = threading.Thread(target=first)
            a.start()
            assert entered.wait(timeout=PATIENCE)
            b = threading.Thread(target=second)
            b.start()
            _wait_for(
                lambda: _lock_waiters(postgres_dsn, app_name) == 1,
                "the second transaction to wait for the lock",
            )
            # Meanwhile another account's changes and every read go ahead.
            auth.issue_token(other.owner, other.troop_id, GRANT)
            assert auth.seats(s.account_id).capacity == 5
            assert order == []
            release.set()
            a.join(timeout=PATIENCE)
            b.join(timeout=PATIENCE)
            assert order == ["first commits", "second in", "second sees 6"]

    def test_new_account_ids_are_locked_too(
        self, named_dsn: str, postgres_dsn: str, schema: str, app_name: str
    ) -> None:
        """Two transactions creating one account id: the second waits, then
        finds the account (the advisory lock stands in for the missing row)."""
        clock = FrozenClock()
        with PostgresStore(named_dsn, schema=schema, max_size=4) as store:
            entered, release = threading.Event(), threading.Event()
            # Keyed by creator: the two threads finish in either order once the
            # first commits, so a list's order would not be fixed.
            outcomes: dict[str, str] = {}

            def create(wait: bool) -> None:
                who = "first" if wait else "second"
                try:
                    with store.transaction("acct_race") as tx:
                        core.create_account(tx, seats=1, audit_log=False, now=clock())
                        if wait:
                            entered.set()
                            release.wait(timeout=PATIENCE)
                    outcomes[who] = "created"
                except TroopAuthError as exc:
                    outcomes[who] = type(exc).__name__

            a = threading.Thread(target=create, args=(True,))
            a.start()
            assert entered.wait(timeout=PATIENCE)
            b = threading.Thread(target=create, args=(False,))
            b.start()
            _wait_for(
                lambda: _lock_waiters(postgres_dsn, app_name) == 1,
                "the second creator to wait for the lock",
            )
            release.set()
            a.join(timeout=PATIENCE)
            b.join(timeout=PATIENCE)
            assert outcomes == {"first": "created", "second": "InvalidArgument"}

    def test_lock_wait_past_the_timeout(
        self, postgres_dsn: str, schema: str, clock: FrozenClock
    ) -> None:
        """A change waiting longer than ``timeout`` for the account's lock is a
        StoreError that commits nothing; reads are not blocked meanwhile."""
        with PostgresStore(postgres_dsn, schema=schema, timeout=0.3) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=3)
            with _admin(postgres_dsn) as blocker, blocker.transaction():
                blocker.execute(
                    sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(
                        _ident(schema, "accounts")
                    ),
                    (s.account_id,),
                )
                with pytest.raises(StoreError) as info:
                    auth.issue_token(s.owner, s.troop_id, GRANT)
                assert not isinstance(info.value, psycopg.Error)
                assert info.value.__cause__ is None
                assert auth.authenticate(s.pat_value) == s.owner
                assert auth.seats(s.account_id).used == 0
            auth.issue_token(s.owner, s.troop_id, GRANT)
            assert auth.seats(s.account_id).used == 1
            assert len(auth.audit_log(s.troop_id)) == 1


# -- lost connections and server errors ------------------------------------------------


_CALLS: dict[str, Callable[[TroopAuth, Setup, str], object]] = {
    "verify": lambda a, s, v: a.verify(v, s.troop_id, Permission.EDIT, "deploy"),
    "authenticate": lambda a, s, v: a.authenticate(v),
    "tokens": lambda a, s, v: a.tokens(s.troop_id),
    "seats": lambda a, s, v: a.seats(s.account_id),
    "issue_token": lambda a, s, v: a.issue_token(s.owner, s.troop_id, GRANT),
    "create_troop": lambda a, s, v: a.create_troop(s.account_id, "more"),
}


class TestConnectionLoss:
    """A terminated backend is a StoreError at worst; later calls work."""

    @pytest.mark.parametrize("call", sorted(_CALLS))
    def test_every_backend_terminated_between_calls(
        self,
        named_dsn: str,
        postgres_dsn: str,
        schema: str,
        app_name: str,
        call: str,
    ) -> None:
        """After all the store's connections are killed, the next call runs on
        a fresh connection (it had not started: a retry is safe)."""
        clock = FrozenClock()
        with PostgresStore(named_dsn, schema=schema, min_size=2) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth)
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)
            assert _terminate(postgres_dsn, app_name) >= 1
            _CALLS[call](auth, s, issued.value)
            found = auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
            assert found.token_id == issued.token_id
            assert auth.seats(s.account_id).used >= 1

    def test_backend_terminated_mid_transaction(
        self, named_dsn: str, postgres_dsn: str, schema: str, app_name: str
    ) -> None:
        """A connection lost inside a change: StoreError (not psycopg's), the
        change is not committed, and the next call works."""
        clock = FrozenClock()
        with PostgresStore(named_dsn, schema=schema) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=3)

            def lose_the_connection() -> None:
                with store.transaction(s.account_id) as tx:
                    account = tx.get_account()
                    assert account is not None
                    tx.put_account(attrs.evolve(account, seats=99))
                    _terminate(postgres_dsn, app_name)
                    tx.get_troop(s.troop_id)

            with pytest.raises(StoreError) as info:
                lose_the_connection()
            assert not isinstance(info.value, psycopg.Error)
            assert info.value.__cause__ is None
            assert auth.seats(s.account_id).capacity == 3
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)
            found = auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
            assert found.token_id == issued.token_id

    def test_server_error_is_a_store_error(
        self, postgres_store: PostgresStore, postgres_pool: Any, clock: FrozenClock
    ) -> None:
        """A server-side error (a dropped table) surfaces as StoreError from the
        public calls, never as a psycopg exception."""
        auth = TroopAuth(postgres_store, clock=clock)
        s = _setup(auth)
        table = _ident(postgres_store.schema, "audit")
        with postgres_pool.connection() as conn:
            conn.execute(sql.SQL("ALTER TABLE {} RENAME TO audit_gone").format(table))
        try:
            with pytest.raises(StoreError) as info:
                auth.issue_token(s.owner, s.troop_id, GRANT)
            assert not isinstance(info.value, psycopg.Error)
            assert "audit" in str(info.value)
            assert auth.seats(s.account_id).used == 0
        finally:
            with postgres_pool.connection() as conn:
                conn.execute(
                    sql.SQL("ALTER TABLE {} RENAME TO audit").format(
                        _ident(postgres_store.schema, "audit_gone")
                    )
                )
        auth.issue_token(s.owner, s.troop_id, GRANT)
        assert auth.seats(s.account_id).used == 1


# -- close -------------------------------------------------------------------------


_AFTER_CLOSE: dict[str, Callable[[PostgresStore, TroopAuth, Setup, str], object]] = {
    "lookup": lambda st, a, s, v: st.lookup(digest(v)),
    "transaction": lambda st, a, s, v: st.transaction(s.account_id).__enter__(),
    "troop_account": lambda st, a, s, v: st.troop_account(s.troop_id),
    "verify": lambda st, a, s, v: a.verify(v, s.troop_id, Permission.EDIT, "deploy"),
    "authenticate": lambda st, a, s, v: a.authenticate(v),
    "issue_token": lambda st, a, s, v: a.issue_token(s.owner, s.troop_id, GRANT),
    "seats": lambda st, a, s, v: a.seats(s.account_id),
    "tokens": lambda st, a, s, v: a.tokens(s.troop_id),
}


class TestClose:
    """close() ends the store; ``with`` closes it; a forked copy refuses."""

    @pytest.mark.parametrize("call", sorted(_AFTER_CLOSE))
    def test_any_call_after_close(
        self, postgres_dsn: str, schema: str, clock: FrozenClock, call: str
    ) -> None:
        """After close(), every store and facade call raises StoreError."""
        store = PostgresStore(postgres_dsn, schema=schema)
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        store.close()
        store.close()  # twice is fine
        with pytest.raises(StoreError):
            _AFTER_CLOSE[call](store, auth, s, issued.value)

    def test_with_closes_on_error(self, postgres_dsn: str, schema: str) -> None:
        """The store is closed even when the ``with`` body raises."""
        store = PostgresStore(postgres_dsn, schema=schema)
        with pytest.raises(DeliberateError), store:
            raise DeliberateError
        with pytest.raises(StoreError):
            store.lookup(b"\0" * 32)

    def test_store_from_another_process_refuses(
        self, postgres_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store inherited across fork refuses (its connections are the
        parent's) instead of corrupting them."""
        monkeypatch.setattr(postgres_store, "_pid", -1)
        with pytest.raises(StoreError, match="another process"):
            postgres_store.lookup(b"\0" * 32)
