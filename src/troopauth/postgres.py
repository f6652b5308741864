"""``PostgresStore``: one PostgreSQL database shared by services on many machines.

Install the extra: ``pip install 'troopauth[postgres]'`` (psycopg 3 and
psycopg_pool). The tables live in a schema of their own (``troopauth`` by
default), versioned and migrated when the store opens, under an advisory lock
so that processes opening at once migrate it once.

* The verify path, :meth:`PostgresStore.lookup`, is one prepared statement on
  the unique digest index: one round trip, no transaction (autocommit), the
  grants in the row as JSONB.
* A change, :meth:`PostgresStore.transaction`, locks its account's row
  (``SELECT ... FOR UPDATE``; an advisory lock keyed on the account id while
  the account does not exist yet), so the changes of one account are
  serialised across processes and machines: two racing for the last seat never
  both win. Reads run in a ``REPEATABLE READ READ ONLY`` snapshot.
* A lost connection or a server error is a :class:`~troopauth.StoreError`; the
  pool drops the broken connection and a later call gets a fresh one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

import attrs

from ._extras import missing_extra

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.pq import TransactionStatus
    from psycopg.rows import tuple_row
    from psycopg.types.json import Jsonb
    from psycopg_pool import ConnectionPool
except ImportError as exc:
    raise missing_extra(__name__, "postgres", exc) from exc

from .errors import InvalidArgument, StoreError
from .grant import Grant, interned
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
)

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

log = logging.getLogger("troopauth")

#: The longest NOTIFY payload the feed sends (PostgreSQL's limit is 8,000
#: bytes); a change naming more digests is sent as a reset.
FEED_MAX_PAYLOAD = 7_900

#: The newest schema version this troopauth knows.
SCHEMA_VERSION: Final = 2

_Connection = psycopg.Connection[tuple[Any, ...]]
_Cursor = psycopg.Cursor[tuple[Any, ...]]

#: Migrations by target version; ``{s}`` is the quoted schema name.
_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE {s}.accounts (
    id text PRIMARY KEY,
    seats integer NOT NULL,
    audit_log boolean NOT NULL,
    created_at timestamptz NOT NULL,
    seats_used integer NOT NULL,
    personal_token_id text,
    audit_seq bigint NOT NULL,
    audit_head text NOT NULL
);
CREATE TABLE {s}.troops (
    id text PRIMARY KEY,
    account_id text NOT NULL REFERENCES {s}.accounts (id),
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    audit_seq bigint NOT NULL,
    audit_head text NOT NULL
);
CREATE INDEX troops_by_account ON {s}.troops (account_id);
CREATE TABLE {s}.tokens (
    id text PRIMARY KEY,
    account_id text NOT NULL REFERENCES {s}.accounts (id),
    kind text NOT NULL,
    digest bytea NOT NULL CONSTRAINT tokens_digest_key UNIQUE,
    hint text NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    grants jsonb NOT NULL,
    revoked boolean NOT NULL,
    seated boolean NOT NULL,
    generation integer NOT NULL
);
CREATE INDEX tokens_seated_expiry ON {s}.tokens (account_id, expires_at)
    WHERE seated AND expires_at IS NOT NULL;
CREATE TABLE {s}.attachments (
    troop_id text NOT NULL,
    token_id text NOT NULL,
    PRIMARY KEY (troop_id, token_id)
);
CREATE INDEX attachments_by_token ON {s}.attachments (token_id);
CREATE TABLE {s}.members (
    account_id text NOT NULL,
    id text NOT NULL,
    grants jsonb NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE TABLE {s}.audit (
    log text NOT NULL,
    seq bigint NOT NULL,
    account_id text NOT NULL,
    event jsonb NOT NULL,
    PRIMARY KEY (log, seq)
);
""",
    # 2: listings from indexes: a troop's tokens a page at a time in
    # (created_at, id) order (each attachment carries its token's immutable
    # creation time), and a troop's members; the account's token policy; a
    # rotation overlap's previous digest (indexed: the lookup finds it); when
    # each token was last used.
    2: """
ALTER TABLE {s}.attachments ADD COLUMN created_at timestamptz;
UPDATE {s}.attachments a SET created_at = t.created_at
    FROM {s}.tokens t WHERE t.id = a.token_id;
ALTER TABLE {s}.attachments ALTER COLUMN created_at SET NOT NULL;
CREATE INDEX attachments_by_age ON {s}.attachments (troop_id, created_at, token_id);
CREATE TABLE {s}.member_troops (
    troop_id text NOT NULL,
    account_id text NOT NULL,
    member_id text NOT NULL,
    PRIMARY KEY (troop_id, member_id)
);
INSERT INTO {s}.member_troops (troop_id, account_id, member_id)
    SELECT k, m.account_id, m.id FROM {s}.members m, jsonb_object_keys(m.grants) k;
ALTER TABLE {s}.accounts ADD COLUMN max_lifetime_us bigint,
    ADD COLUMN require_expiry boolean NOT NULL DEFAULT false;
ALTER TABLE {s}.tokens ADD COLUMN prev_digest bytea,
    ADD COLUMN prev_expires_at timestamptz;
CREATE UNIQUE INDEX tokens_prev_digest ON {s}.tokens (prev_digest)
    WHERE prev_digest IS NOT NULL;
ALTER TABLE {s}.tokens ADD COLUMN last_used_at timestamptz;
""",
}

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: Column lists, spliced into the statements below as ``{token}`` etc.
_COLUMNS = {
    "token": "id, account_id, kind, digest, hint, name, created_at, expires_at, "
    "grants, revoked, seated, generation, prev_digest, prev_expires_at",
    # what a read selects: the written columns and the last-use stamp, which
    # only record_last_used writes
    "token_read": "id, account_id, kind, digest, hint, name, created_at, "
    "expires_at, grants, revoked, seated, generation, prev_digest, "
    "prev_expires_at, last_used_at",
    "token_t": "t.id, t.account_id, t.kind, t.digest, t.hint, t.name, "
    "t.created_at, t.expires_at, t.grants, t.revoked, t.seated, t.generation, "
    "t.prev_digest, t.prev_expires_at",
    "account": "id, seats, audit_log, created_at, seats_used, personal_token_id, "
    "audit_seq, audit_head, max_lifetime_us, require_expiry",
    "troop": "id, account_id, name, created_at, audit_seq, audit_head",
}

#: Every statement: ``{s}`` is the quoted schema, ``{token}`` etc. column lists.
_STATEMENTS = {
    # One round trip: the value's digest, else a rotation overlap's kept one.
    # Two unique-index probes under one LIMIT: the second runs only when the
    # first finds nothing, so a current value costs one probe.
    "lookup": "(SELECT {token_read} FROM {s}.tokens WHERE digest = %s AND NOT revoked) "
    "UNION ALL (SELECT {token_read} FROM {s}.tokens "
    "WHERE prev_digest = %s AND NOT revoked) LIMIT 1",
    "troop_account": "SELECT account_id FROM {s}.troops WHERE id = %s",
    "token_account": "SELECT account_id FROM {s}.tokens WHERE id = %s",
    "version": "SELECT max(version) FROM {s}.schema_version",
    "lock_account": "SELECT {account} FROM {s}.accounts WHERE id = %s FOR UPDATE",
    "get_account": "SELECT {account} FROM {s}.accounts WHERE id = %s",
    "get_troop": "SELECT {troop} FROM {s}.troops WHERE id = %s AND account_id = %s",
    "get_token": "SELECT {token_read} FROM {s}.tokens "
    "WHERE id = %s AND account_id = %s",
    "get_member": "SELECT grants FROM {s}.members WHERE account_id = %s AND id = %s",
    "troops": "SELECT {troop} FROM {s}.troops WHERE account_id = %s "
    "ORDER BY created_at, id",
    "attached": "SELECT {token_t}, t.last_used_at FROM {s}.attachments a "
    "JOIN {s}.tokens t ON t.id = a.token_id "
    "WHERE a.troop_id = %s AND t.account_id = %s "
    "AND (a.created_at, a.token_id) > (%s, %s) "
    "ORDER BY a.created_at, a.token_id LIMIT %s",
    "members": "SELECT m.id, m.grants FROM {s}.member_troops i "
    "JOIN {s}.members m ON m.account_id = i.account_id AND m.id = i.member_id "
    "WHERE i.troop_id = %s AND i.account_id = %s",
    "expired": "SELECT {token_read} FROM {s}.tokens "
    "WHERE account_id = %s AND seated AND expires_at IS NOT NULL "
    "AND expires_at <= %s",
    "expiring": "SELECT {token_read} FROM {s}.tokens "
    "WHERE account_id = %s AND seated AND expires_at IS NOT NULL "
    "AND expires_at > %s AND expires_at <= %s ORDER BY expires_at, id",
    "audit_events": "SELECT event FROM {s}.audit "
    "WHERE log = %s AND account_id = %s ORDER BY seq",
    "put_account": "INSERT INTO {s}.accounts ({account}) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET seats = EXCLUDED.seats, "
    "audit_log = EXCLUDED.audit_log, seats_used = EXCLUDED.seats_used, "
    "personal_token_id = EXCLUDED.personal_token_id, "
    "audit_seq = EXCLUDED.audit_seq, audit_head = EXCLUDED.audit_head, "
    "max_lifetime_us = EXCLUDED.max_lifetime_us, "
    "require_expiry = EXCLUDED.require_expiry",
    "put_troop": "INSERT INTO {s}.troops ({troop}) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
    "audit_seq = EXCLUDED.audit_seq, audit_head = EXCLUDED.audit_head "
    "WHERE troops.account_id = EXCLUDED.account_id",
    # One statement, one round trip: the row and its attachments index. The
    # index changes only if the row did (a token id of another account
    # updates nothing, and the count says so).
    # The old row's digests come back too (the CTEs share one snapshot, so
    # ``old`` sees the row as it was): the change feed publishes them.
    "put_token": "WITH old AS (SELECT digest, prev_digest FROM {s}.tokens "
    "WHERE id = %(id)s AND account_id = %(account_id)s), "
    "up AS (INSERT INTO {s}.tokens ({token}) "
    "VALUES (%(id)s, %(account_id)s, %(kind)s, %(digest)s, %(hint)s, "
    "%(name)s, %(created_at)s, %(expires_at)s, %(grants)s, %(revoked)s, "
    "%(seated)s, %(generation)s, %(prev_digest)s, %(prev_expires_at)s) "
    "ON CONFLICT (id) DO UPDATE SET digest = EXCLUDED.digest, "
    "hint = EXCLUDED.hint, name = EXCLUDED.name, "
    "expires_at = EXCLUDED.expires_at, grants = EXCLUDED.grants, "
    "revoked = EXCLUDED.revoked, seated = EXCLUDED.seated, "
    "generation = EXCLUDED.generation, prev_digest = EXCLUDED.prev_digest, "
    "prev_expires_at = EXCLUDED.prev_expires_at "
    "WHERE tokens.account_id = EXCLUDED.account_id RETURNING id), "
    "gone AS (DELETE FROM {s}.attachments a USING up "
    "WHERE a.token_id = up.id AND NOT (a.troop_id = ANY(%(troops)s))), "
    "added AS (INSERT INTO {s}.attachments (troop_id, token_id, created_at) "
    "SELECT troop, up.id, %(created_at)s FROM up, unnest(%(troops)s::text[]) AS troop "
    "ON CONFLICT DO NOTHING) "
    "SELECT count(*), (SELECT digest FROM old), (SELECT prev_digest FROM old) "
    "FROM up",
    # The row and its troop index in one round trip, like put_token.
    "put_member": "WITH up AS (INSERT INTO {s}.members (account_id, id, grants) "
    "VALUES (%(account_id)s, %(id)s, %(grants)s) "
    "ON CONFLICT (account_id, id) DO UPDATE SET grants = EXCLUDED.grants "
    "RETURNING id), "
    "gone AS (DELETE FROM {s}.member_troops i "
    "WHERE i.account_id = %(account_id)s AND i.member_id = %(id)s "
    "AND NOT (i.troop_id = ANY(%(troops)s))), "
    "added AS (INSERT INTO {s}.member_troops (troop_id, account_id, member_id) "
    "SELECT troop, %(account_id)s, up.id FROM up, unnest(%(troops)s::text[]) AS troop "
    "ON CONFLICT DO NOTHING) "
    "SELECT count(*) FROM up",
    # Rows a change holds locked are skipped, not waited for (their stamp
    # comes with the next use): a stamp never delays nor deadlocks a change.
    "last_used": "WITH u AS (SELECT * FROM unnest(%s::text[], %s::timestamptz[]) "
    "AS u(id, at)), l AS (SELECT t.id FROM {s}.tokens t JOIN u ON u.id = t.id "
    "WHERE t.last_used_at IS NULL OR t.last_used_at < u.at "
    "FOR UPDATE OF t SKIP LOCKED) "
    "UPDATE {s}.tokens t SET last_used_at = u.at FROM u, l "
    "WHERE t.id = l.id AND u.id = l.id",
    "delete_member": "WITH gone AS (DELETE FROM {s}.member_troops "
    "WHERE account_id = %s AND member_id = %s) "
    "DELETE FROM {s}.members WHERE account_id = %s AND id = %s",
    "append_audit": "INSERT INTO {s}.audit (log, seq, account_id, event) "
    "VALUES (%s, %s, %s, %s)",
}


@attrs.frozen
class _Queries:
    """Every statement with the schema name quoted in, built once per store."""

    lookup: bytes
    troop_account: bytes
    token_account: bytes
    version: bytes
    lock_account: bytes
    get_account: bytes
    get_troop: bytes
    get_token: bytes
    get_member: bytes
    troops: bytes
    attached: bytes
    members: bytes
    expired: bytes
    expiring: bytes
    audit_events: bytes
    put_account: bytes
    put_troop: bytes
    put_token: bytes
    put_member: bytes
    delete_member: bytes
    last_used: bytes
    append_audit: bytes

    @classmethod
    def build(cls, schema: str) -> _Queries:
        """The statements for *schema* (quoted as an identifier)."""
        parts = {name: sql.SQL(text) for name, text in _COLUMNS.items()}
        return cls(
            **{
                name: sql.SQL(text).format(s=sql.Identifier(schema), **parts).as_bytes()
                for name, text in _STATEMENTS.items()
            }
        )


@lru_cache(maxsize=4096)
def _grant(bits: int, scope: str) -> Grant:
    """Grants are values: parse each distinct one once per process."""
    return interned(Grant(Permission(bits), Scope.parse(scope)))


def _dump_grants(grants: Mapping[str, Grant]) -> Jsonb:
    return Jsonb({t: [g.permission.value, str(g.scope)] for t, g in grants.items()})


def _load_grants(data: Mapping[str, list[Any]]) -> dict[str, Grant]:
    return {t: _grant(bits, scope) for t, (bits, scope) in data.items()}


#: Earlier than any token's creation: the start of a troop's first page.
_BEFORE_ALL = datetime(1, 1, 1, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    """Datetimes come back in the session's time zone; hand out UTC."""
    return value.astimezone(UTC)


def _token(row: tuple[Any, ...]) -> TokenRecord:
    expires_at = row[7]
    return TokenRecord(
        id=row[0],
        account_id=row[1],
        kind=Kind(row[2]),
        digest=bytes(row[3]),
        hint=row[4],
        name=row[5],
        created_at=_utc(row[6]),
        expires_at=None if expires_at is None else _utc(expires_at),
        grants=_load_grants(row[8]),
        revoked=row[9],
        seated=row[10],
        generation=row[11],
        prev_digest=None if row[12] is None else bytes(row[12]),
        prev_expires_at=None if row[13] is None else _utc(row[13]),
        last_used_at=None if row[14] is None else _utc(row[14]),
    )


def _account(row: tuple[Any, ...]) -> AccountRecord:
    return AccountRecord(
        id=row[0],
        seats=row[1],
        audit_log=row[2],
        created_at=_utc(row[3]),
        seats_used=row[4],
        personal_token_id=row[5],
        audit_seq=row[6],
        audit_head=row[7],
        max_token_lifetime=None if row[8] is None else row[8] * MICROSECOND,
        require_expiry=row[9],
    )


def _troop(row: tuple[Any, ...]) -> TroopRecord:
    return TroopRecord(
        id=row[0],
        account_id=row[1],
        name=row[2],
        created_at=_utc(row[3]),
        audit_seq=row[4],
        audit_head=row[5],
    )


def _cursor(conn: _Connection) -> _Cursor:
    """A cursor returning tuples, whatever row factory a given pool set."""
    return conn.cursor(row_factory=tuple_row)


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for *parts* (troopauth's own space)."""
    text = "\0".join(("troopauth", *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)


def _account_log(account_id: str) -> str:
    return f"account:{account_id}"


def _failure(what: str, exc: psycopg.Error) -> StoreError:
    """A StoreError naming the failure; never the statement's parameters."""
    detail = exc.diag.message_primary or str(exc).partition("\n")[0]
    detail = detail or type(exc).__name__
    code = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return StoreError(f"PostgreSQL {what} failed{code}: {detail}")


def _check_schema(value: object) -> str:
    if not isinstance(value, str) or not _SCHEMA_NAME.fullmatch(value):
        raise InvalidArgument(
            "schema must be 1 to 63 ASCII letters, digits and underscores, "
            "not starting with a digit"
        )
    return value


def _check_timeout(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise InvalidArgument("timeout must be a positive number of seconds")
    return float(value)


def _check_size(value: object, what: str, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidArgument(f"{what} must be a whole number, {minimum} or more")
    return value


class PostgresStore(ClosingStore):
    """Keeps everything in PostgreSQL, for services on many machines that share
    one database.

    Give a DSN (the store then opens and owns a ``psycopg_pool``
    ``ConnectionPool`` of ``min_size`` to ``max_size`` connections) or your own
    ``pool`` (which the store uses but never closes). ``schema`` names the
    PostgreSQL schema that holds troopauth's tables (created and migrated on
    open). ``timeout`` (seconds) bounds both the wait for a pooled connection
    and the wait for another process's lock on the same account; past it a
    call fails with `StoreError`.
    """

    cheap_lookup = False
    #: The verify path (see `_lookup`): bound once, so that the facade's verify
    #: finds the same object on every call.
    lookup: Callable[[bytes], TokenRecord | None]

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: ConnectionPool[Any] | None = None,
        schema: str = "troopauth",
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise InvalidArgument("give PostgresStore a DSN or a pool (one of them)")
        if pool is not None and not isinstance(pool, ConnectionPool):
            raise InvalidArgument("pool must be a psycopg_pool.ConnectionPool")
        self._schema = _check_schema(schema)
        self._timeout = _check_timeout(timeout)
        self._q = _Queries.build(schema)
        self._begin_write = (
            "BEGIN ISOLATION LEVEL READ COMMITTED; "
            f"SET LOCAL lock_timeout = {max(1, round(self._timeout * 1000))}"
        ).encode()
        self._pid = os.getpid()
        self._is_closed = False
        #: Change-feed listeners started here: closed with the store.
        self._feeds: weakref.WeakSet[_Listener] = weakref.WeakSet()
        self.lookup = self._lookup
        self._owns_pool = pool is None
        if pool is None:
            if not isinstance(dsn, str):
                raise InvalidArgument("dsn must be a string")
            _check_size(min_size, "min_size", 0)
            _check_size(max_size, "max_size", max(1, min_size))
            try:
                conninfo_to_dict(dsn)
            except psycopg.Error:
                raise InvalidArgument("the PostgreSQL DSN is malformed") from None
            pool = ConnectionPool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=self._timeout,
                kwargs={"autocommit": True},
                name=f"troopauth-{schema}",
                open=False,
            )
            try:
                pool.open(wait=min_size > 0, timeout=self._timeout)
            except psycopg.Error as exc:
                pool.close()
                raise _failure("connection", exc) from None
        self._pool: ConnectionPool[Any] = pool
        # What the change feed's own connection is opened with.
        conninfo = pool.conninfo
        kwargs = pool.kwargs
        self._conninfo: str = conninfo() if callable(conninfo) else conninfo
        self._conn_kwargs: dict[str, Any] = dict(
            (kwargs() if callable(kwargs) else kwargs) or {}
        )
        self._channel = _feed_channel(self._schema)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @property
    def schema(self) -> str:
        """The PostgreSQL schema that holds troopauth's tables."""
        return self._schema

    @property
    def feed_channel(self) -> str:
        """The ``LISTEN``/``NOTIFY`` channel of this schema's change feed."""
        return self._channel

    # -- connections ---------------------------------------------------------------

    def _get(self) -> tuple[_Connection, bool]:
        """A pooled connection in autocommit mode, and whether to restore it."""
        if self._is_closed:
            raise StoreError("the store is closed")
        if os.getpid() != self._pid:
            raise StoreError(
                "this PostgresStore was opened in another process; "
                "open one in each process (after forking)"
            )
        try:
            conn: _Connection = self._pool.getconn()
        except psycopg.Error as exc:
            raise _failure("connection", exc) from None
        if conn.autocommit:
            return conn, False
        try:
            conn.autocommit = True
        except psycopg.Error as exc:
            self._pool.putconn(conn)
            raise _failure("connection", exc) from None
        return conn, True

    def _put(self, conn: _Connection, restore: bool) -> None:
        """Hand a connection back, rolled back; a broken one the pool replaces."""
        status = conn.pgconn.transaction_status
        if not conn.broken and status != TransactionStatus.IDLE:
            # If this fails the connection is broken, and the pool discards it.
            with suppress(psycopg.Error):
                conn.execute(b"ROLLBACK")
        if restore and not conn.broken:
            with suppress(psycopg.Error):
                conn.autocommit = False
        self._pool.putconn(conn)

    def _fresh_connections(self) -> None:
        """After a broken connection: drop the pool's other dead idle ones too."""
        # check() discards what fails; the retry reports any error.
        with suppress(psycopg.Error):
            self._pool.check()

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION; refuse a newer one."""
        conn, restore = self._get()
        try:
            if self._version(conn) == SCHEMA_VERSION:
                return  # the common open: two reads, no lock, no DDL
            schema = sql.Identifier(self._schema)
            conn.execute(self._begin_write)
            # Processes opening at once: one migrates, the others wait for its
            # lock and then find the work done.
            conn.execute(
                b"SELECT pg_advisory_xact_lock(%s)",
                (_lock_key(self._schema, "migrate"),),
            )
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_version ("
                    "version integer PRIMARY KEY, "
                    "applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(schema)
            )
            for target in range(self._version(conn) + 1, SCHEMA_VERSION + 1):
                conn.execute(sql.SQL(_MIGRATIONS[target]).format(s=schema))
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.schema_version (version) VALUES (%s)"
                    ).format(schema),
                    (target,),
                )
            conn.execute(b"COMMIT")
        except psycopg.Error as exc:
            raise _failure("schema migration", exc) from None
        finally:
            self._put(conn, restore)

    def _version(self, conn: _Connection) -> int:
        """The schema's version (0: not there yet); a newer one is refused."""
        table = f"{sql.Identifier(self._schema).as_string()}.schema_version"
        row = _cursor(conn).execute(b"SELECT to_regclass(%s)", (table,)).fetchone()
        if row is None or row[0] is None:
            return 0
        row = _cursor(conn).execute(self._q.version).fetchone()
        version = 0 if row is None or row[0] is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the PostgreSQL schema {self._schema!r} has schema version "
                f"{version}; this troopauth knows up to {SCHEMA_VERSION}: "
                "upgrade troopauth"
            )
        return version

    # -- Store protocol --------------------------------------------------------------

    def _lookup(self, digest: bytes) -> TokenRecord | None:
        """The live token with this digest (not revoked), or None: one prepared
        statement on the unique digest index, one round trip."""
        row = self._read(self._q.lookup, (digest, digest), binary=True)
        return None if row is None else _token(row)

    def troop_account(self, troop_id: str) -> str | None:
        """The account a troop belongs to."""
        row = self._read(self._q.troop_account, (troop_id,), binary=False)
        return None if row is None else str(row[0])

    def token_account(self, token_id: str) -> str | None:
        """The account a token (in any state) belongs to."""
        row = self._read(self._q.token_account, (token_id,), binary=False)
        return None if row is None else str(row[0])

    def _read(self, query: bytes, args: tuple[object, ...], *, binary: bool) -> Any:
        """One row of a prepared one-statement read, outside any transaction.

        A read is safe to repeat: on a connection found broken it runs once
        more on a fresh one.
        """
        for attempt in (1, 2):
            conn, restore = self._get()
            try:
                row = (
                    conn.cursor(binary=binary, row_factory=tuple_row)
                    .execute(query, args, prepare=True)
                    .fetchone()
                )
            except psycopg.Error as exc:
                broken = conn.broken
                self._put(conn, restore)
                if broken and attempt == 1:
                    self._fresh_connections()
                    continue
                raise _failure("lookup", exc) from None
            except BaseException:
                self._put(conn, restore)
                raise
            if restore:
                self._put(conn, restore)
            else:  # idle in autocommit after a read: nothing to tidy
                self._pool.putconn(conn)
            return row
        raise StoreError("PostgreSQL lookup failed")  # pragma: no cover (unreachable)

    def _begin(
        self, account_id: str, write: bool
    ) -> tuple[_Connection, bool, AccountRecord | None]:
        """Start a transaction; a write one holds its account's lock on return.

        Nothing has happened yet if this fails, so a broken connection is
        replaced and the start tried once more.
        """
        for attempt in (1, 2):
            conn, restore = self._get()
            try:
                if not write:
                    conn.execute(b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    return conn, restore, None
                conn.execute(self._begin_write)
                row = (
                    _cursor(conn)
                    .execute(self._q.lock_account, (account_id,), prepare=True)
                    .fetchone()
                )
                if row is None:
                    # No row to lock yet (a new account): lock its id, then look
                    # again, in case it was created while we waited.
                    conn.execute(
                        b"SELECT pg_advisory_xact_lock(%s)",
                        (_lock_key(self._schema, "account", account_id),),
                    )
                    row = (
                        _cursor(conn)
                        .execute(self._q.lock_account, (account_id,), prepare=True)
                        .fetchone()
                    )
                return conn, restore, None if row is None else _account(row)
            except psycopg.Error as exc:
                broken = conn.broken
                self._put(conn, restore)
                if broken and attempt == 1:
                    self._fresh_connections()
                    continue
                raise _failure("transaction start", exc) from None
            except BaseException:
                self._put(conn, restore)
                raise
        raise StoreError("PostgreSQL transaction start failed")  # pragma: no cover

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_PostgresTransaction]:
        """A change holding the account's row lock, or a read-only snapshot."""
        conn, restore, account = self._begin(account_id, write)
        try:
            tx = _PostgresTransaction(_cursor(conn), self._q, account_id, account)
            try:
                yield tx
            except psycopg.Error as exc:
                raise _failure("transaction", exc) from None
            if conn.info.transaction_status != TransactionStatus.INTRANS:
                # A statement failed and someone swallowed the error: the
                # transaction is aborted and must not look committed.
                raise StoreError("PostgreSQL transaction failed; nothing was changed")
            if tx.changed:
                # The change feed: delivered by PostgreSQL at COMMIT, never
                # for a transaction that rolls back.
                try:
                    conn.execute(
                        b"SELECT pg_notify(%s, %s)",
                        (self._channel, feed_payload(tx.changed)),
                    )
                except psycopg.Error as exc:
                    raise _failure("change feed", exc) from None
            try:
                status = conn.execute(b"COMMIT").statusmessage
            except psycopg.Error as exc:
                raise StoreError(
                    "PostgreSQL COMMIT failed"
                    + (
                        " (connection lost: the change may or may not be committed)"
                        if conn.broken
                        else ""
                    )
                    + f": {exc.diag.message_primary or type(exc).__name__}"
                ) from None
            if status != "COMMIT":
                raise StoreError("PostgreSQL rolled the transaction back")
        finally:
            self._put(conn, restore)

    def record_last_used(self, stamps: Mapping[str, datetime]) -> None:
        """Stamp tokens' last use (never backwards): one statement."""
        if not stamps:
            return
        ids, ats = list(stamps), list(stamps.values())
        conn, restore = self._get()
        try:
            conn.execute(self._q.last_used, (ids, ats))
        except psycopg.Error as exc:
            raise _failure("last-use stamp", exc) from None
        finally:
            self._put(conn, restore)

    def subscribe(self, listener: FeedListener, *, heartbeat: float) -> _Listener:
        """The change feed: a thread on a connection of its own (not pooled)
        that listens (``LISTEN``) on `feed_channel`, and proves itself every
        *heartbeat* seconds with a ``SELECT 1`` round trip. A lost connection
        is reopened; the listener is then reset (NOTIFY is not replayed)."""
        if self._is_closed:
            raise StoreError("the store is closed")
        if os.getpid() != self._pid:
            raise StoreError("this PostgresStore was opened in another process")
        feed = _Listener(self, listener, heartbeat)
        self._feeds.add(feed)
        feed.start()
        return feed

    def close(self) -> None:
        """Release the store; close the pool if the store made it."""
        if self._is_closed:
            return
        self._is_closed = True
        if os.getpid() == self._pid:
            for feed in list(self._feeds):
                feed.close()
        if self._owns_pool and os.getpid() == self._pid:
            self._pool.close()

    def __repr__(self) -> str:
        # Never the DSN: it may hold a password.
        return f"PostgresStore(schema={self._schema!r})"


class _PostgresTransaction:
    """One account's transaction on one connection."""

    def __init__(
        self,
        cursor: _Cursor,
        queries: _Queries,
        account_id: str,
        account: AccountRecord | None,
    ) -> None:
        self._cur = cursor
        self._q = queries
        self.account_id = account_id
        # The locked row, read once: while the lock is held nobody else writes
        # it, and put_account keeps this copy current (read-your-writes).
        self._account = account
        self._account_read = account is not None
        #: The digests replaced tokens answered to: the change feed's payload.
        self.changed: list[bytes] = []

    def _exec(self, query: bytes, params: Any) -> _Cursor:
        try:
            return self._cur.execute(query, params)
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "tokens_digest_key":
                raise StoreError("another token has this digest") from None
            raise _failure("statement", exc) from None
        except psycopg.Error as exc:
            raise _failure("statement", exc) from None

    def _one(self, query: bytes, *args: object) -> tuple[Any, ...] | None:
        return self._exec(query, args).fetchone()

    def _all(self, query: bytes, *args: object) -> list[tuple[Any, ...]]:
        return self._exec(query, args).fetchall()

    def get_account(self) -> AccountRecord | None:
        if not self._account_read:
            row = self._one(self._q.get_account, self.account_id)
            self._account = None if row is None else _account(row)
            self._account_read = True
        return self._account

    def get_troop(self, troop_id: str) -> TroopRecord | None:
        row = self._one(self._q.get_troop, troop_id, self.account_id)
        return None if row is None else _troop(row)

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = self._one(self._q.get_token, token_id, self.account_id)
        return None if row is None else _token(row)

    def get_member(self, member_id: str) -> MemberRecord | None:
        row = self._one(self._q.get_member, self.account_id, member_id)
        if row is None:
            return None
        return MemberRecord(member_id, self.account_id, _load_grants(row[0]))

    def troops(self) -> list[TroopRecord]:
        return [_troop(r) for r in self._all(self._q.troops, self.account_id)]

    def attached_tokens(
        self,
        troop_id: str,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        after_at, after_id = (_BEFORE_ALL, "") if after is None else after
        rows = self._all(
            self._q.attached, troop_id, self.account_id, after_at, after_id, limit
        )
        return [_token(r) for r in rows]

    def members(self, troop_id: str) -> list[MemberRecord]:
        rows = self._all(self._q.members, troop_id, self.account_id)
        return [MemberRecord(r[0], self.account_id, _load_grants(r[1])) for r in rows]

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        return [_token(r) for r in self._all(self._q.expired, self.account_id, now)]

    def expiring_seated(self, after: datetime, until: datetime) -> list[TokenRecord]:
        rows = self._all(self._q.expiring, self.account_id, after, until)
        return [_token(r) for r in rows]

    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        log = _account_log(self.account_id) if troop_id is None else troop_id
        rows = self._all(self._q.audit_events, log, self.account_id)
        return [converter.structure(r[0], AuditEvent) for r in rows]

    def put_account(self, record: AccountRecord) -> None:
        self._exec(
            self._q.put_account,
            (
                record.id,
                record.seats,
                record.audit_log,
                record.created_at,
                record.seats_used,
                record.personal_token_id,
                record.audit_seq,
                record.audit_head,
                None
                if record.max_token_lifetime is None
                else record.max_token_lifetime // MICROSECOND,
                record.require_expiry,
            ),
        )
        if record.id == self.account_id:
            self._account = record
            self._account_read = True

    def put_troop(self, record: TroopRecord) -> None:
        self._exec(
            self._q.put_troop,
            (
                record.id,
                record.account_id,
                record.name,
                record.created_at,
                record.audit_seq,
                record.audit_head,
            ),
        )
        if self._cur.rowcount != 1:
            raise StoreError(f"troop {record.id!r} belongs to another account")

    def put_token(self, record: TokenRecord) -> None:
        row = self._exec(
            self._q.put_token,
            {
                "id": record.id,
                "account_id": record.account_id,
                "kind": record.kind.value,
                "digest": record.digest,
                "hint": record.hint,
                "name": record.name,
                "created_at": record.created_at,
                "expires_at": record.expires_at,
                "grants": _dump_grants(record.grants),
                "revoked": record.revoked,
                "seated": record.seated,
                "generation": record.generation,
                "prev_digest": record.prev_digest,
                "prev_expires_at": record.prev_expires_at,
                "troops": list(record.grants),
            },
        ).fetchone()
        if row is None or row[0] != 1:
            raise StoreError(f"token {record.id!r} belongs to another account")
        if row[1] is not None:
            self.changed.append(bytes(row[1]))
            if row[2] is not None:
                self.changed.append(bytes(row[2]))

    def put_member(self, record: MemberRecord) -> None:
        if record.grants:
            self._exec(
                self._q.put_member,
                {
                    "account_id": record.account_id,
                    "id": record.id,
                    "grants": _dump_grants(record.grants),
                    "troops": list(record.grants),
                },
            )
        else:
            self._exec(
                self._q.delete_member,
                (record.account_id, record.id, record.account_id, record.id),
            )

    def append_audit(self, event: AuditEvent) -> None:
        log = (
            event.troop_id
            if event.troop_id is not None
            else _account_log(event.account_id)
        )
        self._exec(
            self._q.append_audit,
            (log, event.seq, event.account_id, Jsonb(converter.unstructure(event))),
        )


# -- the change feed ---------------------------------------------------------------


def _feed_channel(schema: str) -> str:
    """The NOTIFY channel of a schema (an identifier of at most 63 bytes)."""
    name = f"troopauth_feed_{schema}"
    if len(name) <= 63:
        return name
    return f"troopauth_feed_{hashlib.sha256(schema.encode()).hexdigest()[:32]}"


def feed_payload(digests: list[bytes]) -> str:
    """A NOTIFY payload: ``d`` and the digests in hex, or ``reset`` when they
    would not fit."""
    text = "d " + " ".join(d.hex() for d in dict.fromkeys(digests))
    return text if len(text) <= FEED_MAX_PAYLOAD else "reset"


def parse_feed_payload(text: str) -> list[bytes] | None:
    """The digests a payload names; ``None`` for a reset or anything that
    cannot be parsed (both mean: forget everything)."""
    kind, _, rest = text.partition(" ")
    if kind != "d":
        return None
    found = []
    for word in rest.split(" "):
        if len(word) != 64:
            return None
        try:
            found.append(bytes.fromhex(word))
        except ValueError:
            return None
    return found


#: Feed listeners of this process, so that a fork can forget them in the child.
_LISTENERS: weakref.WeakSet[_Listener] = weakref.WeakSet()
#: Listener connections a forked child inherited: never used, never closed.
_INHERITED: list[Any] = []


def _forget_listeners_in_child() -> None:
    for feed in list(_LISTENERS):
        feed._forget()


os.register_at_fork(after_in_child=_forget_listeners_in_child)


class _Listener:
    """One PostgreSQL change-feed reader: a thread and a connection of its own."""

    def __init__(
        self, store: PostgresStore, listener: FeedListener, heartbeat: float
    ) -> None:
        self._store = store
        self._listener = listener
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._conn: _Connection | None = None
        self._thread = threading.Thread(
            target=self._run, name="troopauth-postgres-feed", daemon=True
        )
        _LISTENERS.add(self)

    @property
    def application_name(self) -> str:
        """How the listener's connection names itself in pg_stat_activity."""
        return f"troopauth-feed {self._store.schema}"[:63]

    def start(self) -> None:
        """Start listening."""
        self._thread.start()

    def _connect(self) -> _Connection:
        store = self._store
        kwargs = {
            **store._conn_kwargs,
            "autocommit": True,
            "application_name": self.application_name,
            "connect_timeout": max(1, round(store._timeout)),
        }
        conn: _Connection = psycopg.connect(store._conninfo, **kwargs)
        try:
            channel = sql.Identifier(store.feed_channel)
            conn.execute(sql.SQL("LISTEN {}").format(channel))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _deliver(self, payload: str) -> None:
        digests = parse_feed_payload(payload)
        if digests is None:
            if payload != "reset":
                log.warning("a change-feed message cannot be parsed: resetting")
            self._listener.reset()
        else:
            self._listener.changed(digests)

    def _run(self) -> None:
        listener, stop, channel = self._listener, self._stop, self._store.feed_channel
        backoff = 0.05
        while not stop.is_set():
            try:
                conn = self._connect()
                # NOTIFY is not replayed: what happened before LISTEN is lost.
                listener.reset()
                backoff = 0.05
                while not stop.is_set():
                    since = time.monotonic()
                    conn.execute(b"SELECT 1")
                    # Notifications that came with the reply (or before it).
                    for note in conn.notifies(timeout=0):
                        if note.channel == channel:
                            self._deliver(note.payload)
                    listener.alive(since)
                    for note in conn.notifies(timeout=self._heartbeat):
                        if note.channel == channel:
                            self._deliver(note.payload)
            except psycopg.Error as exc:
                if not stop.is_set():
                    log.warning(
                        "the PostgreSQL change feed lost its connection (%s); "
                        "reconnecting",
                        str(exc).partition("\n")[0],
                    )
            except Exception:  # a listener's bug: no heartbeat, then retry
                log.exception("the PostgreSQL change feed failed; reconnecting")
            self._close_conn()
            stop.wait(backoff)
            backoff = min(backoff * 2, 1.0)
        self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(psycopg.Error):
                conn.close()

    def _forget(self) -> None:
        """In a forked child: the thread is gone and the connection is the
        parent's. Closing it here would send the server a goodbye on the
        parent's socket and end the parent's session; so the child's copy of
        the socket is pointed at /dev/null first (whatever the child does
        with it, at exit included, never reaches the server), and the
        connection kept aside."""
        self._stop.set()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with suppress(OSError, psycopg.Error):
            fd = conn.pgconn.socket
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        _INHERITED.append(conn)

    def close(self) -> None:
        """Stop the thread (within one heartbeat) and close its connection."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
