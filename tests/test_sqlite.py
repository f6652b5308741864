"""SQLiteStore specifics: pragmas, schema, durability, and races for the last seat
between threads and between processes sharing one file."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import pytest

from troopauth import (
    AuditAction,
    InvalidArgument,
    InvalidToken,
    MemoryStore,
    Permission,
    SeatsExhausted,
    SQLiteStore,
    StoreError,
    TroopAuth,
)
from troopauth import sqlite as sqlite_module
from troopauth.serialization import converter
from troopauth.sqlite import _MIGRATIONS, SCHEMA_VERSION
from troopauth.tokens import digest

from .store_helpers import (
    GRANT,
    DeliberateError,
)
from .store_helpers import StoreSetup as Setup
from .store_helpers import store_setup as _setup
from .store_helpers import write_then_raise as _write_then_raise


def _write_version_1(path: Path, store: MemoryStore) -> None:
    """A file in the schema version 1 layout holding what *store* holds, written
    row by row as troopauth 0.1 wrote it."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in _MIGRATIONS[1].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1)")
        for a in store._accounts.values():
            conn.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (a.id, a.seats, int(a.audit_log), a.created_at.isoformat(),
                 a.seats_used, a.personal_token_id, a.audit_seq, a.audit_head),
            )  # fmt: skip
        for t in store._troops.values():
            conn.execute(
                "INSERT INTO troops VALUES (?, ?, ?, ?, ?, ?)",
                (t.id, t.account_id, t.name, t.created_at.isoformat(),
                 t.audit_seq, t.audit_head),
            )  # fmt: skip
        for k in store._tokens.values():
            conn.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (k.id, k.account_id, k.kind.value, k.digest, k.hint, k.name,
                 k.created_at.isoformat(),
                 None if k.expires_at is None else k.expires_at.isoformat(),
                 k.expires_ts, sqlite_module._dump_grants(k.grants),
                 int(k.revoked), int(k.seated), k.generation),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO attachments VALUES (?, ?)",
                [(troop_id, k.id) for troop_id in k.grants],
            )
        for m in store._members.values():
            conn.execute(
                "INSERT INTO members VALUES (?, ?, ?)",
                (m.account_id, m.id, sqlite_module._dump_grants(m.grants)),
            )
        for (account_id, troop_id), events in store._audit.items():
            log = troop_id or f"account:{account_id}"
            conn.executemany(
                "INSERT INTO audit VALUES (?, ?, ?, ?)",
                [
                    (log, e.seq, account_id, json.dumps(converter.unstructure(e)))
                    for e in events
                ],
            )


def _pragmas(store: SQLiteStore) -> tuple[str, int, int]:
    pair = store._take()
    try:
        return _conn_pragmas(pair[0])
    finally:
        store._give(pair)


def _conn_pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    return journal, synchronous, foreign_keys


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run *fn* in a fresh thread (so it gets its own connection); return its result."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(fn()))
    thread.start()
    thread.join(timeout=30)
    assert box, "the thread did not finish"
    return box[0]


def _schema_versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows}
    finally:
        conn.close()


def _open_fds_on(path: Path) -> int:
    target = os.path.realpath(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == target:
                count += 1
        except OSError:
            continue
    return count


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the test's database file lives."""
    return tmp_path / "troopauth.db"


class TestPragmas:
    """Every connection runs WAL, synchronous=FULL and enforces foreign keys."""

    def test_first_connection(self, db: Path) -> None:
        """The connection that opened the store has all three pragmas set."""
        with SQLiteStore(db) as store:
            assert _pragmas(store) == ("wal", 2, 1)

    def test_every_pooled_connection(self, db: Path) -> None:
        """Connections opened while others are busy have the pragmas too (they
        are per connection)."""
        with SQLiteStore(db) as store:
            pairs = [store._take() for _ in range(3)]
            assert len({id(conn) for conn, _ in pairs}) == 3
            assert [_conn_pragmas(conn) for conn, _ in pairs] == [("wal", 2, 1)] * 3
            for pair in pairs:
                store._give(pair)

    def test_second_store_on_the_same_file(self, db: Path) -> None:
        """A second store opening an existing file sets the pragmas again."""
        with SQLiteStore(db), SQLiteStore(db) as second:
            assert _pragmas(second) == ("wal", 2, 1)


class TestSchema:
    """The schema is versioned, migrated once, and a newer one is refused."""

    def test_version_recorded(self, db: Path) -> None:
        """A fresh file holds every schema version, up to the current one."""
        SQLiteStore(db).close()
        assert _schema_versions(db) == list(range(1, SCHEMA_VERSION + 1))

    def test_reopen_does_not_remigrate(self, db: Path, clock: Any) -> None:
        """Opening an existing file again keeps one version row and all the data."""
        with SQLiteStore(db) as first:
            s = _setup(TroopAuth(first, clock=clock))
            issued = TroopAuth(first, clock=clock).issue_token(
                s.owner, s.troop_id, GRANT
            )
            with SQLiteStore(db) as second:
                again = TroopAuth(second, clock=clock)
                assert (
                    again.verify(
                        issued.value, s.troop_id, Permission.EDIT, "deploy"
                    ).token_id
                    == issued.token_id
                )
                assert [t.token_id for t in again.tokens(s.troop_id)] == [
                    issued.token_id
                ]
        with SQLiteStore(db) as third:
            assert TroopAuth(third, clock=clock).seats(s.account_id).used == 1
        assert _schema_versions(db) == list(range(1, SCHEMA_VERSION + 1))

    def test_version_1_file_is_migrated(self, db: Path, clock: Any) -> None:
        """A file written at schema version 1 opens migrated, its data whole:
        tokens verify, the revoked stay revoked, seats and logs are kept, and
        the listings (a troop's tokens oldest first, its members) are indexed."""
        auth = TroopAuth(MemoryStore(), clock=clock)
        s = _setup(auth)
        kept = auth.issue_token(s.owner, s.troop_id, GRANT, name="kept")
        clock.advance(seconds=1)
        gone = auth.issue_token(s.owner, s.troop_id, GRANT)
        auth.revoke(s.owner, gone.token_id)
        clock.advance(seconds=1)
        later = auth.issue_token(s.owner, s.troop_id, GRANT, name="later")
        auth.add_member(s.owner, s.troop_id, "alice", GRANT)
        events = auth.audit_log(s.troop_id)
        _write_version_1(db, auth.store)
        assert _schema_versions(db) == [1]
        with SQLiteStore(db) as new:
            again = TroopAuth(new, clock=clock)
            again.verify(kept.value, s.troop_id, Permission.EDIT, "deploy")
            with pytest.raises(InvalidToken):
                again.authenticate(gone.value)
            assert again.seats(s.account_id).used == 2
            assert again.audit_log(s.troop_id) == events
            assert [t.token_id for t in again.tokens(s.troop_id)] == [
                kept.token_id,
                later.token_id,
            ]
            assert [t.token_id for t in again.tokens(s.troop_id, limit=1)] == [
                kept.token_id
            ]
            assert [m.member_id for m in again.members(s.troop_id)] == ["alice"]
            again.rotate(s.owner, kept.token_id)  # writes work on the new tables
            again.remove_member(s.owner, s.troop_id, "alice")
            assert again.members(s.troop_id) == []
        assert _schema_versions(db) == list(range(1, SCHEMA_VERSION + 1))

    def test_newer_schema_refused(self, db: Path) -> None:
        """A file whose schema_version says 99 raises StoreError and is left as is."""
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (99)")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError, match="99"):
            SQLiteStore(db)
        assert _tables(db) == {"schema_version"}
        assert _schema_versions(db) == [99]

    def test_newer_schema_on_a_used_file_refused(self, db: Path) -> None:
        """A troopauth file later migrated to version 99 is refused on open."""
        SQLiteStore(db).close()
        conn = sqlite3.connect(db)
        conn.execute("INSERT INTO schema_version VALUES (99)")
        conn.commit()
        conn.close()
        with pytest.raises(StoreError):
            SQLiteStore(db)

    @pytest.mark.skipif(
        not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files"
    )
    def test_refused_open_leaves_no_file_open(self, db: Path) -> None:
        """A store that refuses to open closes the connection it made."""
        SQLiteStore(db).close()
        conn = sqlite3.connect(db)
        conn.execute("INSERT INTO schema_version VALUES (99)")
        conn.commit()
        conn.close()
        before = _open_fds_on(db)
        with pytest.raises(StoreError) as info:
            SQLiteStore(db)
        # The exception (and its traceback) are still alive here, as they would
        # be in a caller's error handler.
        assert info.value is not None
        assert _open_fds_on(db) == before


class TestDurability:
    """What a call committed is still there after close and reopen."""

    def test_everything_survives_reopen(self, db: Path, clock: Any) -> None:
        """Accounts, troops, tokens, seats, members and audit logs survive a reopen."""
        with SQLiteStore(db) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=4)
            other = auth.create_troop(s.account_id, "search")
            kept = auth.issue_token(s.owner, s.troop_id, GRANT, name="kept")
            auth.attach(s.owner, kept.token_id, other.id, GRANT)
            rotated = auth.issue_token(s.owner, s.troop_id, GRANT, name="rotated")
            clock.advance(seconds=1)
            renewed = auth.rotate(s.owner, rotated.token_id)
            auth.add_member(s.owner, s.troop_id, "alice", GRANT)
            before = (
                auth.seats(s.account_id),
                auth.tokens(s.troop_id),
                auth.tokens(other.id),
                auth.audit_log(s.troop_id),
                auth.audit_log(other.id),
                auth.account_audit_log(s.account_id),
                auth.member(s.account_id, "alice"),
            )
        with SQLiteStore(db) as store:
            auth = TroopAuth(store, clock=clock)
            after = (
                auth.seats(s.account_id),
                auth.tokens(s.troop_id),
                auth.tokens(other.id),
                auth.audit_log(s.troop_id),
                auth.audit_log(other.id),
                auth.account_audit_log(s.account_id),
                auth.member(s.account_id, "alice"),
            )
            assert after == before
            assert after[0].used == 2
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
            with pytest.raises(InvalidToken):
                auth.verify(rotated.value, s.troop_id, Permission.EDIT, "deploy")

    def test_revoke_survives_reopen(self, db: Path, clock: Any) -> None:
        """A revoke that returned is still in force on a fresh store of the file."""
        with SQLiteStore(db) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=2)
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)
            auth.revoke(s.owner, issued.token_id)
        with SQLiteStore(db) as store:
            auth = TroopAuth(store, clock=clock)
            with pytest.raises(InvalidToken):
                auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
            with pytest.raises(InvalidToken):
                auth.authenticate(issued.value)
            assert auth.seats(s.account_id).used == 0
            assert auth.tokens(s.troop_id) == []
            actions = [e.action for e in auth.audit_log(s.troop_id)]
            assert actions == [AuditAction.ISSUE, AuditAction.REVOKE]

    def test_revoke_seen_by_a_store_open_at_the_time(
        self, db: Path, clock: Any
    ) -> None:
        """Another store already open on the file sees a revoke at once."""
        with SQLiteStore(db) as writer, SQLiteStore(db) as reader:
            auth = TroopAuth(writer, clock=clock)
            watcher = TroopAuth(reader, clock=clock)
            s = _setup(auth, seats=2)
            issued = auth.issue_token(s.owner, s.troop_id, GRANT)
            assert (
                watcher.verify(
                    issued.value, s.troop_id, Permission.EDIT, "deploy"
                ).token_id
                == issued.token_id
            )
            auth.revoke(s.owner, issued.token_id)
            with pytest.raises(InvalidToken):
                watcher.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")


_AFTER_CLOSE: dict[str, Callable[[SQLiteStore, TroopAuth, Setup, str], object]] = {
    "lookup": lambda st, a, s, v: st.lookup(digest(v)),
    "transaction": lambda st, a, s, v: st.transaction(s.account_id).__enter__(),
    "troop_account": lambda st, a, s, v: st.troop_account(s.troop_id),
    "verify": lambda st, a, s, v: a.verify(v, s.troop_id, Permission.EDIT, "deploy"),
    "authenticate": lambda st, a, s, v: a.authenticate(v),
    "issue_token": lambda st, a, s, v: a.issue_token(s.owner, s.troop_id, GRANT),
    "create_troop": lambda st, a, s, v: a.create_troop(s.account_id, "more"),
    "seats": lambda st, a, s, v: a.seats(s.account_id),
    "tokens": lambda st, a, s, v: a.tokens(s.troop_id),
    "audit_log": lambda st, a, s, v: a.audit_log(s.troop_id),
}


class TestClose:
    """close() ends the store; ``with`` closes it."""

    @pytest.mark.parametrize("call", sorted(_AFTER_CLOSE))
    def test_any_call_after_close(self, db: Path, clock: Any, call: str) -> None:
        """After close(), every store and facade call raises StoreError."""
        store = SQLiteStore(db)
        auth = TroopAuth(store, clock=clock)
        s = _setup(auth)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        store.close()
        with pytest.raises(StoreError):
            _AFTER_CLOSE[call](store, auth, s, issued.value)

    def test_close_reaches_every_thread(self, db: Path) -> None:
        """A thread that used the store before close() gets StoreError afterwards."""
        store = SQLiteStore(db)
        _in_thread(lambda: store.troop_account("none"))
        store.close()
        outcome = _in_thread(lambda: _raises(lambda: store.troop_account("none")))
        assert isinstance(outcome, StoreError)

    def test_with_closes(self, db: Path) -> None:
        """``with SQLiteStore(path) as s`` yields the store and closes it on exit."""
        with SQLiteStore(db) as store:
            assert isinstance(store, SQLiteStore)
            assert store.troop_account("none") is None
        with pytest.raises(StoreError):
            store.lookup(b"\0" * 32)

    def test_with_closes_on_error(self, db: Path) -> None:
        """The store is closed even when the ``with`` body raises."""
        store = SQLiteStore(db)
        with pytest.raises(RuntimeError), store:
            raise RuntimeError("boom")
        with pytest.raises(StoreError):
            store.lookup(b"\0" * 32)


def _raises(fn: Callable[[], object]) -> BaseException | None:
    try:
        fn()
    except Exception as exc:
        return exc
    return None


# -- transactions ------------------------------------------------------------------


class TestTransaction:
    """A transaction commits whole or not at all; a busy file is a StoreError."""

    def test_raising_transaction_leaves_nothing(self, db: Path, clock: Any) -> None:
        """put_token then an exception inside the transaction: nothing is stored."""
        with SQLiteStore(db) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=3)
            template = auth.issue_token(s.owner, s.troop_id, GRANT)
            existing = store.lookup(digest(template.value))
            assert existing is not None
            ghost_digest = digest("cpt_pat_" + "g" * 36)
            ghost = attrs.evolve(existing, id="tok_ghost", digest=ghost_digest)
            with pytest.raises(DeliberateError):
                _write_then_raise(store, s.account_id, ghost)
            assert store.lookup(ghost_digest) is None
            with store.transaction(s.account_id, write=False) as tx:
                assert tx.get_token("tok_ghost") is None
                attached = {t.id for t in tx.attached_tokens(s.troop_id)}
                assert existing.id in attached
                assert "tok_ghost" not in attached
            assert auth.seats(s.account_id).used == 1
            # The connection is usable again: no transaction was left open.
            auth.issue_token(s.owner, s.troop_id, GRANT)
            assert auth.seats(s.account_id).used == 2

    def test_raising_transaction_leaves_nothing_on_disk(
        self, db: Path, clock: Any
    ) -> None:
        """A fresh store of the file does not see the rolled-back write either."""
        with SQLiteStore(db) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=3)
            template = auth.issue_token(s.owner, s.troop_id, GRANT)
            existing = store.lookup(digest(template.value))
            assert existing is not None
            ghost_digest = digest("cpt_pat_" + "h" * 36)
            ghost = attrs.evolve(existing, id="tok_ghost", digest=ghost_digest)
            with pytest.raises(DeliberateError):
                _write_then_raise(store, s.account_id, ghost)
        with SQLiteStore(db) as again:
            assert again.lookup(ghost_digest) is None
            assert TroopAuth(again, clock=clock).seats(s.account_id).used == 1


_BUSY_CALLS: dict[str, Callable[[TroopAuth, Setup], object]] = {
    "issue_token": lambda a, s: a.issue_token(s.owner, s.troop_id, GRANT),
    "create_troop": lambda a, s: a.create_troop(s.account_id, "more"),
    "issue_personal_token": lambda a, s: a.issue_personal_token(s.account_id),
    "add_member": lambda a, s: a.add_member(s.owner, s.troop_id, "bob", GRANT),
    "create_account": lambda a, s: a.create_account(seats=1),
}


class TestBusyWriter:
    """Another writer holding the file past the timeout yields StoreError."""

    @pytest.mark.parametrize("call", sorted(_BUSY_CALLS))
    def test_management_call_times_out(self, db: Path, clock: Any, call: str) -> None:
        """With BEGIN IMMEDIATE held elsewhere, a change raises StoreError, not
        sqlite3.OperationalError, and commits nothing."""
        with SQLiteStore(db, timeout=0.2) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=3)
            blocker = sqlite3.connect(db, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                with pytest.raises(StoreError) as info:
                    _BUSY_CALLS[call](auth, s)
                assert not isinstance(info.value, sqlite3.Error)
                assert info.value.__cause__ is None
                # Readers are not blocked by the writer (WAL).
                assert auth.authenticate(s.pat_value) == s.owner
                assert auth.seats(s.account_id).used == 0
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            _BUSY_CALLS[call](auth, s)

    def test_refused_change_left_nothing(self, db: Path, clock: Any) -> None:
        """After a timed-out issue, the seat and the token list are unchanged."""
        with SQLiteStore(db, timeout=0.2) as store:
            auth = TroopAuth(store, clock=clock)
            s = _setup(auth, seats=1)
            blocker = sqlite3.connect(db, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                with pytest.raises(StoreError):
                    auth.issue_token(s.owner, s.troop_id, GRANT)
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            assert auth.seats(s.account_id).used == 0
            assert auth.tokens(s.troop_id) == []
            assert auth.audit_log(s.troop_id) == []
            auth.issue_token(s.owner, s.troop_id, GRANT)
            with pytest.raises(SeatsExhausted):
                auth.issue_token(s.owner, s.troop_id, GRANT)


_THREADS_SCRIPT = """
import resource, sys, threading
from troopauth import Permission, SQLiteStore, TroopAuth

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
store = SQLiteStore(sys.argv[1])
auth = TroopAuth(store)
account = auth.create_account(seats=1)
troop = auth.create_troop(account.id, "t")
value = auth.issue_personal_token(account.id).value
failures = []

def request():
    try:
        auth.verify(value, troop.id, Permission.VIEW)
    except Exception as exc:
        failures.append(repr(exc))

for _ in range(1000):  # a thread per request, one after another
    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
threads = [threading.Thread(target=request) for _ in range(20)]  # and 20 at once
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
import os
path = os.path.realpath(sys.argv[1])
open_on_db = sum(
    1 for fd in os.listdir("/proc/self/fd")
    if os.path.realpath(f"/proc/self/fd/{fd}") in (path, path + "-wal", path + "-shm")
)
print(len(failures), open_on_db, len(store._open), flush=True)
"""


class TestConnectionsAreBounded:
    """A thread-per-request server cannot exhaust the process's descriptors."""

    @pytest.mark.skipif(
        not os.path.isdir("/proc/self/fd"), reason="needs /proc to list open files"
    )
    def test_thousand_short_lived_threads_under_a_low_limit(self, db: Path) -> None:
        """1,000 threads that each verify once and end, then 20 at once, under
        RLIMIT_NOFILE=64: every verify succeeds, and afterwards at most
        max_idle connections (8) stay open on the file."""
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT, str(db)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        failures, open_on_db, connections = map(int, done.stdout.split())
        assert failures == 0
        assert connections <= 8
        assert open_on_db <= 3 * 8  # the file and its -wal per connection (-shm mapped)

    def test_idle_connections_are_reused(self, db: Path) -> None:
        """Calls one after another reuse one connection: none is opened per call."""
        with SQLiteStore(db) as store:
            auth = TroopAuth(store)
            s = _setup(auth)
            for _ in range(50):
                auth.authenticate(s.pat_value)
                auth.seats(s.account_id)
            assert len(store._open) == 1

    def test_max_idle_zero_closes_every_connection(self, db: Path) -> None:
        """With max_idle=0 nothing stays open between calls."""
        with SQLiteStore(db, max_idle=0) as store:
            auth = TroopAuth(store)
            s = _setup(auth)
            auth.authenticate(s.pat_value)
            assert len(store._open) == 0

    @pytest.mark.parametrize("bad", [-1, 1.5, True, "8"])
    def test_bad_max_idle(self, db: Path, bad: object) -> None:
        """max_idle must be a whole number, 0 or more."""
        with pytest.raises(InvalidArgument):
            SQLiteStore(db, max_idle=bad)  # type: ignore[arg-type]


class TestFileModes:
    """A new database and its -wal and -shm files are private to their owner."""

    def test_new_files_are_0600(self, tmp_path: Path) -> None:
        """Created under a permissive umask, the files are still 0600."""
        path = tmp_path / "new.db"
        old = os.umask(0o022)
        try:
            with SQLiteStore(path) as store:
                auth = TroopAuth(store)
                _setup(auth)
                modes = {
                    p.name: p.stat().st_mode & 0o777
                    for p in tmp_path.iterdir()
                    if p.name.startswith("new.db")
                }
        finally:
            os.umask(old)
        assert modes == {"new.db": 0o600, "new.db-wal": 0o600, "new.db-shm": 0o600}

    def test_existing_file_keeps_its_mode(self, tmp_path: Path) -> None:
        """An existing file's mode is the owner's business: left as it is."""
        path = tmp_path / "old.db"
        SQLiteStore(path).close()
        path.chmod(0o640)
        SQLiteStore(path).close()
        assert path.stat().st_mode & 0o777 == 0o640
