"""``DjangoStore``: troopauth's records in the project's own database, over
the Django ORM.

* :meth:`DjangoStore.lookup`, the verify path, is one statement on the unique
  digest indexes (the value's digest, else a rotation overlap's kept one),
  outside any transaction.
* :meth:`DjangoStore.transaction` is one ``transaction.atomic()``. A change
  first locks its account:

  - PostgreSQL: ``SELECT ... FOR UPDATE`` on the account row
    (``select_for_update()``); while the account does not exist yet, a
    transaction-scoped advisory lock keyed on its id (as
    :class:`~troopauth.postgres.PostgresStore` does), so two creators cannot
    both win;
  - SQLite: SQLite has no row locks, and Django opens its transactions
    ``DEFERRED``: the first statement of a change is a write to the account
    row (matching it or not), which takes SQLite's one write lock with the
    busy timeout honoured, exactly as ``BEGIN IMMEDIATE`` would. A connection
    configured with ``"OPTIONS": {"transaction_mode": "IMMEDIATE"}`` (Django
    5.1+) already holds that lock, and the extra write is skipped.

  Reads (``write=False``) run in one snapshot: SQLite's transaction, and
  ``REPEATABLE READ READ ONLY`` on PostgreSQL.
* Any database error is a :class:`~troopauth.StoreError` whose message never
  holds a statement's parameters.

Other database backends are not supported (MySQL's locking differs); the
store refuses them when built.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import Error as DatabaseError
from django.db import transaction as db_transaction
from django.db.models import Q
from django.utils.dateparse import parse_datetime

from ..errors import InvalidArgument, StoreError
from ..grant import Grant, interned
from ..models import AuditEvent, Kind
from ..permission import Permission
from ..scope import Scope
from ..serialization import converter
from ..store import (
    MICROSECOND,
    AccountRecord,
    ClosingStore,
    MemberRecord,
    TokenRecord,
    TroopRecord,
    epoch_micros,
)
from . import models as m

__all__ = ["DjangoStore"]

#: The database backends whose locking DjangoStore knows.
SUPPORTED_VENDORS: Final = frozenset({"sqlite", "postgresql"})

#: Token ids per statement of a last-use stamp (under SQLite's variable limit).
_STAMP_BATCH: Final = 500

#: A token row's columns, in the order `_token` reads them.
_TOKEN_FIELDS: Final = (
    "id",
    "account_id",
    "kind",
    "digest",
    "hint",
    "name",
    "created_at",
    "expires_at",
    "grants",
    "revoked",
    "seated",
    "generation",
    "prev_digest",
    "prev_expires_at",
    # written by record_last_used only, never by put_token
    "last_used_at",
)
_ACCOUNT_FIELDS: Final = (
    "id",
    "seats",
    "audit_log",
    "created_at",
    "seats_used",
    "personal_token_id",
    "audit_seq",
    "audit_head",
    "max_lifetime_us",
    "require_expiry",
)
_TROOP_FIELDS: Final = (
    "id",
    "account_id",
    "name",
    "created_at",
    "audit_seq",
    "audit_head",
)


def _dt(value: Any) -> datetime:
    """A datetime as a backend hands it out (aware, naive UTC, or ISO text)
    as an aware UTC datetime."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise StoreError("the database holds a malformed datetime")
        value = parsed
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
    return value.astimezone(UTC)  # type: ignore[no-any-return]


def _opt_dt(value: Any) -> datetime | None:
    return None if value is None else _dt(value)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


@lru_cache(maxsize=4096)
def _grant(bits: int, scope: str) -> Grant:
    """Grants are values: parse each distinct one once per process."""
    return interned(Grant(Permission(bits), Scope.parse(scope)))


def _dump_grants(grants: Mapping[str, Grant]) -> dict[str, list[Any]]:
    return {t: [g.permission.value, str(g.scope)] for t, g in grants.items()}


def _load_grants(data: Any) -> dict[str, Grant]:
    return {t: _grant(bits, scope) for t, (bits, scope) in _json(data).items()}


def _token(row: tuple[Any, ...]) -> TokenRecord:
    return TokenRecord(
        id=row[0],
        account_id=row[1],
        kind=Kind(row[2]),
        digest=bytes(row[3]),
        hint=row[4],
        name=row[5],
        created_at=_dt(row[6]),
        expires_at=_opt_dt(row[7]),
        grants=_load_grants(row[8]),
        revoked=bool(row[9]),
        seated=bool(row[10]),
        generation=row[11],
        prev_digest=None if row[12] is None else bytes(row[12]),
        prev_expires_at=_opt_dt(row[13]),
        last_used_at=_opt_dt(row[14]),
    )


def _account(row: tuple[Any, ...]) -> AccountRecord:
    return AccountRecord(
        id=row[0],
        seats=row[1],
        audit_log=bool(row[2]),
        created_at=_dt(row[3]),
        seats_used=row[4],
        personal_token_id=row[5],
        audit_seq=row[6],
        audit_head=row[7],
        max_token_lifetime=None if row[8] is None else row[8] * MICROSECOND,
        require_expiry=bool(row[9]),
    )


def _troop(row: tuple[Any, ...]) -> TroopRecord:
    return TroopRecord(
        id=row[0],
        account_id=row[1],
        name=row[2],
        created_at=_dt(row[3]),
        audit_seq=row[4],
        audit_head=row[5],
    )


def _account_log(account_id: str) -> str:
    return f"account:{account_id}"


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for *parts* (troopauth's own space)."""
    text = "\0".join(("troopauth.django", *parts)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)


def _failure(what: str, exc: DatabaseError) -> StoreError:
    """A StoreError naming the failure; never the statement's parameters."""
    text = str(exc)
    if "digest" in text and ("unique" in text.lower() or "duplicate" in text):
        return StoreError("another token has this digest")
    return StoreError(f"the database failed during {what}: {type(exc).__name__}")


def _closed(_: bytes) -> TokenRecord | None:
    raise StoreError("the store is closed")


class DjangoStore(ClosingStore):
    """Keeps troopauth's records in one of the project's databases (``using``,
    an alias of ``settings.DATABASES``), through the models of
    ``troopauth.django`` (run ``manage.py migrate`` first).

    Safe for many threads (Django gives each its own connection) and many
    processes. Supported backends: PostgreSQL and SQLite. ``USE_TZ`` must be
    True. ``close()`` ends this store object; Django keeps managing the
    connections.
    """

    cheap_lookup = False
    #: The verify path (see `_lookup`).
    lookup: Callable[[bytes], TokenRecord | None]

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        if not getattr(settings, "USE_TZ", False):
            raise InvalidArgument("DjangoStore needs USE_TZ = True in settings")
        if using not in settings.DATABASES:
            raise InvalidArgument("using must name a database of settings.DATABASES")
        vendor = connections[using].vendor
        if vendor not in SUPPORTED_VENDORS:
            raise InvalidArgument(
                f"DjangoStore supports PostgreSQL and SQLite, not {vendor!r}"
            )
        self._using = using
        self._vendor = vendor
        self._is_closed = False
        quote = connections[using].ops.quote_name
        tokens = quote(m.Token._meta.db_table)
        column = {f.attname: str(f.column) for f in m.Token._meta.concrete_fields}
        columns = ", ".join(quote(column[name]) for name in _TOKEN_FIELDS)
        # One statement on the two unique indexes: the value's digest, else a
        # rotation overlap's kept one (the second runs only if the first
        # finds nothing).
        self._lookup_sql = (
            f"SELECT {columns} FROM {tokens} WHERE {quote('digest')} = %s "  # noqa: S608 (names from the model)
            f"AND NOT {quote('revoked')} UNION ALL "
            f"SELECT {columns} FROM {tokens} WHERE {quote('prev_digest')} = %s "
            f"AND NOT {quote('revoked')} LIMIT 1"
        )
        driver: Any = connections[using]
        self._server_cursor: Any = (
            driver.Database.Cursor if driver.Database.__name__ == "psycopg" else None
        )
        # The driver's own placeholders: sqlite3 takes ?, psycopg %s.
        self._lookup_raw = (
            self._lookup_sql.replace("%s", "?")
            if vendor == "sqlite"
            else self._lookup_sql
        )
        self._sqlite_lock_sql = (
            f"UPDATE {quote(m.Account._meta.db_table)} "  # noqa: S608 (names from the model)
            f"SET {quote('seats')} = {quote('seats')} WHERE {quote('id')} = %s"
        )
        self.lookup = self._lookup

    @property
    def using(self) -> str:
        """The database alias this store works in."""
        return self._using

    def __repr__(self) -> str:
        return f"DjangoStore(using={self._using!r})"

    # -- Store protocol ------------------------------------------------------------

    def _lookup(self, digest: bytes) -> TokenRecord | None:
        """The live token with this digest (or a kept previous one), or None:
        one statement on the unique digest indexes.

        The hot path: on the driver's own connection (Django's, opened and
        checked by Django), skipping the ORM's cursor wrapper.
        """
        if self._is_closed:
            raise StoreError("the store is closed")
        # Django's wrapper of this thread's connection (untyped: the driver's
        # module and connection differ by backend).
        connection: Any = connections[self._using]
        try:
            connection.ensure_connection()
            raw = connection.connection
            if self._vendor == "sqlite":
                row = raw.execute(self._lookup_raw, (digest, digest)).fetchone()
            elif self._server_cursor is not None:
                # psycopg 3: a cursor that binds on the server, so that the
                # statement is prepared when the connection allows it
                # (OPTIONS "prepare_threshold"); Django's own bind on the client.
                with self._server_cursor(raw) as cur:
                    args = (digest, digest)
                    row = cur.execute(self._lookup_raw, args, prepare=True).fetchone()
            else:  # psycopg2
                with raw.cursor() as cur:
                    cur.execute(self._lookup_raw, (digest, digest))
                    row = cur.fetchone()
        except (DatabaseError, connection.Database.Error) as exc:
            raise _failure("lookup", exc) from None
        return None if row is None else _token(row)

    def troop_account(self, troop_id: str) -> str | None:
        """The account a troop belongs to."""
        self._check_open()
        try:
            return (
                m.Troop.objects.using(self._using)
                .filter(pk=troop_id)
                .values_list("account_id", flat=True)
                .first()
            )
        except DatabaseError as exc:
            raise _failure("lookup", exc) from None

    def token_account(self, token_id: str) -> str | None:
        """The account a token (in any state) belongs to."""
        self._check_open()
        try:
            return (
                m.Token.objects.using(self._using)
                .filter(pk=token_id)
                .values_list("account_id", flat=True)
                .first()
            )
        except DatabaseError as exc:
            raise _failure("lookup", exc) from None

    def record_last_used(self, stamps: Mapping[str, datetime]) -> None:
        """Stamp tokens' last use, never backwards (ids that are gone are
        skipped), in one short transaction of its own, outside any account's.

        PostgreSQL: the rows to stamp are locked ``FOR UPDATE SKIP LOCKED``
        first, so a row a change holds is skipped, not waited for (its stamp
        comes with the next use): a stamp never delays nor deadlocks a change.
        SQLite: the first statement is the write, so it waits (busy timeout)
        for SQLite's one write lock like any change, and never upgrades a read.
        After a database error the thread's connection is closed if it is
        unusable (or past ``CONN_MAX_AGE``), so that the next stamp reconnects.
        """
        self._check_open()
        by_stamp: dict[datetime, list[str]] = {}
        for token_id, at in stamps.items():
            by_stamp.setdefault(at, []).append(token_id)
        tokens = m.Token.objects.using(self._using)
        try:
            with db_transaction.atomic(using=self._using):
                for at, ids in sorted(by_stamp.items()):
                    for start in range(0, len(ids), _STAMP_BATCH):
                        chunk = sorted(ids[start : start + _STAMP_BATCH])
                        older = tokens.filter(pk__in=chunk).filter(
                            Q(last_used_at__isnull=True) | Q(last_used_at__lt=at)
                        )
                        if self._vendor == "postgresql":
                            chunk = list(
                                older.select_for_update(skip_locked=True)
                                .order_by("pk")
                                .values_list("pk", flat=True)
                            )
                            if not chunk:
                                continue
                            older = tokens.filter(pk__in=chunk)
                        older.update(last_used_at=at)
        except DatabaseError as exc:
            # The facade's background thread makes no request, so nothing
            # else would let go of a broken connection: drop it now, and the
            # next stamp reconnects (never inside a caller's atomic block).
            connection = connections[self._using]
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()
            raise _failure("a last-use stamp", exc) from None

    def _check_open(self) -> None:
        if self._is_closed:
            raise StoreError("the store is closed")

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_DjangoTransaction]:
        """One ``transaction.atomic()``: a change holding its account's lock,
        or a read-only snapshot."""
        self._check_open()
        connection = connections[self._using]
        try:
            outermost = not connection.in_atomic_block
            with db_transaction.atomic(using=self._using):
                account = self._begin(connection, account_id, write, outermost)
                yield _DjangoTransaction(self._using, account_id, account, write)
        except DatabaseError as exc:
            raise _failure("a transaction", exc) from None

    def _begin(
        self, connection: Any, account_id: str, write: bool, outermost: bool
    ) -> AccountRecord | None:
        """Lock the account of a change (see the module's docstring), or start
        a read snapshot; the locked account row, if any."""
        if not write:
            if self._vendor == "postgresql" and outermost:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                    )
            return None
        if self._vendor == "sqlite":
            mode = connection.settings_dict.get("OPTIONS", {}).get("transaction_mode")
            if not (outermost and str(mode).upper() in {"IMMEDIATE", "EXCLUSIVE"}):
                with connection.cursor() as cursor:
                    cursor.execute(self._sqlite_lock_sql, (account_id,))
            return _read_account(self._using, account_id, lock=False)
        found = _read_account(self._using, account_id, lock=True)
        if found is None:
            # No row to lock yet (a new account): lock its id, then look again,
            # in case it was created while we waited.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s)",
                    (_lock_key("account", account_id),),
                )
            found = _read_account(self._using, account_id, lock=True)
        return found

    def close(self) -> None:
        """End this store object: later calls raise `StoreError` (Django keeps
        its connections)."""
        self._is_closed = True
        self.lookup = _closed


def _read_account(using: str, account_id: str, *, lock: bool) -> AccountRecord | None:
    query = m.Account.objects.using(using).filter(pk=account_id)
    if lock:
        query = query.select_for_update()
    row = query.values_list(*_ACCOUNT_FIELDS).first()
    return None if row is None else _account(row)


class _DjangoTransaction:
    """One account's transaction: reads and writes through the ORM."""

    def __init__(
        self, using: str, account_id: str, account: AccountRecord | None, write: bool
    ) -> None:
        self._using = using
        self.account_id = account_id
        # A change's locked row, read once: while the lock is held nobody else
        # writes it, and put_account keeps this copy current.
        self._account = account
        self._account_read = write

    # -- reads ---------------------------------------------------------------------

    def get_account(self) -> AccountRecord | None:
        if not self._account_read:
            self._account = _read_account(self._using, self.account_id, lock=False)
            self._account_read = True
        return self._account

    def get_troop(self, troop_id: str) -> TroopRecord | None:
        row = (
            m.Troop.objects.using(self._using)
            .filter(pk=troop_id, account_id=self.account_id)
            .values_list(*_TROOP_FIELDS)
            .first()
        )
        return None if row is None else _troop(row)

    def get_token(self, token_id: str) -> TokenRecord | None:
        row = (
            m.Token.objects.using(self._using)
            .filter(pk=token_id, account_id=self.account_id)
            .values_list(*_TOKEN_FIELDS)
            .first()
        )
        return None if row is None else _token(row)

    def get_member(self, member_id: str) -> MemberRecord | None:
        grants = (
            m.Member.objects.using(self._using)
            .filter(account_id=self.account_id, member_id=member_id)
            .values_list("grants", flat=True)
            .first()
        )
        if grants is None:
            return None
        return MemberRecord(member_id, self.account_id, _load_grants(grants))

    def troops(self) -> list[TroopRecord]:
        rows = (
            m.Troop.objects.using(self._using)
            .filter(account_id=self.account_id)
            .order_by("created_at", "id")
            .values_list(*_TROOP_FIELDS)
        )
        return [_troop(r) for r in rows]

    def attached_tokens(
        self,
        troop_id: str,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        query = m.Attachment.objects.using(self._using).filter(
            troop_id=troop_id, token__account_id=self.account_id
        )
        if after is not None:
            age, after_id = epoch_micros(after[0]), after[1]
            # The first conjunct bounds the index range; the second is exact.
            query = query.filter(created_us__gte=age).filter(
                Q(created_us__gt=age) | Q(token_id__gt=after_id)
            )
        query = query.order_by("created_us", "token_id")
        if limit is not None:
            query = query[:limit]
        rows = query.values_list(*(f"token__{f}" for f in _TOKEN_FIELDS))
        return [_token(r) for r in rows]

    def members(self, troop_id: str) -> list[MemberRecord]:
        rows = (
            m.MemberTroop.objects.using(self._using)
            .filter(troop_id=troop_id, member__account_id=self.account_id)
            .values_list("member__member_id", "member__grants")
        )
        return [MemberRecord(r[0], self.account_id, _load_grants(r[1])) for r in rows]

    def _seated_expiring(self, after: datetime | None, until: datetime) -> list[Any]:
        query = m.Token.objects.using(self._using).filter(
            account_id=self.account_id,
            seated=True,
            expires_at__isnull=False,
            expires_at__lte=until,
        )
        if after is not None:
            query = query.filter(expires_at__gt=after)
        return [
            _token(r)
            for r in query.order_by("expires_at", "id").values_list(*_TOKEN_FIELDS)
        ]

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        return self._seated_expiring(None, now)

    def expiring_seated(self, after: datetime, until: datetime) -> list[TokenRecord]:
        return self._seated_expiring(after, until)

    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        log = _account_log(self.account_id) if troop_id is None else troop_id
        rows = (
            m.AuditEntry.objects.using(self._using)
            .filter(log=log, account_id=self.account_id)
            .order_by("seq")
            .values_list("event", flat=True)
        )
        return [converter.structure(_json(r), AuditEvent) for r in rows]

    # -- writes --------------------------------------------------------------------

    def put_account(self, record: AccountRecord) -> None:
        fields = {
            "seats": record.seats,
            "audit_log": record.audit_log,
            "created_at": record.created_at,
            "seats_used": record.seats_used,
            "personal_token_id": record.personal_token_id,
            "audit_seq": record.audit_seq,
            "audit_head": record.audit_head,
            "max_lifetime_us": None
            if record.max_token_lifetime is None
            else record.max_token_lifetime // MICROSECOND,
            "require_expiry": record.require_expiry,
        }
        accounts = m.Account.objects.using(self._using)
        if not accounts.filter(pk=record.id).update(**fields):
            accounts.create(id=record.id, **fields)
        if record.id == self.account_id:
            self._account = record
            self._account_read = True

    def put_troop(self, record: TroopRecord) -> None:
        troops = m.Troop.objects.using(self._using)
        owner = troops.filter(pk=record.id).values_list("account_id", flat=True).first()
        fields = {
            "name": record.name,
            "audit_seq": record.audit_seq,
            "audit_head": record.audit_head,
        }
        if owner is None:
            troops.create(
                id=record.id,
                account_id=record.account_id,
                created_at=record.created_at,
                **fields,
            )
        elif owner != record.account_id:
            raise StoreError(f"troop {record.id!r} belongs to another account")
        else:
            troops.filter(pk=record.id).update(**fields)

    def put_token(self, record: TokenRecord) -> None:
        tokens = m.Token.objects.using(self._using)
        owner = tokens.filter(pk=record.id).values_list("account_id", flat=True).first()
        fields = {
            "kind": record.kind.value,
            "digest": record.digest,
            "hint": record.hint,
            "name": record.name,
            "expires_at": record.expires_at,
            "grants": _dump_grants(record.grants),
            "revoked": record.revoked,
            "seated": record.seated,
            "generation": record.generation,
            "prev_digest": record.prev_digest,
            "prev_expires_at": record.prev_expires_at,
        }
        attachments = m.Attachment.objects.using(self._using)
        troops = set(record.grants)
        if owner is None:
            tokens.create(
                id=record.id,
                account_id=record.account_id,
                created_at=record.created_at,
                **fields,
            )
            before: set[str] = set()
        elif owner != record.account_id:
            raise StoreError(f"token {record.id!r} belongs to another account")
        else:
            tokens.filter(pk=record.id).update(**fields)
            before = set(
                attachments.filter(token_id=record.id).values_list(
                    "troop_id", flat=True
                )
            )
        if before - troops:
            attachments.filter(
                token_id=record.id, troop_id__in=sorted(before - troops)
            ).delete()
        if troops - before:
            age = epoch_micros(record.created_at)
            attachments.bulk_create(
                m.Attachment(troop_id=t, token_id=record.id, created_us=age)
                for t in sorted(troops - before)
            )

    def put_member(self, record: MemberRecord) -> None:
        members = m.Member.objects.using(self._using)
        index = m.MemberTroop.objects.using(self._using)
        pk = (
            members.filter(account_id=record.account_id, member_id=record.id)
            .values_list("pk", flat=True)
            .first()
        )
        if not record.grants:
            if pk is not None:
                index.filter(member_id=pk).delete()
                members.filter(pk=pk).delete()
            return
        troops = set(record.grants)
        grants = _dump_grants(record.grants)
        if pk is None:
            pk = members.create(
                account_id=record.account_id, member_id=record.id, grants=grants
            ).pk
            before: set[str] = set()
        else:
            members.filter(pk=pk).update(grants=grants)
            before = set(index.filter(member_id=pk).values_list("troop_id", flat=True))
        if before - troops:
            index.filter(member_id=pk, troop_id__in=sorted(before - troops)).delete()
        if troops - before:
            index.bulk_create(
                m.MemberTroop(troop_id=t, member_id=pk) for t in sorted(troops - before)
            )

    def append_audit(self, event: AuditEvent) -> None:
        log = (
            event.troop_id
            if event.troop_id is not None
            else _account_log(event.account_id)
        )
        m.AuditEntry.objects.using(self._using).create(
            log=log,
            seq=event.seq,
            account_id=event.account_id,
            event=converter.unstructure(event),
        )
