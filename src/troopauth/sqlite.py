"""``SQLiteStore``: the embedded default, on the standard library's sqlite3.

One file, WAL journal, ``synchronous=FULL`` (a revoke that returned survives a
power cut), a busy timeout, and ``BEGIN IMMEDIATE`` for every change, so that
threads and processes sharing the file are serialised: two racing for the
last seat never both win. Each thread gets its own connection. The schema is
versioned and migrated when the store opens.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

from .errors import InvalidArgument, StoreError
from .grant import Grant
from .models import AuditEvent, Kind
from .permission import Permission
from .scope import Scope
from .serialization import converter
from .store import (
    MICROSECOND,
    AccountRecord,
    ClosingStore,
    FeedListener,
    MemberRecord,
    TokenRecord,
    TroopRecord,
    epoch_micros,
    from_epoch_micros,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

log = logging.getLogger("troopauth")

#: The change feed keeps at least this many of its newest rows; older ones are
#: pruned (a reader that fell further behind sees a gap and resets).
FEED_KEEP = 10_000
#: Prune the change feed every this many rows.
_FEED_PRUNE_EVERY = 256
#: How often a feed reader polls (seconds) at most: a change reaches every
#: process within about this, plus the time to read it.
FEED_POLL = 0.005

SCHEMA_VERSION = 3

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    seats INTEGER NOT NULL,
    audit_log INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    seats_used INTEGER NOT NULL,
    personal_token_id TEXT,
    audit_seq INTEGER NOT NULL,
    audit_head TEXT NOT NULL
);
CREATE TABLE troops (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    audit_seq INTEGER NOT NULL,
    audit_head TEXT NOT NULL
);
CREATE INDEX troops_by_account ON troops(account_id);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    digest BLOB NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    expires_ts REAL,
    grants TEXT NOT NULL,
    revoked INTEGER NOT NULL,
    seated INTEGER NOT NULL,
    generation INTEGER NOT NULL
);
CREATE INDEX tokens_seated_expiry ON tokens(account_id, expires_ts)
    WHERE seated = 1 AND expires_ts IS NOT NULL;
CREATE TABLE attachments (
    troop_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    PRIMARY KEY (troop_id, token_id)
) WITHOUT ROWID;
CREATE TABLE members (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    grants TEXT NOT NULL,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
CREATE TABLE audit (
    log TEXT NOT NULL,
    seq INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (log, seq)
) WITHOUT ROWID;
""",
    # 2: tokens keyed by digest (WITHOUT ROWID), so that verify's lookup is
    # one B-tree search instead of the digest index and then the table.
    2: """
CREATE TABLE tokens_by_digest (
    digest BLOB PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    hint TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    expires_ts REAL,
    grants TEXT NOT NULL,
    revoked INTEGER NOT NULL,
    seated INTEGER NOT NULL,
    generation INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO tokens_by_digest (digest, id, account_id, kind, hint, name,
    created_at, expires_at, expires_ts, grants, revoked, seated, generation)
    SELECT digest, id, account_id, kind, hint, name, created_at, expires_at,
    expires_ts, grants, revoked, seated, generation FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_by_digest RENAME TO tokens;
CREATE INDEX tokens_seated_expiry ON tokens(account_id, expires_ts)
    WHERE seated = 1 AND expires_ts IS NOT NULL;
""",
    # 3: listings from indexes. A troop's tokens in (created_at, id) order, a
    # page at a time: each attachment carries its token's age (microseconds
    # since the epoch: exact, and immutable). A troop's members: an index row
    # per (troop, member), like attachments. The rows are filled in Python.
    # And the account's token policy (its maximum lifetime in microseconds),
    # a rotation overlap's previous digest (indexed: a lookup finds it),
    # when each token was last used (microseconds since the epoch), and the
    # change feed: one row per replaced token, naming the digests its old
    # record answered to (AUTOINCREMENT: a sequence number is never reused).
    3: """
CREATE TABLE attachments_by_age (
    troop_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    PRIMARY KEY (troop_id, token_id)
) WITHOUT ROWID;
CREATE INDEX attachments_age ON attachments_by_age(troop_id, created_us, token_id);
DROP TABLE attachments;
ALTER TABLE attachments_by_age RENAME TO attachments;
CREATE TABLE member_troops (
    troop_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (troop_id, member_id)
) WITHOUT ROWID;
ALTER TABLE accounts ADD COLUMN max_lifetime_us INTEGER;
ALTER TABLE accounts ADD COLUMN require_expiry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN prev_digest BLOB;
ALTER TABLE tokens ADD COLUMN prev_expires_at TEXT;
ALTER TABLE tokens ADD COLUMN last_used_us INTEGER;
CREATE UNIQUE INDEX tokens_prev_digest ON tokens(prev_digest)
    WHERE prev_digest IS NOT NULL;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    digest BLOB,
    prev_digest BLOB
);
""",
}


def _fill_schema_3(conn: sqlite3.Connection) -> None:
    """Index rows for what schema 2 stored: every token's attachments with
    its age, every member's troops."""
    rows = conn.execute("SELECT id, created_at, grants FROM tokens").fetchall()
    conn.executemany(
        "INSERT INTO attachments VALUES (?, ?, ?)",
        [
            (troop_id, token_id, epoch_micros(_fromiso(created_at)))
            for token_id, created_at, grants in rows
            for troop_id in json.loads(grants)
        ],
    )
    rows = conn.execute("SELECT account_id, id, grants FROM members").fetchall()
    conn.executemany(
        "INSERT INTO member_troops VALUES (?, ?, ?)",
        [
            (troop_id, account_id, member_id)
            for account_id, member_id, grants in rows
            for troop_id in json.loads(grants)
        ],
    )


#: Work a migration does in Python after its SQL, by target version.
_MIGRATION_STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {
    3: _fill_schema_3,
}


_ROW_COLUMNS = (
    "id, account_id, kind, digest, hint, name, created_at, expires_at, "
    "grants, revoked, seated, generation, prev_digest, prev_expires_at"
)
#: What a read of a token selects: the stored columns and the last-use stamp
#: (written by record_last_used only, never by put_token).
_READ_COLUMNS = f"{_ROW_COLUMNS}, last_used_us"
_SELECT_TOKEN = f"SELECT {_READ_COLUMNS} FROM tokens"  # noqa: S608 (constant)
_LOOKUP = f"{_SELECT_TOKEN} WHERE digest = ? AND revoked = 0"
#: Asked only when _LOOKUP finds nothing: a value kept by a rotation overlap.
_LOOKUP_PREV = f"{_SELECT_TOKEN} WHERE prev_digest = ? AND revoked = 0"
_ATTACHED = (
    f"SELECT {', '.join('t.' + c.strip() for c in _READ_COLUMNS.split(','))} "  # noqa: S608 (constant column list)
    "FROM attachments a JOIN tokens t ON t.id = a.token_id "
    "WHERE a.troop_id = ? AND t.account_id = ? AND (a.created_us, a.token_id) > (?, ?) "
    "ORDER BY a.created_us, a.token_id LIMIT ?"
)


@lru_cache(maxsize=4096)
def _grant(bits: int, scope: str) -> Grant:
    """Grants are values: parse each distinct one once per process."""
    return Grant(Permission(bits), Scope.parse(scope))


def _dump_grants(grants: Mapping[str, Grant]) -> str:
    return json.dumps(
        {t: [g.permission.value, str(g.scope)] for t, g in grants.items()},
        separators=(",", ":"),
    )


@lru_cache(maxsize=4096)
def _load_grants(text: str) -> Mapping[str, Grant]:
    """Tokens of one troop with one grant store the same text: decode it once.
    (Records never mutate their grants, so sharing the mapping is safe.)"""
    return {t: _grant(bits, scope) for t, (bits, scope) in json.loads(text).items()}


_KINDS = {k.value: k for k in Kind}


def _token(row: tuple[Any, ...]) -> TokenRecord:
    expires_at = row[7]
    return TokenRecord(
        id=row[0],
        account_id=row[1],
        kind=_KINDS[row[2]],
        digest=row[3],
        hint=row[4],
        name=row[5],
        created_at=_fromiso(row[6]),
        expires_at=None if expires_at is None else _fromiso(expires_at),
        grants=_load_grants(row[8]),
        revoked=row[9] == 1,
        seated=row[10] == 1,
        generation=row[11],
        prev_digest=row[12],
        prev_expires_at=None if row[13] is None else _fromiso(row[13]),
        last_used_at=None if row[14] is None else from_epoch_micros(row[14]),
    )


_fromiso = datetime.fromisoformat


#: Stores of this process, so that a fork can make them reconnect in the child.
_OPEN_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
#: Connections a forked child inherited: never used, never closed.
_INHERITED: list[sqlite3.Connection] = []


def _after_fork_in_child() -> None:
    for store in list(_OPEN_STORES):
        store._forget_connections()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    version = int(row[0] or 0)
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {version}; this troopauth "
            f"knows up to {SCHEMA_VERSION}: upgrade troopauth"
        )
    return version


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _account_log(account_id: str) -> str:
    return f"account:{account_id}"


class SQLiteStore(ClosingStore):
    """Keeps everything in one SQLite file, safe for many threads and processes
    on one machine.

    ``timeout`` is how long (seconds) a change waits for another writer before
    failing with `StoreError`. ``mmap_size`` (bytes, default 1 GiB) is how much
    of the file each connection reads through a memory map (SQLite's
    ``PRAGMA mmap_size``; 0 turns it off): lookups by digest land anywhere in
    the file, and a map spares each one its read() calls.

    Connections are pooled: a call takes an idle one (or opens one) and hands
    it back, and at most ``max_idle`` wait idle; the rest are closed. So a
    thread-per-request server whose threads come and go keeps at most
    ``max_idle`` connections (two file descriptors each) open between
    requests, never one per thread it ever ran. A new database file is made
    readable by its owner only (``0600``); SQLite gives its ``-wal`` and
    ``-shm`` files the same mode.
    """

    cheap_lookup = False

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
        mmap_size: int = 1 << 30,
        max_idle: int = 8,
    ) -> None:
        self._path = os.fspath(path)
        self._timeout = timeout
        self._mmap_size = int(mmap_size)
        idle: object = max_idle
        if not isinstance(idle, int) or isinstance(idle, bool) or idle < 0:
            raise InvalidArgument("max_idle must be a whole number, 0 or more")
        self._max_idle = idle
        # Idle (connection, cursor) pairs. list.pop() and list.append() are
        # atomic, so the verify path takes and returns one without a lock.
        self._idle: list[tuple[sqlite3.Connection, sqlite3.Cursor]] = []
        self._open: set[sqlite3.Connection] = set()
        self._guard = threading.Lock()
        self._is_closed = False
        #: Change-feed pollers started here: closed with the store.
        self._feeds: weakref.WeakSet[_Poller] = weakref.WeakSet()
        _OPEN_STORES.add(self)
        try:
            _create_private(self._path)
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- connections -------------------------------------------------------------

    def _connect(self) -> tuple[sqlite3.Connection, sqlite3.Cursor]:
        if self._is_closed:
            raise StoreError("the store is closed")
        try:
            conn = sqlite3.connect(
                self._path,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            # Reads by digest land anywhere in a large file: map it rather than
            # read() page by page, and keep the index's upper levels cached.
            conn.execute(f"PRAGMA mmap_size={self._mmap_size}")
            conn.execute("PRAGMA cache_size=-16384")  # KiB, per connection
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open SQLite database: {exc}") from None
        with self._guard:
            if self.closed:  # closed while this connection was opening
                conn.close()
                raise StoreError("the store is closed")
            self._open.add(conn)
        return conn, conn.cursor()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._is_closed

    def _take(self) -> tuple[sqlite3.Connection, sqlite3.Cursor]:
        """An idle connection and its cursor, or a new one."""
        try:
            return self._idle.pop()
        except IndexError:
            return self._connect()

    def _give(self, pair: tuple[sqlite3.Connection, sqlite3.Cursor]) -> None:
        """Hand a connection back; past ``max_idle`` idle ones, close it."""
        if len(self._idle) < self._max_idle and not self._is_closed:
            self._idle.append(pair)
        else:
            self._drop(pair[0])

    def _drop(self, conn: sqlite3.Connection) -> None:
        with self._guard:
            self._open.discard(conn)
        conn.close()

    def _forget_connections(self) -> None:
        """In a forked child: the parent's connections must not be used, nor
        closed (closing could disturb the parent's locks); keep them aside."""
        _INHERITED.extend(self._open)
        self._open = set()
        self._idle = []
        self._guard = threading.Lock()

    def _migrate(self) -> None:
        pair = self._take()
        conn = pair[0]
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version "
                    "(version INTEGER NOT NULL)"
                )
                version = _schema_version(conn)
                for target in range(version + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[target].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    step = _MIGRATION_STEPS.get(target)
                    if step is not None:
                        step(conn)
                    conn.execute("INSERT INTO schema_version VALUES (?)", (target,))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            self._drop(conn)
            raise StoreError(f"cannot prepare SQLite database: {exc}") from None
        except BaseException:
            self._drop(conn)
            raise
        self._give(pair)

    # -- Store protocol ------------------------------------------------------------

    def lookup(self, digest: bytes) -> TokenRecord | None:
        """The live token with this digest: one indexed query."""
        idle = self._idle
        try:
            pair = idle.pop()  # an idle connection and its cursor: no new cursor
        except IndexError:
            pair = self._connect()
        try:
            row = pair[1].execute(_LOOKUP, (digest,)).fetchone()
            if row is None:
                row = pair[1].execute(_LOOKUP_PREV, (digest,)).fetchone()
        except sqlite3.Error as exc:
            self._drop(pair[0])
            raise StoreError(f"SQLite lookup failed: {exc}") from None
        if len(idle) < self._max_idle and not self._is_closed:
            idle.append(pair)
        else:
            self._drop(pair[0])
        return None if row is None else _token(row)

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_SQLiteTransaction]:
        """``BEGIN IMMEDIATE`` (a write lock up front) or a read snapshot."""
        pair = self._take()
        conn = pair[0]
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            self._drop(conn)
            raise StoreError(f"cannot start a SQLite transaction: {exc}") from None
        try:
            yield _SQLiteTransaction(conn, account_id)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _quiet_rollback(conn)
            self._drop(conn)
            raise StoreError(f"SQLite transaction failed: {exc}") from None
        except BaseException:
            if _quiet_rollback(conn):
                self._give(pair)
            else:
                self._drop(conn)
            raise
        self._give(pair)

    def troop_account(self, troop_id: str) -> str | None:
        """The account a troop belongs to."""
        return self._account_of("SELECT account_id FROM troops WHERE id = ?", troop_id)

    def token_account(self, token_id: str) -> str | None:
        """The account a token (in any state) belongs to."""
        return self._account_of("SELECT account_id FROM tokens WHERE id = ?", token_id)

    def _account_of(self, query: str, record_id: str) -> str | None:
        pair = self._take()
        try:
            row = pair[1].execute(query, (record_id,)).fetchone()
        except sqlite3.Error as exc:
            self._drop(pair[0])
            raise StoreError(f"SQLite lookup failed: {exc}") from None
        self._give(pair)
        return None if row is None else str(row[0])

    def record_last_used(self, stamps: Mapping[str, datetime]) -> None:
        """Stamp tokens' last use (never backwards) in one short transaction."""
        rows = [
            (epoch_micros(at), token_id, epoch_micros(at))
            for token_id, at in stamps.items()
        ]
        pair = self._take()
        conn = pair[0]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "UPDATE tokens SET last_used_us = ? WHERE id = ? "
                "AND (last_used_us IS NULL OR last_used_us < ?)",
                rows,
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _quiet_rollback(conn)
            self._drop(conn)
            raise StoreError(f"SQLite last-use stamp failed: {exc}") from None
        self._give(pair)

    def subscribe(self, listener: FeedListener, *, heartbeat: float) -> _Poller:
        """The change feed: a thread that polls the ``changes`` table (first
        ``PRAGMA data_version``, which costs no read when nothing changed)
        every `FEED_POLL` seconds at most, on a connection of its own."""
        if self._is_closed:
            raise StoreError("the store is closed")
        poller = _Poller(self, listener, min(FEED_POLL, heartbeat))
        self._feeds.add(poller)
        poller.start()
        return poller

    def close(self) -> None:
        """Close every connection this store opened, in any thread, and stop
        its change-feed pollers."""
        for poller in list(self._feeds):
            poller.close()
        with self._guard:
            self._is_closed = True
            connections, self._open = self._open, set()
            self._idle = []
        for conn in connections:
            conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"


#: Feed readers of this process, so that a fork can forget them in the child.
_POLLERS: weakref.WeakSet[_Poller] = weakref.WeakSet()


def _forget_pollers_in_child() -> None:
    for poller in list(_POLLERS):
        poller._forget()


os.register_at_fork(after_in_child=_forget_pollers_in_child)


def parse_change(row: tuple[Any, ...]) -> list[bytes] | None:
    """The digests a change-feed row names, or None if it cannot be parsed."""
    digests = []
    for i, value in enumerate(row):
        if value is None and i > 0:
            continue
        if not isinstance(value, bytes) or len(value) != 32:
            return None
        digests.append(value)
    return digests


class _Poller:
    """One SQLite change-feed reader: a thread and a connection of its own."""

    def __init__(self, store: SQLiteStore, listener: FeedListener, every: float):
        self._store = store
        self._listener = listener
        self._every = every
        self._stop = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(
            target=self._run, name="troopauth-sqlite-feed", daemon=True
        )
        _POLLERS.add(self)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def _open(self) -> tuple[sqlite3.Connection, int]:
        conn = sqlite3.connect(
            self._store._path,
            timeout=self._store._timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            row = conn.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn, int(row[0])

    def _run(self) -> None:
        listener, stop = self._listener, self._stop
        conn: sqlite3.Connection | None = None
        last = 0
        version: object = None
        while not stop.is_set():
            try:
                if conn is None:
                    conn, last = self._open()
                    version = None
                    # Whatever happened before we started to read: forget it.
                    listener.reset()
                since = time.monotonic()
                now_version = conn.execute("PRAGMA data_version").fetchone()[0]
                if now_version != version:
                    version = now_version
                    rows = conn.execute(
                        "SELECT seq, digest, prev_digest FROM changes "
                        "WHERE seq > ? ORDER BY seq",
                        (last,),
                    ).fetchall()
                    if rows:
                        last = self._deliver(rows, last)
                listener.alive(since)
            except sqlite3.Error as exc:
                log.warning("the SQLite change feed failed: %s; reconnecting", exc)
                self._close_conn()
                conn = None
            except Exception:  # a listener's bug: no heartbeat, then retry
                log.exception("the SQLite change feed failed; reconnecting")
                self._close_conn()
                conn = None
            stop.wait(self._every)
        self._close_conn()

    def _deliver(self, rows: list[tuple[Any, ...]], last: int) -> int:
        """Hand the new rows to the listener; the last sequence number read."""
        if rows[0][0] != last + 1:
            # rows were pruned before this reader saw them
            self._listener.reset()
            return int(rows[-1][0])
        digests: list[bytes] = []
        for row in rows:
            found = parse_change(row[1:])
            if found is None:
                log.warning("a SQLite change-feed row cannot be parsed: resetting")
                self._listener.reset()
                return int(rows[-1][0])
            digests += found
        self._listener.changed(digests)
        return int(rows[-1][0])

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _forget(self) -> None:
        """In a forked child: the thread is gone; never touch the connection."""
        self._stop.set()
        if self._conn is not None:
            _INHERITED.append(self._conn)
            self._conn = None

    def close(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


def _quiet_rollback(conn: sqlite3.Connection) -> bool:
    """Roll back if a transaction is open; whether the connection is usable."""
    try:
        _rollback(conn)
    except sqlite3.Error:
        return False
    return True


def _create_private(path: str) -> None:
    """Create a missing database file readable and writable by its owner only.

    SQLite would create it with the process's umask (often ``0644``: readable
    by every user of the machine); its ``-wal`` and ``-shm`` files take the
    database file's mode. An existing file keeps its mode.
    """
    if path == ":memory:" or path.startswith("file:") or not path:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise StoreError(f"cannot create SQLite database: {exc.strerror}") from None
    os.close(fd)


class _SQLiteTransaction:
    """One account's transaction on one connection."""

    def __init__(self, conn: sqlite3.Connection, account_id: str) -> None:
        self._c = conn
        self.account_id = account_id
        #: The digests replaced tokens answered to (what the feed published).
        self.changed: list[bytes] = []

    def _one(self, sql: str, *args: object) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._c.execute(sql, args).fetchone()
        return row

    def get_account(self) -> AccountRecord | None:
        row = self._one(
            "SELECT id, seats, audit_log, created_at, seats_used, personal_token_id, "
            "audit_seq, audit_head, max_lifetime_us, require_expiry "
            "FROM accounts WHERE id = ?",
            self.account_id,
        )
        if row is None:
            return None
        return AccountRecord(
            id=row[0],
            seats=row[1],
            audit_log=bool(row[2]),
            created_at=datetime.fromisoformat(row[3]),
            seats_used=row[4],
            personal_token_id=row[5],
            audit_seq=row[6],
            audit_head=row[7],
            max_token_lifetime=None if row[8] is None else row[8] * MICROSECOND,
            require_expiry=row[9] == 1,
        )

    def _troop(self, row: tuple[Any, ...]) -> TroopRecord:
        return TroopRecord(
            id=row[0],
            account_id=row[1],
            name=row[2],
            created_at=datetime.fromisoformat(row[3]),
            audit_seq=row[4],
            audit_head=row[5],
        )

    _TROOP = (
        "SELECT id, account_id, name, created_at, audit_seq, audit_head FROM troops"
    )

    def get_troop(self, troop_id: str) -> TroopRecord | None:
        row = self._one(
            f"{self._TROOP} WHERE id = ? AND account_id = ?", troop_id, self.account_id
        )
        return None if row is None else self._troop(row)

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self._one(
            f"{_SELECT_TOKEN} WHERE id = ? AND account_id = ?",
            token_id,
            self.account_id,
        )
        return None if row is None else _token(row)

    def get_member(self, member_id: str) -> MemberRecord | None:
        row = self._one(
            "SELECT grants FROM members WHERE account_id = ? AND id = ?",
            self.account_id,
            member_id,
        )
        if row is None:
            return None
        return MemberRecord(member_id, self.account_id, _load_grants(row[0]))

    def troops(self) -> list[TroopRecord]:
        rows = self._c.execute(
            f"{self._TROOP} WHERE account_id = ? ORDER BY created_at, id",
            (self.account_id,),
        ).fetchall()
        return [self._troop(r) for r in rows]

    def attached_tokens(
        self,
        troop_id: str,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        after_us, after_id = (
            (-(1 << 62), "") if after is None else (epoch_micros(after[0]), after[1])
        )
        rows = self._c.execute(
            _ATTACHED,
            (
                troop_id,
                self.account_id,
                after_us,
                after_id,
                -1 if limit is None else limit,
            ),
        ).fetchall()
        return [_token(r) for r in rows]

    def members(self, troop_id: str) -> list[MemberRecord]:
        rows = self._c.execute(
            "SELECT m.id, m.grants FROM member_troops i "
            "JOIN members m ON m.account_id = i.account_id AND m.id = i.member_id "
            "WHERE i.troop_id = ? AND i.account_id = ?",
            (troop_id, self.account_id),
        ).fetchall()
        return [MemberRecord(r[0], self.account_id, _load_grants(r[1])) for r in rows]

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        rows = self._c.execute(
            f"{_SELECT_TOKEN} WHERE account_id = ? AND seated = 1 "
            "AND expires_ts IS NOT NULL "
            "AND expires_ts <= ?",
            (self.account_id, now.timestamp()),
        ).fetchall()
        return [_token(r) for r in rows]

    def expiring_seated(self, after: datetime, until: datetime) -> list[TokenRecord]:
        rows = self._c.execute(
            f"{_SELECT_TOKEN} WHERE account_id = ? AND seated = 1 "
            "AND expires_ts IS NOT NULL AND expires_ts > ? AND expires_ts <= ? "
            "ORDER BY expires_ts, id",
            (self.account_id, after.timestamp(), until.timestamp()),
        ).fetchall()
        return [_token(r) for r in rows]

    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        log = _account_log(self.account_id) if troop_id is None else troop_id
        rows = self._c.execute(
            "SELECT event FROM audit WHERE log = ? AND account_id = ? ORDER BY seq",
            (log, self.account_id),
        ).fetchall()
        return [converter.structure(json.loads(r[0]), AuditEvent) for r in rows]

    def put_account(self, record: AccountRecord) -> None:
        lifetime = record.max_token_lifetime
        self._c.execute(
            "INSERT INTO accounts (id, seats, audit_log, created_at, seats_used, "
            "personal_token_id, audit_seq, audit_head, max_lifetime_us, "
            "require_expiry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET seats = excluded.seats, "
            "audit_log = excluded.audit_log, seats_used = excluded.seats_used, "
            "personal_token_id = excluded.personal_token_id, "
            "audit_seq = excluded.audit_seq, audit_head = excluded.audit_head, "
            "max_lifetime_us = excluded.max_lifetime_us, "
            "require_expiry = excluded.require_expiry",
            (
                record.id,
                record.seats,
                int(record.audit_log),
                record.created_at.isoformat(),
                record.seats_used,
                record.personal_token_id,
                record.audit_seq,
                record.audit_head,
                None if lifetime is None else lifetime // MICROSECOND,
                int(record.require_expiry),
            ),
        )

    def put_troop(self, record: TroopRecord) -> None:
        self._c.execute(
            "INSERT INTO troops VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
            "audit_seq = excluded.audit_seq, audit_head = excluded.audit_head",
            (
                record.id,
                record.account_id,
                record.name,
                record.created_at.isoformat(),
                record.audit_seq,
                record.audit_head,
            ),
        )

    def put_token(self, record: TokenRecord) -> None:
        old = self._one(
            "SELECT grants, digest, prev_digest FROM tokens WHERE id = ?", record.id
        )
        old_troops = set() if old is None else set(json.loads(old[0]))
        prev_at = record.prev_expires_at
        try:
            self._c.execute(
                f"INSERT INTO tokens ({_ROW_COLUMNS}, expires_ts) "  # noqa: S608 (constant column list)
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET digest = excluded.digest, "
                "hint = excluded.hint, name = excluded.name, "
                "expires_at = excluded.expires_at, expires_ts = excluded.expires_ts, "
                "grants = excluded.grants, revoked = excluded.revoked, "
                "seated = excluded.seated, generation = excluded.generation, "
                "prev_digest = excluded.prev_digest, "
                "prev_expires_at = excluded.prev_expires_at",
                (
                    record.id,
                    record.account_id,
                    record.kind.value,
                    record.digest,
                    record.hint,
                    record.name,
                    record.created_at.isoformat(),
                    None
                    if record.expires_at is None
                    else record.expires_at.isoformat(),
                    _dump_grants(record.grants),
                    int(record.revoked),
                    int(record.seated),
                    record.generation,
                    record.prev_digest,
                    None if prev_at is None else prev_at.isoformat(),
                    record.expires_ts,
                ),
            )
        except sqlite3.IntegrityError:
            raise StoreError("another token has this digest") from None
        new_troops = set(record.grants)
        self._c.executemany(
            "DELETE FROM attachments WHERE troop_id = ? AND token_id = ?",
            [(t, record.id) for t in old_troops - new_troops],
        )
        age = epoch_micros(record.created_at)
        self._c.executemany(
            "INSERT INTO attachments VALUES (?, ?, ?)",
            [(t, record.id, age) for t in new_troops - old_troops],
        )
        if old is not None:
            # The change feed, in this transaction: the digests the old record
            # answered to. (A new token needs no row: nobody can hold it in a
            # cache, which never keeps a miss.)
            seq = self._c.execute(
                "INSERT INTO changes (digest, prev_digest) VALUES (?, ?)",
                (old[1], old[2]),
            ).lastrowid
            self.changed.append(old[1])
            if old[2] is not None:
                self.changed.append(old[2])
            if seq is not None and seq % _FEED_PRUNE_EVERY == 0:
                self._c.execute(
                    "DELETE FROM changes WHERE seq <= ?", (seq - FEED_KEEP,)
                )

    def put_member(self, record: MemberRecord) -> None:
        old = self._one(
            "SELECT grants FROM members WHERE account_id = ? AND id = ?",
            record.account_id,
            record.id,
        )
        before = set() if old is None else set(json.loads(old[0]))
        self._c.executemany(
            "DELETE FROM member_troops WHERE troop_id = ? AND member_id = ?",
            [(t, record.id) for t in before - record.grants.keys()],
        )
        self._c.executemany(
            "INSERT INTO member_troops VALUES (?, ?, ?)",
            [(t, record.account_id, record.id) for t in record.grants.keys() - before],
        )
        if record.grants:
            self._c.execute(
                "INSERT INTO members VALUES (?, ?, ?) "
                "ON CONFLICT (account_id, id) DO UPDATE SET grants = excluded.grants",
                (record.account_id, record.id, _dump_grants(record.grants)),
            )
        else:
            self._c.execute(
                "DELETE FROM members WHERE account_id = ? AND id = ?",
                (record.account_id, record.id),
            )

    def append_audit(self, event: AuditEvent) -> None:
        log = (
            event.troop_id
            if event.troop_id is not None
            else _account_log(event.account_id)
        )
        self._c.execute(
            "INSERT INTO audit VALUES (?, ?, ?, ?)",
            (
                log,
                event.seq,
                event.account_id,
                json.dumps(converter.unstructure(event), separators=(",", ":")),
            ),
        )
