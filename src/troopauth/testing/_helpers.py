"""What the kit's mixins share: capabilities, the clock, fixtures, records to
write, stories told through the facade, and a recorder that remembers every
record an adapter was asked to write."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import attrs
import pytest

from ..auth import TroopAuth
from ..errors import SeatsExhausted
from ..grant import Grant
from ..models import AuditEvent, Kind, Principal
from ..permission import Permission
from ..scope import Scope
from ..store import (
    AccountRecord,
    MemberRecord,
    Store,
    TokenRecord,
    Transaction,
    TroopRecord,
)
from ..tokens import digest, hint, new_value

Factory = Callable[[], Store]


@attrs.frozen
class Capabilities:
    """What an adapter can do. Each flag turns on the tests that need it.

    * ``shared``: several store objects from the factory see one backing
      store (another connection sees a commit at once).
    * ``durable``: what was committed survives ``close()`` and reopening
      through the factory.
    * ``processes``: several processes may share the backing store (the
      factory must be picklable).
    * ``threads``: one store object may be used from many threads at once.
    """

    shared: bool = False
    durable: bool = False
    processes: bool = False
    threads: bool = True


class FrozenClock:
    """A clock that stands still until moved: expiry without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)
        return self.now


class Opener:
    """Opens stores from the ``store`` fixture and closes them all at the end."""

    def __init__(self, store_or_factory: object) -> None:
        if callable(getattr(store_or_factory, "lookup", None)):
            first: Any = store_or_factory
            self.factory: Factory = lambda: first
            self.is_factory = False
        elif callable(store_or_factory):
            self.factory = store_or_factory
            self.is_factory = True
        else:
            raise TypeError("the store fixture returns a store or a factory of stores")
        self.opened: list[Store] = []
        self.main = self.open()

    def open(self) -> Store:
        """Another store object (the same one when the fixture gave a store)."""
        store = self.factory()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        """Close every store opened here, newest first."""
        for store in reversed(self.opened):
            store.close()


class KitBase:
    """The fixtures and declarations every mixin of the kit relies on."""

    #: Override in the subclass to declare what the adapter can do.
    capabilities: ClassVar[Capabilities] = Capabilities()

    @pytest.fixture
    def store(self) -> object:
        """Override: return a fresh empty store, or a factory of stores."""
        raise NotImplementedError(
            "define a `store` fixture returning a store or a factory of stores"
        )

    @pytest.fixture
    def opener(self, store: object) -> Iterator[Opener]:
        """Opens (and at the end closes) the adapter's stores."""
        opener = Opener(store)
        try:
            yield opener
        finally:
            opener.close_all()

    @pytest.fixture
    def s(self, opener: Opener) -> Store:
        """The adapter's store, seeded with two accounts and their troops."""
        seed(opener.main)
        return opener.main

    def _need(self, opener: Opener, *flags: str) -> None:
        for flag in flags:
            if not getattr(self.capabilities, flag):
                pytest.skip(f"the adapter does not declare capability {flag!r}")
        if flags and not opener.is_factory:
            pytest.skip(f"{', '.join(flags)}: the store fixture must return a factory")


# -- records to write --------------------------------------------------------------

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EDIT_DEPLOY = Grant(Permission.EDIT, Scope.parse("key:deploy"))
FULL = Grant.full()


def account(account_id: str = "acct_a", seats: int = 5) -> AccountRecord:
    """An account record with an audit log."""
    return AccountRecord(account_id, seats=seats, audit_log=True, created_at=T0)


def token(
    token_id: str,
    *,
    account_id: str = "acct_a",
    grants: dict[str, Grant] | None = None,
    **changes: Any,
) -> TokenRecord:
    """A seated troop token record with a fresh digest."""
    value = new_value()
    return TokenRecord(
        id=token_id,
        account_id=account_id,
        kind=Kind.TROOP,
        digest=digest(value),
        hint=hint(value),
        name=f"name of {token_id}",
        grants=grants if grants is not None else {"troop_a": EDIT_DEPLOY},
        **{"seated": True, "created_at": T0, **changes},
    )


def same_token(a: TokenRecord | None, b: TokenRecord | None) -> bool:
    """Every stored field equal (the derived ones follow from them)."""
    if a is None or b is None:
        return a is b
    return attrs.asdict(a, recurse=False) == attrs.asdict(b, recurse=False) and dict(
        a.grants
    ) == dict(b.grants)


def seed(store: Store) -> None:
    """Account ``acct_a`` with troop ``troop_a``, and account ``acct_b``."""
    with store.transaction("acct_a") as tx:
        tx.put_account(account())
        tx.put_troop(TroopRecord("troop_a", "acct_a", "troop a", T0))
    with store.transaction("acct_b") as tx:
        tx.put_account(account("acct_b"))
        tx.put_troop(TroopRecord("troop_b", "acct_b", "troop b", T0))


class BoomError(Exception):
    """Raised inside a transaction by the tests, to roll it back."""


# -- stories told through the facade ---------------------------------------------


@attrs.frozen
class Story:
    """An account with one troop and its personal token, through TroopAuth."""

    auth: TroopAuth
    account_id: str
    troop_id: str
    owner: Principal


def story(auth: TroopAuth, seats: int = 3) -> Story:
    """A new account with a troop and a personal token."""
    acct = auth.create_account(seats=seats, audit_log=True)
    troop = auth.create_troop(acct.id, "troop")
    owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
    return Story(auth, acct.id, troop.id, owner)


def race(store: Store, told: Story, attempts: int) -> list[str]:
    """*attempts* threads issue at once; the outcome of each."""
    auth = TroopAuth(store)
    barrier = threading.Barrier(attempts)

    def one(_: int) -> str:
        barrier.wait(timeout=30)
        try:
            auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        except SeatsExhausted:
            return "full"
        return "ok"

    with ThreadPoolExecutor(attempts) as pool:
        return list(pool.map(one, range(attempts)))


def process_worker(
    factory: Factory, owner: Principal, troop_id: str, start: Any, tries: int
) -> int:
    """In a child process: wait for the start, issue *tries* times, count wins."""
    store = factory()
    try:
        auth = TroopAuth(store)
        start.wait(60)
        won = 0
        for _ in range(tries):
            try:
                auth.issue_token(owner, troop_id, EDIT_DEPLOY)
            except SeatsExhausted:
                continue
            won += 1
        return won
    finally:
        store.close()


# -- the recorder --------------------------------------------------------------------

#: A record's place: its kind, its account and its id.
Key = tuple[str, str, str]


class Recorder:
    """A store that passes everything to the adapter and remembers, per record,
    what was last committed, so that a test can read each one back whole.

    Only committed transactions count: a transaction that raises leaves the
    recorder as it was. ``dirty`` holds the records written since the last
    :func:`check_records`.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.cheap_lookup = inner.cheap_lookup
        self.records: dict[Key, Any] = {}
        #: Every digest each token ever had, to check that old ones find nothing.
        self.digests: dict[str, set[bytes]] = {}
        #: Every event appended, per log (account id, troop id or None).
        self.events: dict[tuple[str, str | None], list[AuditEvent]] = {}
        self.dirty: set[Key] = set()

    def lookup(self, wanted: bytes) -> TokenRecord | None:
        """The adapter's lookup."""
        return self.inner.lookup(wanted)

    def troop_account(self, troop_id: str) -> str | None:
        """The adapter's answer."""
        return self.inner.troop_account(troop_id)

    def token_account(self, token_id: str) -> str | None:
        """The adapter's answer."""
        return self.inner.token_account(token_id)

    def close(self) -> None:
        """Close the adapter."""
        self.inner.close()

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[Transaction]:
        """The adapter's transaction; its writes are remembered once it commits."""
        pending = _RecordingTransaction(account_id)
        with self.inner.transaction(account_id, write=write) as tx:
            pending.inner = tx
            yield pending
        if write:
            self.records.update(pending.records)
            self.dirty.update(pending.records)
            for record in pending.records.values():
                if isinstance(record, TokenRecord):
                    self.digests.setdefault(record.id, set()).add(record.digest)
            for event in pending.events:
                self.events.setdefault((event.account_id, event.troop_id), []).append(
                    event
                )


class _RecordingTransaction:
    """Passes reads and writes to the adapter's transaction, noting the writes."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.inner: Any = None
        self.records: dict[Key, Any] = {}
        self.events: list[AuditEvent] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_account(self, record: AccountRecord) -> None:
        self.inner.put_account(record)
        self.records["account", record.id, record.id] = record

    def put_troop(self, record: TroopRecord) -> None:
        self.inner.put_troop(record)
        self.records["troop", record.account_id, record.id] = record

    def put_token(self, record: TokenRecord) -> None:
        self.inner.put_token(record)
        self.records["token", record.account_id, record.id] = record

    def put_member(self, record: MemberRecord) -> None:
        self.inner.put_member(record)
        self.records["member", record.account_id, record.id] = record

    def append_audit(self, event: AuditEvent) -> None:
        self.inner.append_audit(event)
        self.events.append(event)


def check_records(recorder: Recorder, *, everything: bool = False) -> None:
    """Read back, whole, every record written since the last check (or every
    record ever written): each equals what was last committed, a token's lookup
    by its digest finds it exactly when it is live, and its older digests find
    nothing. With ``everything``, audit logs are compared too."""
    store = recorder.inner
    keys = set(recorder.records) if everything else set(recorder.dirty)
    recorder.dirty.clear()
    by_account: dict[str, list[Key]] = {}
    for key in keys:
        by_account.setdefault(key[1], []).append(key)
    for account_id, account_keys in sorted(by_account.items()):
        with store.transaction(account_id, write=False) as tx:
            for key in sorted(account_keys):
                _check_one(tx, key, recorder.records[key])
            if everything:
                for (log_account, troop_id), events in recorder.events.items():
                    if log_account == account_id:
                        got = tx.audit_events(troop_id)
                        assert got == events, (
                            f"the audit log of {troop_id or account_id!r} reads "
                            f"back as {got!r}, not as written: {events!r}"
                        )
    for key in keys:
        record = recorder.records[key]
        if not isinstance(record, TokenRecord):
            continue
        found = store.lookup(record.digest)
        if record.revoked:
            assert found is None, f"lookup finds revoked token {record.id!r}"
        else:
            assert same_token(found, record), (
                f"lookup of token {record.id!r} gives {found!r}, not {record!r}"
            )
        live = {record.digest, record.prev_digest} if not record.revoked else set()
        for old in recorder.digests.get(record.id, set()) - live:
            assert store.lookup(old) is None, (
                f"an old digest of token {record.id!r} still finds a token"
            )


def _check_one(tx: Transaction, key: Key, record: Any) -> None:
    kind, _, record_id = key
    if kind == "account":
        got: Any = tx.get_account()
        assert got == record, f"account reads back as {got!r}, not {record!r}"
    elif kind == "troop":
        got = tx.get_troop(record_id)
        assert got == record, f"troop reads back as {got!r}, not {record!r}"
    elif kind == "token":
        got = tx.get_token(record_id)
        assert same_token(got, record), (
            f"token reads back as {got!r}, not as written: {record!r}"
        )
    else:
        got = tx.get_member(record_id)
        if not record.grants:
            assert got is None or not got.grants, (
                f"member {record_id!r} kept grants after losing all: {got!r}"
            )
        else:
            assert got is not None, f"member {record_id!r} is gone"
            assert (got.id, got.account_id, dict(got.grants)) == (
                record.id,
                record.account_id,
                dict(record.grants),
            ), f"member reads back as {got!r}, not {record!r}"
