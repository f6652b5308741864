"""CachedStore over SQLite and PostgreSQL: memory-speed verify that still sees
every change made anywhere within ``max_staleness``, and fails safe."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from troopauth import (
    AccessDenied,
    InvalidArgument,
    InvalidToken,
    MemoryStore,
    Permission,
    SQLiteStore,
    StoreError,
    TroopAuth,
)
from troopauth.cache import CachedStore
from troopauth.store import Store
from troopauth.tokens import digest

from .conftest import FrozenClock, empty_postgres_schema
from .helpers import grant, issue, make_account

#: Short, so that the tests that wait out the bound wait little.
STALENESS = timedelta(milliseconds=300)
#: How long a wait loop may take before the test fails (a generous deadline).
PATIENCE = 20.0


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until *check* holds, or fail after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"after {PATIENCE} s: {what}")
        time.sleep(0.005)


def refused(auth: TroopAuth, value: str, troop_id: str) -> bool:
    """Whether verify refuses the value as InvalidToken."""
    try:
        auth.verify(value, troop_id, Permission.VIEW)
    except InvalidToken:
        return True
    return False


def past_the_bound(since: float) -> None:
    """Sleep until max_staleness has passed since *since* (a monotonic time)."""
    left = since + STALENESS.total_seconds() - time.monotonic()
    if left > 0:
        time.sleep(left + 0.001)


class Opener:
    """Opens plain stores and caches on one shared database."""

    def __init__(self, make: Callable[[], Store]) -> None:
        self._make = make
        self.opened: list[Store] = []

    def __call__(self) -> Store:
        """A plain store object on the shared database."""
        store = self._make()
        self.opened.append(store)
        return store

    def cached(self, **kwargs: Any) -> CachedStore:
        """A CachedStore over a new store object, its feed already healthy."""
        cache = CachedStore(self._make(), max_staleness=STALENESS, **kwargs)
        self.opened.append(cache)
        eventually(lambda: cache.healthy, "the feed never became healthy")
        return cache

    def close(self) -> None:
        """Close everything opened here, newest first."""
        for store in reversed(self.opened):
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens stores on one shared database (closed at the end)."""
    if request.param == "sqlite":
        path = tmp_path / "fleet.db"

        def make() -> Store:
            return SQLiteStore(path)
    else:
        from troopauth.postgres import PostgresStore

        dsn = request.getfixturevalue("postgres_dsn")
        schema = request.getfixturevalue("postgres_schema")
        pool = request.getfixturevalue("postgres_pool")
        PostgresStore(pool=pool, schema=schema).close()
        empty_postgres_schema(pool, schema)

        def make() -> Store:
            return PostgresStore(dsn, schema=schema, min_size=0, max_size=2)

    opened = Opener(make)
    try:
        yield opened
    finally:
        opened.close()


def test_a_store_without_a_feed_is_refused() -> None:
    """CachedStore(MemoryStore()) is InvalidArgument: it has no change feed."""
    with pytest.raises(InvalidArgument, match="change feed"):
        CachedStore(MemoryStore())


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    """A non-positive max_staleness or max_entries is InvalidArgument."""
    with SQLiteStore(tmp_path / "a.db") as store:
        with pytest.raises(InvalidArgument):
            CachedStore(store, max_staleness=timedelta(0))
        with pytest.raises(InvalidArgument):
            CachedStore(store, max_entries=0)


def test_hits_are_kept_and_misses_never(opener: Opener) -> None:
    """A successful verify fills the cache; unknown values leave it empty."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    setup = make_account(auth)
    token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
    auth.verify(token.value, setup.tid, Permission.VIEW)
    assert digest(token.value) in cache._entries
    size = len(cache)
    other = TroopAuth(opener())
    unknown = [other.issue_token(setup.owner, setup.tid, grant("view")) for _ in "ab"]
    for issued in unknown:
        other.revoke(setup.owner, issued.token_id)
        assert refused(auth, issued.value, setup.tid)
    assert len(cache) == size
    assert auth.verify(token.value, setup.tid, Permission.VIEW).token_id == (
        token.token_id
    )


def test_garbage_never_reaches_the_inner_store(opener: Opener) -> None:
    """A value of the right shape whose checksum is wrong is refused before
    the inner store is asked; a cached hit is answered from memory alone."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    setup = make_account(auth)
    token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
    auth.verify(token.value, setup.tid, Permission.VIEW)  # now cached
    asked: list[bytes] = []
    inner = cache._inner
    real = inner.lookup

    def counting(wanted: bytes) -> Any:
        asked.append(wanted)
        return real(wanted)

    inner.lookup = counting  # type: ignore[method-assign]
    garbage = token.value[:-1] + ("A" if token.value[-1] != "A" else "B")
    assert refused(auth, garbage, setup.tid)
    auth.verify(token.value, setup.tid, Permission.VIEW)
    assert asked == []


def test_a_local_change_is_seen_before_the_call_returns(opener: Opener) -> None:
    """Read-your-writes: revoke, rotate and detach through the cached facade
    are refused at once, with no wait for the feed."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    setup = make_account(auth, troops=2)
    other_troop = setup.troops[1].id
    values = [issue(auth, setup.owner, setup.tid, grant("view"))[0] for _ in "abc"]
    auth.attach(setup.owner, values[2].token_id, other_troop, grant("view"))
    for issued in values:
        auth.verify(issued.value, setup.tid, Permission.VIEW)
    auth.verify(values[2].value, other_troop, Permission.VIEW)
    auth.revoke(setup.owner, values[0].token_id)
    assert refused(auth, values[0].value, setup.tid)
    auth.rotate(setup.owner, values[1].token_id)
    assert refused(auth, values[1].value, setup.tid)
    auth.detach(setup.owner, values[2].token_id, other_troop)
    with pytest.raises(AccessDenied):
        auth.verify(values[2].value, other_troop, Permission.VIEW)


CHANGES = ["revoke", "rotate", "detach", "report_leak", "replace_pat"]


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_elsewhere_is_refused_within_the_bound(
    opener: Opener, change: str
) -> None:
    """A revoke/rotate/detach/leak report/PAT replacement through another store
    object is refused by the cache once max_staleness has passed since it
    returned (and, with a healthy feed, usually much sooner)."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    writer = TroopAuth(opener())
    setup = make_account(writer)
    token, _ = issue(writer, setup.owner, setup.tid, grant("view"))
    value = setup.pat.value if change == "replace_pat" else token.value
    auth.verify(value, setup.tid, Permission.VIEW)
    assert digest(value) in cache._entries
    if change == "revoke":
        writer.revoke(setup.owner, token.token_id)
    elif change == "rotate":
        writer.rotate(setup.owner, token.token_id)
    elif change == "detach":
        writer.detach(setup.owner, token.token_id, setup.tid)
    elif change == "report_leak":
        assert writer.report_leak(token.value)
    else:
        writer.issue_personal_token(setup.account.id)
    returned = time.monotonic()

    def gone() -> bool:
        try:
            auth.verify(value, setup.tid, Permission.VIEW)
        except InvalidToken:
            return True
        except AccessDenied:  # detach: the token lives, the troop is gone
            return change == "detach"
        return False

    eventually(gone, f"the cache still accepts the value after {change}")
    past_the_bound(returned)
    assert gone()


def test_a_new_troop_reaches_the_cached_pat(opener: Opener) -> None:
    """A troop created elsewhere is reachable by the cached PAT (its grants grew)."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    writer = TroopAuth(opener())
    setup = make_account(writer)
    auth.verify(setup.pat.value, setup.tid, Permission.VIEW)
    troop = writer.create_troop(setup.account.id, "later")
    returned = time.monotonic()

    def reaches() -> bool:
        try:
            auth.verify(setup.pat.value, troop.id, Permission.MANAGE)
        except AccessDenied:  # until the feed tells
            return False
        return True

    eventually(reaches, "the cached PAT never reaches the new troop")
    past_the_bound(returned)
    assert reaches()


def test_a_rolled_back_change_evicts_nothing(opener: Opener) -> None:
    """A transaction that raises publishes nothing: the cached record stays
    while a committed change after it is delivered."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    writer_store = opener()
    writer = TroopAuth(writer_store)
    setup = make_account(writer)
    kept, _ = issue(writer, setup.owner, setup.tid, grant("view"))
    marker, _ = issue(writer, setup.owner, setup.tid, grant("view"))
    for issued in (kept, marker):
        auth.verify(issued.value, setup.tid, Permission.VIEW)
    with (  # noqa: PT012 (the body is the point)
        pytest.raises(ZeroDivisionError),
        writer_store.transaction(setup.account.id) as tx,
    ):
        record = tx.get_token(kept.token_id)
        assert record is not None
        tx.put_token(attrs.evolve(record, revoked=True, grants={}))
        _ = 1 / 0
    writer.revoke(setup.owner, marker.token_id)
    eventually(
        lambda: digest(marker.value) not in cache._entries,
        "the committed revoke never reached the cache",
    )
    assert digest(kept.value) in cache._entries
    auth.verify(kept.value, setup.tid, Permission.VIEW)


def test_an_unparseable_feed_message_empties_the_cache(
    opener: Opener, request: pytest.FixtureRequest
) -> None:
    """A feed message that cannot be parsed is never ignored: the cache empties."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    setup = make_account(auth)
    token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
    auth.verify(token.value, setup.tid, Permission.VIEW)
    assert len(cache) > 0
    inner: Any = cache.inner
    if isinstance(inner, SQLiteStore):
        with sqlite3.connect(inner._path) as conn:
            conn.execute("INSERT INTO changes (digest) VALUES (?)", (b"garbage",))
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("postgres_dsn")) as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (inner.feed_channel, "garbage"))
    eventually(lambda: len(cache) == 0, "the garbage message was ignored")
    auth.verify(token.value, setup.tid, Permission.VIEW)


def test_a_silent_feed_makes_the_cache_read_through(opener: Opener) -> None:
    """With the feed stopped, the cache empties itself once max_staleness has
    passed and answers from the store: a revoke elsewhere is refused."""
    cache = opener.cached()
    auth = TroopAuth(cache)
    writer = TroopAuth(opener())
    setup = make_account(writer)
    token, _ = issue(writer, setup.owner, setup.tid, grant("view"))
    auth.verify(token.value, setup.tid, Permission.VIEW)
    assert cache._sub is not None
    cache._sub.close()
    writer.revoke(setup.owner, token.token_id)
    past_the_bound(time.monotonic())
    assert not cache.healthy
    assert refused(auth, token.value, setup.tid)
    assert len(cache) == 0
    live, _ = issue(writer, setup.owner, setup.tid, grant("view"))
    auth.verify(live.value, setup.tid, Permission.VIEW)
    assert len(cache) == 0, "an unhealthy cache must not fill"


def test_expiry_is_checked_on_every_verify(opener: Opener) -> None:
    """A cached token is refused once its expiry passes, with no change at all."""
    clock = FrozenClock()
    cache = opener.cached()
    auth = TroopAuth(cache, clock=clock)
    setup = make_account(auth)
    expires = clock.now + timedelta(minutes=5)
    token, _ = issue(auth, setup.owner, setup.tid, grant("view"), expires_at=expires)
    auth.verify(token.value, setup.tid, Permission.VIEW)
    assert digest(token.value) in cache._entries
    clock.advance(minutes=5)
    assert refused(auth, token.value, setup.tid)


def test_the_cache_is_bounded(opener: Opener) -> None:
    """At most max_entries records are kept; the oldest filled goes first."""
    cache = opener.cached(max_entries=2)
    auth = TroopAuth(cache)
    setup = make_account(auth, seats=5)
    values = [issue(auth, setup.owner, setup.tid, grant("view"))[0] for _ in "abc"]
    for issued in values:
        auth.verify(issued.value, setup.tid, Permission.VIEW)
    assert len(cache) == 2
    assert digest(values[0].value) not in cache._entries
    assert digest(values[2].value) in cache._entries


def test_close_closes_the_inner_store(opener: Opener) -> None:
    """close() stops the feed and closes the inner store."""
    cache = opener.cached()
    sub = cache._sub
    cache.close()
    assert cache._sub is None
    assert sub is not None
    with (
        pytest.raises(StoreError, match="closed"),
        cache.inner.transaction("acct_x", write=False),
    ):
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_has_a_feed_of_its_own(tmp_path: Path) -> None:
    """A child forked after the cache started starts empty, never uses the
    parent's feed, and sees a change the parent makes (SQLite)."""
    cache = CachedStore(SQLiteStore(tmp_path / "fork.db"), max_staleness=STALENESS)
    eventually(lambda: cache.healthy, "the feed never became healthy")
    auth = TroopAuth(cache)
    setup = make_account(auth)
    token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
    auth.verify(token.value, setup.tid, Permission.VIEW)
    parent_sub = cache._sub
    read, write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through its exit code)
        code = 1
        try:
            os.close(read)
            os.close(go_write)
            fresh = len(cache) == 0 and cache._sub is None and not cache.healthy
            auth.verify(token.value, setup.tid, Permission.VIEW)
            own = cache._sub is not None and cache._sub is not parent_sub
            os.write(write, b"1")
            os.read(go_read, 1)  # the parent revoked
            deadline = time.monotonic() + PATIENCE
            seen = False
            while time.monotonic() < deadline and not seen:
                seen = refused(auth, token.value, setup.tid)
                time.sleep(0.005)
            code = 0 if fresh and own and seen else 2
        finally:
            os._exit(code)
    os.close(write)
    os.close(go_read)
    assert os.read(read, 1) == b"1"
    auth.revoke(setup.owner, token.token_id)
    os.write(go_write, b"1")
    _, status = os.waitpid(pid, 0)
    os.close(read)
    os.close(go_write)
    cache.close()
    assert os.waitstatus_to_exitcode(status) == 0


def _terminate_listener(dsn: str, application_name: str) -> int:
    """pg_terminate_backend on the feed's connection; how many were ended."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return sum(1 for (ended,) in rows if ended)


def test_a_killed_listener_never_lets_a_revoked_value_through(
    postgres_dsn: str, postgres_schema: str, postgres_pool: Any
) -> None:
    """The listener's connection is terminated while another store revokes:
    no verify that starts max_staleness after the revoke returned accepts the
    value, and the feed comes back (healthy, filling again) on its own."""
    from troopauth.postgres import PostgresStore

    PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
    empty_postgres_schema(postgres_pool, postgres_schema)
    cache = CachedStore(
        PostgresStore(postgres_dsn, schema=postgres_schema, max_size=2),
        max_staleness=STALENESS,
    )
    writer_store = PostgresStore(postgres_dsn, schema=postgres_schema, max_size=2)
    try:
        eventually(lambda: cache.healthy, "the feed never became healthy")
        auth, writer = TroopAuth(cache), TroopAuth(writer_store)
        setup = make_account(writer)
        token, _ = issue(writer, setup.owner, setup.tid, grant("view"))
        auth.verify(token.value, setup.tid, Permission.VIEW)
        assert digest(token.value) in cache._entries
        sub: Any = cache._sub
        assert _terminate_listener(postgres_dsn, sub.application_name) == 1
        writer.revoke(setup.owner, token.token_id)
        bound = time.monotonic() + STALENESS.total_seconds()
        checked = 0
        while time.monotonic() < bound + 0.5:
            started = time.monotonic()
            outcome = refused(auth, token.value, setup.tid)
            if started >= bound:
                assert outcome, "a revoked value was accepted past max_staleness"
                checked += 1
        assert checked > 0
        eventually(lambda: cache.healthy, "the feed never came back")
        live, _ = issue(writer, setup.owner, setup.tid, grant("view"))

        def fills() -> bool:
            auth.verify(live.value, setup.tid, Permission.VIEW)
            return digest(live.value) in cache._entries

        eventually(fills, "the cache never fills again after the reconnect")
        writer.revoke(setup.owner, live.token_id)
        eventually(
            lambda: refused(auth, live.value, setup.tid),
            "the feed delivers nothing after the reconnect",
        )
    finally:
        cache.close()
        writer_store.close()


def _cluster(action: str) -> None:
    """Stop or start the machine's PostgreSQL cluster (Debian's tools)."""
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
        + (["-m", "fast"] if action == "stop" else []),
        check=True,
        capture_output=True,
        timeout=120,
    )


def _cluster_answers(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@pytest.mark.slow
def test_a_restarted_server_never_lets_a_stale_cache_answer(
    postgres_dsn: str, postgres_schema: str, postgres_pool: Any
) -> None:
    """The PostgreSQL server stops under a running cache: once max_staleness
    has passed, every verify raises StoreError (never an answer from the
    stale cache); when the server is back, the cache heals and fills again.
    (The server is started again in a ``finally``; the suite runs its tests
    one at a time, so no other PostgreSQL test runs meanwhile.)"""
    from troopauth.postgres import PostgresStore

    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("CI=true: this test needs Debian's pg_ctlcluster")
        pytest.skip("needs the machine's own PostgreSQL cluster (pg_ctlcluster)")
    PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
    empty_postgres_schema(postgres_pool, postgres_schema)
    inner = PostgresStore(
        postgres_dsn, schema=postgres_schema, min_size=0, max_size=2, timeout=2
    )  # a short timeout: a verify while the server is down fails in seconds
    cache = CachedStore(inner, max_staleness=STALENESS)
    try:
        eventually(lambda: cache.healthy, "the feed never became healthy")
        auth = TroopAuth(cache)
        setup = make_account(auth)
        token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
        auth.verify(token.value, setup.tid, Permission.VIEW)
        assert digest(token.value) in cache._entries
        try:
            _cluster("stop")
            bound = time.monotonic() + STALENESS.total_seconds()
            deadline = bound + PATIENCE
            checked = 0
            while checked < 3 and time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    auth.verify(token.value, setup.tid, Permission.VIEW)
                except StoreError:
                    answered = False
                else:
                    answered = True
                if started >= bound:
                    assert not answered, "a stale cache answered past max_staleness"
                    checked += 1
            assert checked > 0
            assert not cache.healthy
        finally:
            _cluster("start")
            eventually(lambda: _cluster_answers(postgres_dsn), "PostgreSQL is back")
            postgres_pool.check()  # the session pool's connections died with it

        def fills() -> bool:
            try:
                auth.verify(token.value, setup.tid, Permission.VIEW)
            except StoreError:
                return False
            return cache.healthy and digest(token.value) in cache._entries

        eventually(fills, "the cache never healed after the restart")
    finally:
        cache.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_never_ends_the_parents_listener(
    postgres_dsn: str, postgres_schema: str, postgres_pool: Any
) -> None:
    """A child forked after a PostgreSQL cache started never uses the parent's
    listener, and closing what it inherited (as its exit would) leaves the
    parent's listener connection alive: the same backend, still healthy."""
    from troopauth import postgres

    postgres.PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
    cache = CachedStore(
        postgres.PostgresStore(postgres_dsn, schema=postgres_schema, max_size=2),
        max_staleness=STALENESS,
    )
    try:
        eventually(lambda: cache.healthy, "the feed never became healthy")
        sub: Any = cache._sub
        backend = sub._conn.info.backend_pid
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child reports through its exit code)
            code = 1
            try:
                fresh = cache._sub is None and not cache.healthy and len(cache) == 0
                for conn in postgres._INHERITED:
                    conn.close()  # what the child's exit would do
                cache.close()
                code = 0 if fresh else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        exited = time.monotonic()
        eventually(
            lambda: cache._fresh_until - STALENESS.total_seconds() > exited,
            "the parent's feed sent no heartbeat after the child exited",
        )
        assert sub._conn is not None
        assert sub._conn.info.backend_pid == backend, "the listener had to reconnect"
    finally:
        cache.close()


def test_a_gap_in_the_sqlite_feed_empties_the_cache(tmp_path: Path) -> None:
    """Rows pruned before the poller read them (a gap in the sequence) empty
    the cache: the poller cannot know what it missed."""
    path = tmp_path / "gap.db"
    cache = CachedStore(SQLiteStore(path), max_staleness=STALENESS)
    try:
        eventually(lambda: cache.healthy, "the feed never became healthy")
        auth = TroopAuth(cache)
        setup = make_account(auth)
        token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
        auth.verify(token.value, setup.tid, Permission.VIEW)
        assert digest(token.value) in cache._entries
        unrelated = [bytes([n]) * 32 for n in range(3)]
        with sqlite3.connect(path) as conn:  # one commit: the poller sees a gap
            conn.executemany(
                "INSERT INTO changes (digest) VALUES (?)", [(d,) for d in unrelated]
            )
            conn.execute(
                "DELETE FROM changes WHERE seq < (SELECT max(seq) FROM changes)"
            )
        eventually(lambda: len(cache) == 0, "the gap was not noticed")
    finally:
        cache.close()


def test_a_change_too_big_for_one_notify_resets(
    postgres_dsn: str, postgres_schema: str, postgres_pool: Any
) -> None:
    """A transaction replacing more tokens than one NOTIFY payload can name
    sends a reset: the whole cache empties, unrelated tokens included."""
    from troopauth.postgres import PostgresStore

    PostgresStore(pool=postgres_pool, schema=postgres_schema).close()
    empty_postgres_schema(postgres_pool, postgres_schema)
    cache = CachedStore(
        PostgresStore(postgres_dsn, schema=postgres_schema, max_size=2),
        max_staleness=STALENESS,
    )
    writer_store = PostgresStore(postgres_dsn, schema=postgres_schema, max_size=2)
    try:
        eventually(lambda: cache.healthy, "the feed never became healthy")
        auth, writer = TroopAuth(cache), TroopAuth(writer_store)
        setup = make_account(writer, seats=200)
        kept, _ = issue(writer, setup.owner, setup.tid, grant("view"))
        many = [
            writer.issue_token(setup.owner, setup.tid, grant("view")).token_id
            for _ in range(130)
        ]
        auth.verify(kept.value, setup.tid, Permission.VIEW)
        assert digest(kept.value) in cache._entries
        with writer_store.transaction(setup.account.id) as tx:
            for token_id in many:
                record = tx.get_token(token_id)
                assert record is not None
                tx.put_token(attrs.evolve(record, name="renamed"))
        eventually(lambda: len(cache) == 0, "an oversized change did not reset")
        auth.verify(kept.value, setup.tid, Permission.VIEW)
    finally:
        cache.close()
        writer_store.close()


class _Plain:
    """A transaction that does not say what it published (no ``changed``)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.account_id = inner.account_id

    def __getattr__(self, name: str) -> Any:
        if name == "changed":
            raise AttributeError(name)
        return getattr(self._inner, name)


class _QuietAdapter:
    """A third party's store with a feed whose transactions list nothing."""

    cheap_lookup = False

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.lookup = inner.lookup
        self.subscribe = inner.subscribe
        self.troop_account = inner.troop_account
        self.token_account = inner.token_account
        self.close = inner.close

    @contextlib.contextmanager
    def transaction(self, account_id: str, *, write: bool = True) -> Iterator[Any]:
        """The SQLite transaction, without its ``changed`` list."""
        with self.inner.transaction(account_id, write=write) as tx:
            yield _Plain(tx)


def test_read_your_writes_without_a_changed_list(tmp_path: Path) -> None:
    """Over an adapter whose transactions do not list what they published,
    the cache reads each replaced token first and still evicts at once."""
    inner = SQLiteStore(tmp_path / "quiet.db")
    adapter: Any = _QuietAdapter(inner)
    cache = CachedStore(adapter, max_staleness=timedelta(hours=1))
    try:
        eventually(lambda: cache.healthy, "the feed never became healthy")
        inner_subscription = cache._sub
        assert inner_subscription is not None
        inner_subscription.close()  # no help from the feed: only the cache itself
        auth = TroopAuth(cache)
        setup = make_account(auth)
        token, _ = issue(auth, setup.owner, setup.tid, grant("view"))
        auth.verify(token.value, setup.tid, Permission.VIEW)
        assert cache.healthy
        assert digest(token.value) in cache._entries
        auth.revoke(setup.owner, token.token_id)
        assert refused(auth, token.value, setup.tid)
    finally:
        cache.close()


def test_the_sqlite_change_log_is_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The change log keeps about its newest FEED_KEEP rows, never more than
    FEED_KEEP plus one pruning interval."""
    from troopauth import sqlite

    monkeypatch.setattr(sqlite, "FEED_KEEP", 10)
    monkeypatch.setattr(sqlite, "_FEED_PRUNE_EVERY", 4)
    path = tmp_path / "pruned.db"
    with SQLiteStore(path) as store:
        auth = TroopAuth(store)
        setup = make_account(auth, seats=60)
        for _ in range(50):
            issued = auth.issue_token(setup.owner, setup.tid, grant("view"))
            auth.revoke(setup.owner, issued.token_id)
        with sqlite3.connect(path) as conn:
            count, newest = conn.execute(
                "SELECT count(*), max(seq) FROM changes"
            ).fetchone()
    assert newest >= 50
    assert count <= 10 + 4


def test_web_glue_verifies_a_cached_store_inline(tmp_path: Path) -> None:
    """The ASGI middleware and the MCP verifier run a cached store's lookup
    inline (no worker thread), as a MemoryStore's; a plain SQL store's goes
    to a thread."""
    from troopauth.asgi import TroopAuthMiddleware
    from troopauth.mcp import TroopTokenVerifier

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """Nothing: only the middleware's choice is looked at."""

    plain = SQLiteStore(tmp_path / "plain.db")
    cache = CachedStore(SQLiteStore(tmp_path / "cached.db"))
    try:
        for store, offloads in ((plain, True), (cache, False), (MemoryStore(), False)):
            auth = TroopAuth(store)
            assert TroopAuthMiddleware(app, auth=auth).guard.offload is offloads
            troop = make_account(auth).tid
            assert TroopTokenVerifier(auth, troop)._offload is offloads
    finally:
        cache.close()
        plain.close()
