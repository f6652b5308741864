"""Set-up and race helpers that the store-specific tests (test_memory,
test_sqlite, test_postgres) share: an account with its PAT and one troop, a
transaction that writes and then raises, threads and processes racing for the
last seats, and the checks of a race's outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from troopauth import (
    AuditAction,
    Grant,
    Permission,
    Principal,
    Scope,
    SeatsExhausted,
    TroopAuth,
)
from troopauth.store import Store

#: The grant the store tests issue with.
GRANT = Grant(Permission.EDIT, Scope.parse("key:deploy"))


@attrs.frozen
class StoreSetup:
    """An account with a PAT and one troop, ready for management calls."""

    account_id: str
    troop_id: str
    pat_value: str
    owner: Principal


def store_setup(
    auth: TroopAuth, *, seats: int = 5, audit_log: bool = True
) -> StoreSetup:
    """A fresh account with *seats* seats, a troop 'payments' and its PAT."""
    acct = auth.create_account(seats=seats, audit_log=audit_log)
    troop = auth.create_troop(acct.id, "payments")
    pat = auth.issue_personal_token(acct.id)
    return StoreSetup(acct.id, troop.id, pat.value, auth.authenticate(pat.value))


class DeliberateError(Exception):
    """Raised inside a transaction on purpose."""


def write_then_raise(store: Store, account_id: str, record: Any) -> None:
    """Write a token and a seat, check the reads see them, then raise."""
    with store.transaction(account_id) as tx:
        tx.put_token(record)
        account = tx.get_account()
        assert account is not None
        tx.put_account(attrs.evolve(account, seats_used=account.seats_used + 1))
        assert tx.get_token(record.id) == record  # reads see the write
        raise DeliberateError


def race(
    issue: Callable[[], str], *, threads: int, patience: float = 60.0
) -> tuple[list[str], list[BaseException]]:
    """Start *threads* threads together, each calling *issue* once: the token
    ids won and the exceptions of the others."""
    barrier = threading.Barrier(threads)
    won: list[str] = []
    lost: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=patience)
            won.append(issue())
        except Exception as exc:
            lost.append(exc)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=2 * patience)
    assert not any(w.is_alive() for w in workers), "a racing thread hung"
    return won, lost


def check_race_outcome(
    auth: TroopAuth,
    s: StoreSetup,
    won: list[str],
    capacity: int,
    lost: Sequence[BaseException] = (),
) -> None:
    """Exactly *capacity* distinct winners, every loser SeatsExhausted, and
    seats, listing and audit log agreeing with the winners."""
    assert len(won) == len(set(won)) == capacity
    assert all(isinstance(e, SeatsExhausted) for e in lost), lost
    seats = auth.seats(s.account_id)
    assert (seats.used, seats.free) == (capacity, 0)
    assert sorted(t.token_id for t in auth.tokens(s.troop_id)) == sorted(won)
    events = auth.audit_log(s.troop_id)
    assert [e.action for e in events] == [AuditAction.ISSUE] * capacity
    assert sorted(e.token_id or "" for e in events) == sorted(won)
    assert auth.check_audit_log(s.troop_id) is None


def issue_in_process(
    factory: Callable[[], Store],
    pat_value: str,
    troop_id: str,
    tries: int,
    start: Any,
    results: Any,
) -> None:
    """Child process: open a store, wait for the others, try *tries* issues;
    put (won ids, exhausted count, other errors) on *results*."""
    won: list[str] = []
    exhausted = 0
    other: list[str] = []
    try:
        store = factory()
        try:
            auth = TroopAuth(store)
            actor = auth.authenticate(pat_value)
            start.wait(timeout=60)
            for _ in range(tries):
                try:
                    won.append(auth.issue_token(actor, troop_id, GRANT).token_id)
                except SeatsExhausted:
                    exhausted += 1
        finally:
            store.close()
    except Exception as exc:
        other.append(repr(exc))
    results.put((won, exhausted, other))


def run_processes(procs: list[Any], results: Any) -> list[Any]:
    """Start *procs*, collect one result from each, and reap them."""
    for p in procs:
        p.start()
    try:
        outcomes = [results.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():  # pragma: no cover (only if a child hangs)
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs)
    return outcomes
