"""MemoryStore specifics: a lock-free verify, all-or-nothing transactions,
close(), and threads racing for the last seat."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from troopauth import (
    AuditAction,
    MemoryStore,
    Permission,
    Principal,
    SeatsExhausted,
    StoreError,
    TroopAuth,
)
from troopauth.tokens import digest

from .store_helpers import (
    GRANT,
    DeliberateError,
)
from .store_helpers import StoreSetup as Setup
from .store_helpers import store_setup as _setup
from .store_helpers import write_then_raise as _write_then_raise

THREADS = 16
CAPACITY = 5
WAIT = 10.0  # seconds: a bound so that a wrong implementation fails, never hangs


@pytest.fixture
def memory() -> MemoryStore:
    """A fresh MemoryStore."""
    return MemoryStore()


class _LockHolder:
    """Holds ``store._lock`` in another thread until released."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._held = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._store._lock:
            self._held.set()
            self._release.wait(WAIT)

    def __enter__(self) -> _LockHolder:
        self._thread.start()
        assert self._held.wait(WAIT), "the holder never got the lock"
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._thread.join(WAIT)


def _call_in_thread(fn: Callable[[], Any]) -> tuple[bool, Any]:
    """Run *fn* in a daemon thread; (finished within WAIT, its result or exception)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(fn())
        except Exception as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(WAIT)
    return (not thread.is_alive(), box[0] if box else None)


class TestVerifyTakesNoLock:
    """The verify path reads without the store's lock, so a writer never stalls it."""

    def test_verify_while_lock_held(self, memory: MemoryStore, clock: Any) -> None:
        """verify returns the principal while another thread holds the lock."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        with _LockHolder(memory):
            done, result = _call_in_thread(
                lambda: auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy")
            )
        assert done, "verify waited for the store's lock"
        assert isinstance(result, Principal)
        assert result.token_id == issued.token_id

    def test_authenticate_while_lock_held(
        self, memory: MemoryStore, clock: Any
    ) -> None:
        """authenticate returns while another thread holds the lock."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth)
        with _LockHolder(memory):
            done, result = _call_in_thread(lambda: auth.authenticate(s.pat_value))
        assert done, "authenticate waited for the store's lock"
        assert result == s.owner

    def test_writes_do_wait_for_the_lock(self, memory: MemoryStore, clock: Any) -> None:
        """A management call does wait for the lock (the holder really holds it)."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth)
        with _LockHolder(memory):
            box: list[object] = []
            writer = threading.Thread(
                target=lambda: box.append(auth.issue_token(s.owner, s.troop_id, GRANT)),
                daemon=True,
            )
            writer.start()
            writer.join(0.2)
            assert writer.is_alive()
        writer.join(WAIT)
        assert len(box) == 1


class TestTransaction:
    """A transaction that raises commits nothing."""

    def test_raising_transaction_commits_nothing(
        self, memory: MemoryStore, clock: Any
    ) -> None:
        """put_token then an exception: the digest index and records are unchanged."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth, seats=3)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        existing = memory.lookup(digest(issued.value))
        assert existing is not None
        ghost_value = "cpt_pat_" + "g" * 36
        ghost = attrs.evolve(existing, id="tok_ghost", digest=digest(ghost_value))
        count = len(memory)
        with pytest.raises(DeliberateError):
            _write_then_raise(memory, s.account_id, ghost)
        assert memory.lookup(digest(ghost_value)) is None
        assert len(memory) == count
        with memory.transaction(s.account_id, write=False) as tx:
            assert tx.get_token("tok_ghost") is None
            assert "tok_ghost" not in {t.id for t in tx.attached_tokens(s.troop_id)}
        assert auth.seats(s.account_id).used == 1
        assert [t.token_id for t in auth.tokens(s.troop_id)] == [issued.token_id]

    def test_raising_transaction_keeps_old_digest(
        self, memory: MemoryStore, clock: Any
    ) -> None:
        """A rolled-back re-key leaves the old digest live and the new one unknown."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth, seats=3)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        existing = memory.lookup(digest(issued.value))
        assert existing is not None
        new_value = "cpt_pat_" + "n" * 36
        rekeyed = attrs.evolve(existing, digest=digest(new_value), generation=1)
        with pytest.raises(DeliberateError):
            _write_then_raise(memory, s.account_id, rekeyed)
        assert memory.lookup(digest(issued.value)) == existing
        assert memory.lookup(digest(new_value)) is None
        assert (
            auth.verify(issued.value, s.troop_id, Permission.EDIT, "deploy").token_id
            == issued.token_id
        )

    def test_read_only_transaction_commits_nothing(
        self, memory: MemoryStore, clock: Any
    ) -> None:
        """Writes inside a ``write=False`` transaction are not applied."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth, seats=3)
        with memory.transaction(s.account_id, write=False) as tx:
            account = tx.get_account()
            assert account is not None
            tx.put_account(attrs.evolve(account, seats_used=2))
        assert auth.seats(s.account_id).used == 0


_AFTER_CLOSE: dict[str, Callable[[MemoryStore, TroopAuth, Setup, str], object]] = {
    "lookup": lambda st, a, s, v: st.lookup(digest(v)),
    "transaction": lambda st, a, s, v: st.transaction(s.account_id).__enter__(),
    "verify": lambda st, a, s, v: a.verify(v, s.troop_id, Permission.EDIT, "deploy"),
    "authenticate": lambda st, a, s, v: a.authenticate(v),
    "authorize": lambda st, a, s, v: a.authorize(s.owner, s.troop_id, Permission.VIEW),
    "issue_token": lambda st, a, s, v: a.issue_token(s.owner, s.troop_id, GRANT),
    "create_account": lambda st, a, s, v: a.create_account(seats=1),
    "create_troop": lambda st, a, s, v: a.create_troop(s.account_id, "more"),
    "seats": lambda st, a, s, v: a.seats(s.account_id),
    "tokens": lambda st, a, s, v: a.tokens(s.troop_id),
}


class TestClose:
    """close() ends the store; ``with`` closes it."""

    @pytest.mark.parametrize("call", sorted(_AFTER_CLOSE))
    def test_any_call_after_close(
        self, memory: MemoryStore, clock: Any, call: str
    ) -> None:
        """After close(), store calls and calls through an existing facade raise
        StoreError (a closed store never answers InvalidToken for a live value)."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth)
        issued = auth.issue_token(s.owner, s.troop_id, GRANT)
        memory.close()
        with pytest.raises(StoreError):
            _AFTER_CLOSE[call](memory, auth, s, issued.value)

    def test_facade_built_after_close(self, memory: MemoryStore, clock: Any) -> None:
        """A facade built on a closed store raises StoreError from verify."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth)
        memory.close()
        with pytest.raises(StoreError):
            TroopAuth(memory, clock=clock).verify(
                s.pat_value, s.troop_id, Permission.VIEW
            )

    def test_with_closes(self) -> None:
        """``with MemoryStore() as s`` yields the store and closes it on exit."""
        with MemoryStore() as store:
            assert isinstance(store, MemoryStore)
            assert store.lookup(b"\0" * 32) is None
        with pytest.raises(StoreError):
            store.lookup(b"\0" * 32)


class TestThreadsRaceForSeats:
    """Threads racing for the last seats: exactly the capacity wins."""

    def test_last_seat(self, memory: MemoryStore, clock: Any) -> None:
        """16 threads issuing on 5 seats: 5 succeed, 11 get SeatsExhausted."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth, seats=CAPACITY)
        barrier = threading.Barrier(THREADS)
        won: list[str] = []
        lost: list[BaseException] = []

        def run() -> None:
            try:
                barrier.wait(timeout=WAIT)
                won.append(auth.issue_token(s.owner, s.troop_id, GRANT).token_id)
            except Exception as exc:
                lost.append(exc)

        workers = [threading.Thread(target=run, daemon=True) for _ in range(THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(WAIT)
        assert not any(w.is_alive() for w in workers)
        assert len(won) == CAPACITY
        assert len(lost) == THREADS - CAPACITY
        assert all(isinstance(e, SeatsExhausted) for e in lost), lost
        seats = auth.seats(s.account_id)
        assert (seats.used, seats.free) == (CAPACITY, 0)
        assert sorted(t.token_id for t in auth.tokens(s.troop_id)) == sorted(won)
        events = auth.audit_log(s.troop_id)
        assert [e.action for e in events] == [AuditAction.ISSUE] * CAPACITY
        assert auth.check_audit_log(s.troop_id) is None

    def test_racing_attach_and_issue(self, memory: MemoryStore, clock: Any) -> None:
        """Issues and re-attaches of detached tokens share the seats: never more
        than the capacity is used."""
        auth = TroopAuth(memory, clock=clock)
        s = _setup(auth, seats=CAPACITY)
        other = auth.create_troop(s.account_id, "search")
        parked = []
        for _ in range(CAPACITY):
            token = auth.issue_token(s.owner, s.troop_id, GRANT)
            auth.detach(s.owner, token.token_id, s.troop_id)
            parked.append(token.token_id)
        assert auth.seats(s.account_id).used == 0
        barrier = threading.Barrier(2 * CAPACITY)
        won: list[str] = []
        lost: list[BaseException] = []

        def attach(token_id: str) -> None:
            try:
                barrier.wait(timeout=WAIT)
                auth.attach(s.owner, token_id, other.id, GRANT)
                won.append(token_id)
            except Exception as exc:
                lost.append(exc)

        def issue() -> None:
            try:
                barrier.wait(timeout=WAIT)
                won.append(auth.issue_token(s.owner, s.troop_id, GRANT).token_id)
            except Exception as exc:
                lost.append(exc)

        workers = [
            threading.Thread(target=attach, args=(t,), daemon=True) for t in parked
        ] + [threading.Thread(target=issue, daemon=True) for _ in range(CAPACITY)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(WAIT)
        assert not any(w.is_alive() for w in workers)
        assert len(won) == CAPACITY
        assert all(isinstance(e, SeatsExhausted) for e in lost), lost
        assert auth.seats(s.account_id).used == CAPACITY
        live = {t.token_id for t in auth.tokens(s.troop_id)}
        live |= {t.token_id for t in auth.tokens(other.id)}
        assert live == set(won)
