"""Isolation: racing changes, two accounts side by side, and store objects that
must not trust what they read before."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import attrs
import pytest

from ..auth import TroopAuth
from ..errors import AccessDenied, SeatsExhausted, StoreError
from ..models import AuditAction
from ..permission import Permission
from ..store import MemberRecord, Store, TroopRecord
from ._helpers import (
    EDIT_DEPLOY,
    FULL,
    T0,
    KitBase,
    Opener,
    process_worker,
    race,
    same_token,
    story,
    token,
)

#: How long an open transaction waits for another account's transaction to
#: commit. A store that serialises all transactions makes the other one wait
#: for this one instead; the test then costs this long, and still passes.
OVERLAP_SECONDS = 1.0


class IsolationTests(KitBase):
    """Exactly the capacity wins a race; no commit undoes another's."""

    def test_threads_racing_for_the_last_seat(self, opener: Opener) -> None:
        """Twelve threads issue at once on one store: exactly the capacity wins."""
        if not self.capabilities.threads:
            pytest.skip("the adapter does not declare capability 'threads'")
        told = story(TroopAuth(opener.main), seats=3)
        outcomes = race(opener.main, told, 12)
        assert outcomes.count("ok") == 3
        assert TroopAuth(opener.main).seats(told.account_id).used == 3
        assert len(TroopAuth(opener.main).tokens(told.troop_id)) == 3

    def test_one_account_loses_no_update(self, s: Store) -> None:
        """Two transactions of one account that each read the seat counter and
        add one: the second to start waits for the first or fails (StoreError);
        the counter ends equal to the number of commits, on every run."""
        if not self.capabilities.threads:
            pytest.skip("the adapter does not declare capability 'threads'")
        b_done = threading.Event()
        outcomes: list[str] = []

        def add_one() -> None:
            with s.transaction("acct_a") as tx:
                found = tx.get_account()
                assert found is not None
                tx.put_account(attrs.evolve(found, seats_used=found.seats_used + 1))

        def second() -> None:
            try:
                add_one()
                outcomes.append("committed")
            except StoreError:
                outcomes.append("refused")
            except Exception as exc:  # noqa: BLE001 (the main thread reports it)
                outcomes.append(repr(exc))
            finally:
                b_done.set()

        thread = threading.Thread(target=second)
        first = "committed"
        try:
            with s.transaction("acct_a") as tx:
                found = tx.get_account()
                assert found is not None
                thread.start()
                b_done.wait(OVERLAP_SECONDS)
                tx.put_account(attrs.evolve(found, seats_used=found.seats_used + 1))
        except StoreError:
            first = "refused"
        thread.join(60)
        assert not thread.is_alive(), "the second transaction never finished"
        assert outcomes[0] in {"committed", "refused"}, outcomes
        commits = [first, *outcomes].count("committed")
        assert commits >= 1, "both transactions were refused"
        with s.transaction("acct_a", write=False) as tx:
            found = tx.get_account()
            assert found is not None
            assert found.seats_used == commits, (
                f"{commits} transactions each added one seat, the counter says "
                f"{found.seats_used}: an update was lost"
            )

    def test_two_accounts_commit_side_by_side(self, s: Store) -> None:
        """A transaction of account B that runs while one of account A is open,
        and commits first, is not undone when A's commits; both changes stay."""
        if not self.capabilities.threads:
            pytest.skip("the adapter does not declare capability 'threads'")
        tok_a = token("tok_a")
        tok_b = token("tok_b", account_id="acct_b", grants={"troop_b": EDIT_DEPLOY})
        b_done = threading.Event()
        failures: list[Exception] = []

        def account_b() -> None:
            try:
                with s.transaction("acct_b") as tx:
                    found = tx.get_account()
                    assert found is not None
                    tx.put_account(attrs.evolve(found, seats_used=1))
                    tx.put_troop(TroopRecord("troop_b2", "acct_b", "b2", T0))
                    tx.put_token(tok_b)
                    tx.put_member(MemberRecord("bob", "acct_b", {"troop_b": FULL}))
            except Exception as exc:  # noqa: BLE001 (the main thread reports it)
                failures.append(exc)
            finally:
                b_done.set()

        thread = threading.Thread(target=account_b)
        with s.transaction("acct_a") as tx:
            found = tx.get_account()
            assert found is not None
            tx.put_account(attrs.evolve(found, seats_used=1))
            tx.put_troop(TroopRecord("troop_a2", "acct_a", "a2", T0))
            tx.put_token(tok_a)
            tx.put_member(MemberRecord("alice", "acct_a", {"troop_a": FULL}))
            thread.start()
            b_done.wait(OVERLAP_SECONDS)
        thread.join(60)
        assert not thread.is_alive(), "account B's transaction never finished"
        assert not failures, failures
        for account_id, troop_id, record, member in (
            ("acct_a", "troop_a2", tok_a, "alice"),
            ("acct_b", "troop_b2", tok_b, "bob"),
        ):
            with s.transaction(account_id, write=False) as tx:
                found = tx.get_account()
                assert found is not None
                assert found.seats_used == 1, f"{account_id}'s change was undone"
                assert tx.get_troop(troop_id) is not None, f"{troop_id} was undone"
                assert same_token(tx.get_token(record.id), record)
                assert tx.get_member(member) is not None, f"{member} was undone"
            assert same_token(s.lookup(record.digest), record)
            assert s.troop_account(troop_id) == account_id

    def test_connections_racing_for_the_last_seat(self, opener: Opener) -> None:
        """Threads each with its own store object on one backing store: exactly
        the capacity wins."""
        self._need(opener, "shared")
        told = story(TroopAuth(opener.main), seats=3)
        stores = [opener.open() for _ in range(6)]
        barrier = threading.Barrier(len(stores))

        def one(store: Store) -> int:
            auth = TroopAuth(store)
            barrier.wait(30)
            won = 0
            for _ in range(2):
                try:
                    auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
                    won += 1
                except SeatsExhausted:
                    pass
            return won

        with ThreadPoolExecutor(len(stores)) as pool:
            assert sum(pool.map(one, stores)) == 3
        assert TroopAuth(opener.open()).seats(told.account_id).used == 3

    def test_a_store_object_rereads_what_another_changed(self, opener: Opener) -> None:
        """In a fixed order: store 2 reads the account, its tokens, a member
        and the audit log; store 1 fills every seat, revokes a token, changes
        the member and logs; store 2's reads and changes then see all of it
        (no seat is sold twice)."""
        self._need(opener, "shared")
        first = TroopAuth(opener.main)
        told = story(first, seats=2)
        kept = first.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        first.add_member(told.owner, told.troop_id, "alice", FULL)
        second = TroopAuth(opener.open())
        # Store 2 reads everything once.
        assert second.seats(told.account_id).used == 1
        assert len(second.tokens(told.troop_id)) == 1
        second.authorize(
            second.member(told.account_id, "alice"), told.troop_id, Permission.MANAGE
        )
        logged = len(second.audit_log(told.troop_id))
        # Store 1 changes it.
        first.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        first.revoke(told.owner, kept.token_id)
        first.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        first.add_member(told.owner, told.troop_id, "alice", EDIT_DEPLOY)
        # Store 2 must see it.
        assert second.seats(told.account_id).used == 2
        with pytest.raises(SeatsExhausted):
            second.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        assert len(second.tokens(told.troop_id)) == 2
        alice = second.member(told.account_id, "alice")
        second.authorize(alice, told.troop_id, Permission.EDIT, key="deploy")
        with pytest.raises(AccessDenied):
            second.authorize(alice, told.troop_id, Permission.MANAGE)
        assert [e.action for e in second.audit_log(told.troop_id)[logged:]] == [
            AuditAction.ISSUE,
            AuditAction.REVOKE,
            AuditAction.ISSUE,
            AuditAction.MEMBER_ADD,
        ]
        second.add_member(told.owner, told.troop_id, "bob", EDIT_DEPLOY)
        assert first.check_audit_log(told.troop_id) is None
        assert TroopAuth(opener.open()).seats(told.account_id).used == 2

    def test_processes_racing_for_the_last_seat(self, opener: Opener) -> None:
        """Four processes issue at once on one backing store: exactly the
        capacity wins."""
        self._need(opener, "processes")
        told = story(TroopAuth(opener.main), seats=5)
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            start = manager.Event()
            with ctx.Pool(4) as pool:
                results = [
                    pool.apply_async(
                        process_worker,
                        (opener.factory, told.owner, told.troop_id, start, 3),
                    )
                    for _ in range(4)
                ]
                start.set()
                wins = sum(r.get(120) for r in results)
        assert wins == 5
        assert TroopAuth(opener.open()).seats(told.account_id).used == 5
