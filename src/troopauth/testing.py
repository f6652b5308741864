"""The conformance kit for storage adapters.

An adapter's test module needs three lines::

    from troopauth.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self):
            return MyStore(...)

and gets every test of the contract: round trips of every record, lookup by
digest, digest uniqueness, rotation replacing the digest atomically,
revocation, atomic transactions, isolation (threads racing for the last
seat), audit events committed with their change and only then, and a
Hypothesis state machine that drives the adapter and :class:`MemoryStore`
with the same operations and compares everything observable.

The ``store`` fixture returns a fresh, empty store, or a **factory**: a
zero-argument callable that opens a store on one shared backing store each
time it is called (a new connection, a reopened file). Tests that need more
than one store object, or a reopen, use the factory; declare what your
adapter can do in :attr:`StoreContract.capabilities` and the tests that do
not apply skip with a reason. For ``processes=True`` the factory must be
picklable (``functools.partial(MyStore, path)``): it is sent to child
processes.

The kit needs ``pytest`` and ``hypothesis`` (it is test code); troopauth itself
does not depend on them.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from .audit import seal
from .auth import TroopAuth
from .errors import InvalidToken, SeatsExhausted, StoreError, TroopAuthError
from .grant import Grant
from .memory import MemoryStore
from .models import AuditAction, Kind, Principal
from .permission import Permission
from .scope import Scope
from .store import AccountRecord, MemberRecord, Store, TokenRecord, TroopRecord
from .tokens import digest, hint, new_value

__all__ = ["Capabilities", "FrozenClock", "StoreContract"]

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


class _Opener:
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
        store = self.factory()
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in reversed(self.opened):
            store.close()


# -- helpers the tests share ---------------------------------------------------

_T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
_EDIT_DEPLOY = Grant(Permission.EDIT, Scope.parse("key:deploy"))


def _account(account_id: str = "acct_a", seats: int = 5) -> AccountRecord:
    return AccountRecord(account_id, seats=seats, audit_log=True, created_at=_T0)


def _token(
    token_id: str,
    *,
    account_id: str = "acct_a",
    grants: dict[str, Grant] | None = None,
    **changes: Any,
) -> TokenRecord:
    value = new_value()
    return TokenRecord(
        id=token_id,
        account_id=account_id,
        kind=Kind.TROOP,
        digest=digest(value),
        hint=hint(value),
        name=f"name of {token_id}",
        created_at=_T0,
        grants=grants if grants is not None else {"troop_a": _EDIT_DEPLOY},
        **{"seated": True, **changes},
    )


def _same_token(a: TokenRecord | None, b: TokenRecord | None) -> bool:
    """Every stored field equal (the derived ones follow from them)."""
    if a is None or b is None:
        return a is b
    return attrs.asdict(a, recurse=False) == attrs.asdict(b, recurse=False) and dict(
        a.grants
    ) == dict(b.grants)


def _seed(store: Store) -> None:
    """Account ``acct_a`` with troop ``troop_a``, and account ``acct_b``."""
    with store.transaction("acct_a") as tx:
        tx.put_account(_account())
        tx.put_troop(TroopRecord("troop_a", "acct_a", "troop a", _T0))
    with store.transaction("acct_b") as tx:
        tx.put_account(_account("acct_b"))
        tx.put_troop(TroopRecord("troop_b", "acct_b", "troop b", _T0))


class _BoomError(Exception):
    """Raised inside a transaction by the tests, to roll it back."""


@attrs.frozen
class _Story:
    """An account with one troop and its personal token, through TroopAuth."""

    auth: TroopAuth
    account_id: str
    troop_id: str
    owner: Principal


def _story(auth: TroopAuth, seats: int = 3) -> _Story:
    account = auth.create_account(seats=seats, audit_log=True)
    troop = auth.create_troop(account.id, "troop")
    owner = auth.authenticate(auth.issue_personal_token(account.id).value)
    return _Story(auth, account.id, troop.id, owner)


def _race(store: Store, story: _Story, attempts: int) -> list[str]:
    """*attempts* threads issue at once; the outcome of each."""
    auth = TroopAuth(store)
    barrier = threading.Barrier(attempts)

    def one(_: int) -> str:
        barrier.wait(timeout=30)
        try:
            auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        except SeatsExhausted:
            return "full"
        return "ok"

    with ThreadPoolExecutor(attempts) as pool:
        return list(pool.map(one, range(attempts)))


def _process_worker(
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
                auth.issue_token(owner, troop_id, _EDIT_DEPLOY)
            except SeatsExhausted:
                continue
            won += 1
        return won
    finally:
        store.close()


# -- the contract ----------------------------------------------------------------


class StoreContract:
    """Every test an adapter must pass. Subclass it with a ``store`` fixture."""

    #: Override in the subclass to declare what the adapter can do.
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: How many examples the state machine runs (scaled by Hypothesis profile).
    state_machine_examples: ClassVar[int | None] = None

    @pytest.fixture
    def store(self) -> object:
        """Override: return a fresh empty store, or a factory of stores."""
        raise NotImplementedError(
            "define a `store` fixture returning a store or a factory of stores"
        )

    @pytest.fixture
    def opener(self, store: object) -> Iterator[_Opener]:
        """Opens (and at the end closes) the adapter's stores."""
        opener = _Opener(store)
        try:
            yield opener
        finally:
            opener.close_all()

    @pytest.fixture
    def s(self, opener: _Opener) -> Store:
        """The adapter's store, seeded with two accounts and their troops."""
        _seed(opener.main)
        return opener.main

    def _need(self, opener: _Opener, *flags: str) -> None:
        for flag in flags:
            if not getattr(self.capabilities, flag):
                pytest.skip(f"the adapter does not declare capability {flag!r}")
        if flags and not opener.is_factory:
            pytest.skip(f"{', '.join(flags)}: the store fixture must return a factory")

    # -- records ---------------------------------------------------------------

    def test_account_round_trip(self, opener: _Opener) -> None:
        """An account record reads back equal, field for field."""
        record = AccountRecord(
            "acct_x",
            seats=7,
            audit_log=True,
            created_at=_T0,
            seats_used=3,
            personal_token_id="tok_p",  # noqa: S106 (a token id, not a secret)
            audit_seq=4,
            audit_head="f" * 64,
        )
        with opener.main.transaction("acct_x") as tx:
            tx.put_account(record)
        with opener.main.transaction("acct_x", write=False) as tx:
            assert tx.get_account() == record
        with opener.main.transaction("acct_x") as tx:
            tx.put_account(attrs.evolve(record, seats_used=4, audit_seq=5))
        with opener.main.transaction("acct_x", write=False) as tx:
            assert tx.get_account() == attrs.evolve(record, seats_used=4, audit_seq=5)

    def test_troop_round_trip(self, s: Store) -> None:
        """A troop record reads back equal, and an update replaces it."""
        record = TroopRecord("troop_x", "acct_a", "ünïcode name", _T0, 2, "e" * 64)
        with s.transaction("acct_a") as tx:
            tx.put_troop(record)
        with s.transaction("acct_a", write=False) as tx:
            assert tx.get_troop("troop_x") == record
            assert {t.id for t in tx.troops()} == {"troop_a", "troop_x"}
        assert s.troop_account("troop_x") == "acct_a"
        assert s.troop_account("troop_nope") is None

    def test_token_round_trip(self, s: Store) -> None:
        """A token record reads back equal in every field, grants included."""
        grants = {
            "troop_a": Grant(Permission.VIEW | Permission.USE, Scope.parse("key:a*")),
            "troop_z": Grant.full(),
        }
        record = _token(
            "tok_1",
            grants=grants,
            expires_at=_T0 + timedelta(days=1, microseconds=7),
            generation=3,
        )
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        with s.transaction("acct_a", write=False) as tx:
            assert _same_token(tx.get_token("tok_1"), record)
        found = s.lookup(record.digest)
        assert _same_token(found, record)
        assert found is not None
        assert found.principal == record.principal
        assert found.expires_ts == record.expires_ts

    def test_member_round_trip(self, s: Store) -> None:
        """A member's grants read back equal; with no grants left it is gone or
        empty."""
        record = MemberRecord("alice@example.com", "acct_a", {"troop_a": Grant.full()})
        with s.transaction("acct_a") as tx:
            tx.put_member(record)
        with s.transaction("acct_a", write=False) as tx:
            assert tx.get_member("alice@example.com") == record
        with s.transaction("acct_a") as tx:
            tx.put_member(attrs.evolve(record, grants={}))
        with s.transaction("acct_a", write=False) as tx:
            left = tx.get_member("alice@example.com")
            assert left is None or not left.grants

    def test_audit_events_round_trip_in_order(self, s: Store) -> None:
        """Audit events read back equal, oldest first, each log apart."""
        auth = TroopAuth(s, clock=FrozenClock())
        story = _story(auth)
        issued = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        auth.rotate(story.owner, issued.token_id)
        auth.revoke(story.owner, issued.token_id)
        events = auth.audit_log(story.troop_id)
        assert [e.action for e in events] == [
            AuditAction.ISSUE,
            AuditAction.ROTATE,
            AuditAction.REVOKE,
        ]
        assert [e.seq for e in events] == [1, 2, 3]
        assert {e.troop_id for e in events} == {story.troop_id}
        assert [e.action for e in auth.account_audit_log(story.account_id)] == [
            AuditAction.PAT_ISSUE
        ]
        assert auth.check_audit_log(story.troop_id) is None
        assert auth.check_account_audit_log(story.account_id) is None

    def test_reads_are_scoped_to_the_account(self, s: Store) -> None:
        """A transaction sees its own account's records only."""
        with s.transaction("acct_a") as tx:
            tx.put_token(_token("tok_1"))
            tx.put_member(MemberRecord("m", "acct_a", {"troop_a": Grant.full()}))
        with s.transaction("acct_b", write=False) as tx:
            assert tx.get_troop("troop_a") is None
            assert tx.get_token("tok_1") is None
            assert tx.get_member("m") is None
            assert [t.id for t in tx.troops()] == ["troop_b"]
            assert tx.attached_tokens("troop_a") == []
            assert tx.audit_events("troop_a") == []

    def test_reads_see_the_transactions_own_writes(self, s: Store) -> None:
        """Inside a transaction, every read sees what it wrote."""
        with s.transaction("acct_a") as tx:
            tx.put_account(attrs.evolve(_account(), seats_used=2))
            tx.put_troop(TroopRecord("troop_n", "acct_a", "new", _T0))
            tx.put_token(_token("tok_1", grants={"troop_n": _EDIT_DEPLOY}))
            account = tx.get_account()
            assert account is not None
            assert account.seats_used == 2
            assert tx.get_troop("troop_n") is not None
            assert "troop_n" in {t.id for t in tx.troops()}
            assert [t.id for t in tx.attached_tokens("troop_n")] == ["tok_1"]

    def test_attached_tokens_follow_the_grants(self, s: Store) -> None:
        """attached_tokens(troop) lists exactly the tokens whose grants name it."""
        with s.transaction("acct_a") as tx:
            tx.put_troop(TroopRecord("troop_c", "acct_a", "c", _T0))
            tx.put_token(_token("tok_1", grants={"troop_a": _EDIT_DEPLOY}))
            tx.put_token(
                _token(
                    "tok_2", grants={"troop_a": _EDIT_DEPLOY, "troop_c": Grant.full()}
                )
            )
        with s.transaction("acct_a") as tx:
            token = tx.get_token("tok_2")
            assert token is not None
            tx.put_token(attrs.evolve(token, grants={"troop_c": Grant.full()}))
        with s.transaction("acct_a", write=False) as tx:
            assert sorted(t.id for t in tx.attached_tokens("troop_a")) == ["tok_1"]
            assert sorted(t.id for t in tx.attached_tokens("troop_c")) == ["tok_2"]

    def test_expired_seated_comes_from_the_expiry(self, s: Store) -> None:
        """expired_seated(now) returns the seated tokens with expires_at <= now."""
        soon, later = _T0 + timedelta(hours=1), _T0 + timedelta(hours=2)
        with s.transaction("acct_a") as tx:
            tx.put_token(_token("tok_soon", expires_at=soon))
            tx.put_token(_token("tok_later", expires_at=later))
            tx.put_token(_token("tok_never"))
            tx.put_token(_token("tok_unseated", expires_at=soon, seated=False))
        with s.transaction("acct_a", write=False) as tx:
            assert tx.expired_seated(_T0) == []
            assert [t.id for t in tx.expired_seated(soon)] == ["tok_soon"]
            ids = sorted(t.id for t in tx.expired_seated(later))
            assert ids == ["tok_later", "tok_soon"]
        with s.transaction("acct_a") as tx:
            token = tx.get_token("tok_soon")
            assert token is not None
            tx.put_token(attrs.evolve(token, seated=False))
            assert [t.id for t in tx.expired_seated(soon)] == []

    # -- the verify path --------------------------------------------------------

    def test_lookup_by_digest(self, s: Store) -> None:
        """lookup finds a committed live token by its digest, else None."""
        record = _token("tok_1")
        assert s.lookup(record.digest) is None
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        assert _same_token(s.lookup(record.digest), record)
        assert s.lookup(digest(new_value())) is None

    def test_lookup_skips_revoked(self, s: Store) -> None:
        """A revoked token leaves the digest index."""
        record = _token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        with s.transaction("acct_a") as tx:
            tx.put_token(attrs.evolve(record, revoked=True, seated=False, grants={}))
        assert s.lookup(record.digest) is None

    def test_digest_is_unique(self, s: Store) -> None:
        """A second token with a digest in use is refused, and nothing commits."""
        first = _token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(first)
        twin = attrs.evolve(_token("tok_2"), digest=first.digest)

        def clash() -> None:
            with s.transaction("acct_a") as tx:
                tx.put_troop(TroopRecord("troop_late", "acct_a", "late", _T0))
                tx.put_token(twin)

        with pytest.raises(StoreError):
            clash()
        with s.transaction("acct_a", write=False) as tx:
            assert tx.get_token("tok_2") is None
            assert tx.get_troop("troop_late") is None
        assert _same_token(s.lookup(first.digest), first)

    def test_rotation_replaces_the_digest_atomically(self, s: Store) -> None:
        """After a new digest commits, the old one finds nothing, the new one the
        token; no moment where both or neither work for the committed state."""
        old = _token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(old)
        new = attrs.evolve(old, digest=digest(new_value()), generation=1)
        with s.transaction("acct_a") as tx:
            tx.put_token(new)
        assert s.lookup(old.digest) is None
        found = s.lookup(new.digest)
        assert found is not None
        assert found.generation == 1

    def test_uncommitted_writes_are_invisible(self, s: Store) -> None:
        """Another thread's lookup sees a token only once its transaction commits."""
        record = _token("tok_1")
        written, checked = threading.Event(), threading.Event()
        seen: list[object] = []

        def reader() -> None:
            written.wait(10)
            seen.append(s.lookup(record.digest))
            checked.set()

        thread = threading.Thread(target=reader)
        thread.start()
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
            written.set()
            checked.wait(10)
        thread.join(10)
        assert seen == [None]
        assert s.lookup(record.digest) is not None

    def test_rotation_kills_the_old_value(self, s: Store) -> None:
        """Through TroopAuth: a rotated-out value is refused at once."""
        auth = TroopAuth(s)
        story = _story(auth)
        issued = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        again = auth.rotate(story.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            auth.verify(issued.value, story.troop_id, Permission.EDIT, key="deploy")
        principal = auth.verify(again.value, story.troop_id, Permission.EDIT, "deploy")
        assert principal.token_id == issued.token_id

    def test_revocation_kills_the_value_and_frees_the_seat(self, s: Store) -> None:
        """Through TroopAuth: a revoked value is refused and its seat is free."""
        auth = TroopAuth(s)
        story = _story(auth, seats=1)
        issued = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        auth.revoke(story.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            auth.authenticate(issued.value)
        assert auth.seats(story.account_id).used == 0
        auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)

    # -- atomicity ----------------------------------------------------------------

    def test_a_transaction_that_raises_leaves_nothing(self, s: Store) -> None:
        """Every kind of write in a failed transaction is rolled back."""
        auth = TroopAuth(s)
        story = _story(auth)
        before = auth.audit_log(story.troop_id)
        record = _token("tok_gone", account_id=story.account_id, grants={})

        def fail_midway() -> None:
            with s.transaction(story.account_id) as tx:
                account = tx.get_account()
                troop = tx.get_troop(story.troop_id)
                assert account is not None
                assert troop is not None
                tx.put_account(attrs.evolve(account, seats_used=account.seats_used + 1))
                tx.put_troop(TroopRecord("troop_gone", story.account_id, "gone", _T0))
                tx.put_token(record)
                tx.put_member(
                    MemberRecord("m", story.account_id, {story.troop_id: _FULL})
                )
                event = seal(
                    troop.audit_head,
                    troop.audit_seq + 1,
                    _T0,
                    account_id=story.account_id,
                    troop_id=troop.id,
                    action=AuditAction.MEMBER_ADD,
                    actor="owner",
                    member_id="m",
                    grant=_FULL,
                )
                tx.append_audit(event)
                tx.put_troop(
                    attrs.evolve(troop, audit_seq=event.seq, audit_head=event.hash)
                )
                raise _BoomError

        with pytest.raises(_BoomError):
            fail_midway()
        assert s.lookup(record.digest) is None
        assert s.troop_account("troop_gone") is None
        assert auth.seats(story.account_id).used == 0
        assert auth.audit_log(story.troop_id) == before
        assert auth.check_audit_log(story.troop_id) is None
        with s.transaction(story.account_id, write=False) as tx:
            assert tx.get_token("tok_gone") is None
            assert tx.get_member("m") is None

    def test_audit_events_commit_with_their_change(self, s: Store) -> None:
        """A change and its events land together; a refused change writes none."""
        auth = TroopAuth(s)
        story = _story(auth, seats=1)
        issued = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        assert [e.token_id for e in auth.audit_log(story.troop_id)] == [issued.token_id]
        with pytest.raises(SeatsExhausted):
            auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        assert len(auth.audit_log(story.troop_id)) == 1
        assert auth.check_audit_log(story.troop_id) is None

    # -- isolation -----------------------------------------------------------------

    def test_threads_racing_for_the_last_seat(self, opener: _Opener) -> None:
        """Twelve threads issue at once on one store: exactly the capacity wins."""
        if not self.capabilities.threads:
            pytest.skip("the adapter does not declare capability 'threads'")
        story = _story(TroopAuth(opener.main), seats=3)
        outcomes = _race(opener.main, story, 12)
        assert outcomes.count("ok") == 3
        assert TroopAuth(opener.main).seats(story.account_id).used == 3
        assert len(TroopAuth(opener.main).tokens(story.troop_id)) == 3

    def test_connections_racing_for_the_last_seat(self, opener: _Opener) -> None:
        """Threads each with its own store object on one backing store: exactly
        the capacity wins."""
        self._need(opener, "shared")
        story = _story(TroopAuth(opener.main), seats=3)
        stores = [opener.open() for _ in range(6)]
        barrier = threading.Barrier(len(stores))

        def one(store: Store) -> int:
            auth = TroopAuth(store)
            barrier.wait(30)
            won = 0
            for _ in range(2):
                try:
                    auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
                    won += 1
                except SeatsExhausted:
                    pass
            return won

        with ThreadPoolExecutor(len(stores)) as pool:
            assert sum(pool.map(one, stores)) == 3
        assert TroopAuth(opener.open()).seats(story.account_id).used == 3

    def test_processes_racing_for_the_last_seat(self, opener: _Opener) -> None:
        """Four processes issue at once on one backing store: exactly the
        capacity wins."""
        self._need(opener, "processes")
        story = _story(TroopAuth(opener.main), seats=5)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            start = manager.Event()
            with ctx.Pool(4) as pool:
                results = [
                    pool.apply_async(
                        _process_worker,
                        (opener.factory, story.owner, story.troop_id, start, 3),
                    )
                    for _ in range(4)
                ]
                start.set()
                wins = sum(r.get(120) for r in results)
        assert wins == 5
        assert TroopAuth(opener.open()).seats(story.account_id).used == 5

    # -- durability ----------------------------------------------------------------

    def test_changes_survive_a_reopen(self, opener: _Opener) -> None:
        """Closed and reopened, the store keeps tokens, seats and audit logs."""
        self._need(opener, "durable")
        auth = TroopAuth(opener.main)
        story = _story(auth)
        kept = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        gone = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        auth.revoke(story.owner, gone.token_id)
        events = auth.audit_log(story.troop_id)
        opener.main.close()
        again = TroopAuth(opener.open())
        again.verify(kept.value, story.troop_id, Permission.EDIT, key="deploy")
        with pytest.raises(InvalidToken):
            again.authenticate(gone.value)
        assert again.seats(story.account_id).used == 1
        assert again.audit_log(story.troop_id) == events
        assert again.check_audit_log(story.troop_id) is None

    def test_a_commit_is_seen_by_another_connection(self, opener: _Opener) -> None:
        """A revoke committed on one store object is seen at once by another."""
        self._need(opener, "shared")
        auth = TroopAuth(opener.main)
        story = _story(auth)
        issued = auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)
        other = TroopAuth(opener.open())
        other.verify(issued.value, story.troop_id, Permission.EDIT, key="deploy")
        auth.revoke(story.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            other.verify(issued.value, story.troop_id, Permission.EDIT, key="deploy")

    # -- lifecycle of the store -----------------------------------------------------

    def test_close_ends_the_store(self, opener: _Opener) -> None:
        """After close(), management calls raise StoreError (a TroopAuthError)."""
        auth = TroopAuth(opener.main)
        story = _story(auth)
        opener.main.close()
        with pytest.raises(StoreError):
            auth.issue_token(story.owner, story.troop_id, _EDIT_DEPLOY)

    def test_context_manager_closes(self, opener: _Opener) -> None:
        """``with store:`` returns the store and closes it on the way out."""
        store: Any = opener.main
        with store as entered:
            assert entered is store
        with pytest.raises(StoreError), store.transaction("acct_a", write=False):
            pass

    # -- the state machine ----------------------------------------------------------

    def test_matches_memory_store(self, opener: _Opener) -> None:
        """Random operations on the adapter and on MemoryStore give the same
        observable results (outcomes, verify answers, listings, seats, logs)."""
        base = settings()
        examples = self.state_machine_examples or max(5, base.max_examples // 10)
        # Every example works in fresh accounts, so one store serves them all.
        machine = type("Differential", (_Differential,), {"store": opener.main})
        run_state_machine_as_test(
            machine,
            settings=settings(
                base, max_examples=examples, stateful_step_count=30, deadline=None
            ),
        )


_FULL = Grant.full()


# -- the differential state machine ------------------------------------------------

_KEYS = ("deploy", "prod/db", "prod/api", "other")
_GRANTS = st.builds(
    Grant,
    st.integers(1, 15).map(Permission),
    st.sampled_from(
        [
            Scope.whole_troop(),
            Scope.parse("key:deploy"),
            Scope.parse("key:prod/*"),
            Scope.parse("key:deploy,key:prod/*"),
        ]
    ),
)


@attrs.define
class _Twin:
    """One token as known to both sides: ids and current values."""

    ids: tuple[str, str]
    values: tuple[str, str]
    old: list[tuple[str, str]] = attrs.Factory(list)


class _Differential(RuleBasedStateMachine):
    """The adapter and a MemoryStore, driven in lockstep."""

    tokens = Bundle("tokens")
    #: Set on a subclass made per test: the adapter's store.
    store: ClassVar[Store]

    def __init__(self) -> None:
        super().__init__()
        store = self.store
        self.clock = FrozenClock()
        self.sides = (
            TroopAuth(store, clock=self.clock),
            TroopAuth(MemoryStore(), clock=self.clock),
        )
        accounts = [a.create_account(seats=3, audit_log=True) for a in self.sides]
        self.accounts = tuple(a.id for a in accounts)
        self.troops: list[tuple[str, str]] = []
        for name in ("one", "two"):
            pair = [
                a.create_troop(acct, name).id
                for a, acct in zip(self.sides, self.accounts, strict=True)
            ]
            self.troops.append((pair[0], pair[1]))
        pats = [
            a.issue_personal_token(acct)
            for a, acct in zip(self.sides, self.accounts, strict=True)
        ]
        self.owners = tuple(
            a.authenticate(p.value) for a, p in zip(self.sides, pats, strict=True)
        )
        self.twins: list[_Twin] = []

    def _both(self, call: Callable[[TroopAuth, int], Any]) -> tuple[str, Any, Any]:
        """Run *call* on both sides; both must succeed or fail alike."""
        got: list[tuple[str, Any]] = []
        for i, auth in enumerate(self.sides):
            try:
                got.append(("ok", call(auth, i)))
            except TroopAuthError as exc:
                got.append((type(exc).__name__, None))
        assert got[0][0] == got[1][0], f"adapter: {got[0][0]}, MemoryStore: {got[1][0]}"
        return got[0][0], got[0][1], got[1][1]

    @rule(
        target=tokens,
        t=st.integers(0, 1),
        grant=_GRANTS,
        expires=st.sampled_from([None, 30, 90]),
    )
    def issue(self, t: int, grant: Grant, expires: int | None) -> Any:
        when = None if expires is None else self.clock.now + timedelta(seconds=expires)
        kind, a, b = self._both(
            lambda auth, i: auth.issue_token(
                self.owners[i], self.troops[t][i], grant, name="t", expires_at=when
            )
        )
        if kind != "ok":
            return multiple()
        twin = _Twin((a.token_id, b.token_id), (a.value, b.value))
        self.twins.append(twin)
        return twin

    @rule(twin=tokens, t=st.integers(0, 1), grant=_GRANTS)
    def attach(self, twin: _Twin, t: int, grant: Grant) -> None:
        self._both(
            lambda auth, i: auth.attach(
                self.owners[i], twin.ids[i], self.troops[t][i], grant
            ).grants[self.troops[t][i]]
        )

    @rule(twin=tokens, t=st.integers(0, 1))
    def detach(self, twin: _Twin, t: int) -> None:
        self._both(
            lambda auth, i: auth.detach(self.owners[i], twin.ids[i], self.troops[t][i])
        )

    @rule(twin=tokens)
    def rotate(self, twin: _Twin) -> None:
        kind, a, b = self._both(
            lambda auth, i: auth.rotate(self.owners[i], twin.ids[i])
        )
        if kind == "ok":
            twin.old.append(twin.values)
            twin.values = (a.value, b.value)

    @rule(twin=tokens)
    def revoke(self, twin: _Twin) -> None:
        self._both(lambda auth, i: auth.revoke(self.owners[i], twin.ids[i]))

    @rule(seconds=st.sampled_from([1, 29, 30, 60]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @invariant()
    def verify_answers_agree(self) -> None:
        for twin in self.twins:
            for values in [twin.values, *twin.old[-1:]]:
                for t in range(2):
                    for key in (None, *_KEYS[:3]):
                        self._both(self._verifier(values, self.troops[t], key))

    @staticmethod
    def _verifier(
        values: tuple[str, str], troops: tuple[str, str], key: str | None
    ) -> Callable[[TroopAuth, int], Any]:
        def verify(auth: TroopAuth, i: int) -> Any:
            return auth.verify(values[i], troops[i], Permission.EDIT, key=key)

        return verify

    @invariant()
    def listings_seats_and_logs_agree(self) -> None:
        a, b = self.sides
        assert a.seats(self.accounts[0]) == b.seats(self.accounts[1])
        index = {tw.ids[1]: tw.ids[0] for tw in self.twins}
        for pair in self.troops:
            listed_a = {
                (
                    t.token_id,
                    tuple(sorted((k == pair[0], str(g)) for k, g in t.grants.items())),
                )
                for t in a.tokens(pair[0])
            }
            listed_b = {
                (
                    index[t.token_id],
                    tuple(sorted((k == pair[1], str(g)) for k, g in t.grants.items())),
                )
                for t in b.tokens(pair[1])
            }
            assert listed_a == listed_b
            log_a = [(e.action, e.grant) for e in a.audit_log(pair[0])]
            log_b = [(e.action, e.grant) for e in b.audit_log(pair[1])]
            assert log_a == log_b
            assert a.check_audit_log(pair[0]) is None
