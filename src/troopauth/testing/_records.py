"""Records: what is written reads back whole, in its own account only, and no
read hands out the store's own state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs

from ..auth import TroopAuth
from ..grant import Grant
from ..models import AuditAction
from ..permission import Permission
from ..scope import Scope
from ..store import AccountRecord, MemberRecord, Store, Transaction, TroopRecord
from ._helpers import (
    EDIT_DEPLOY,
    FULL,
    T0,
    FrozenClock,
    KitBase,
    Opener,
    Recorder,
    account,
    check_records,
    same_token,
    story,
    token,
)

_VIEW_PROD = Grant(Permission.VIEW, Scope.parse("key:prod/*"))


class RecordTests(KitBase):
    """Round trips, scoping to the account, reads of a transaction's own writes."""

    def test_account_round_trip(self, opener: Opener) -> None:
        """An account record reads back equal, field for field."""
        record = AccountRecord(
            "acct_x",
            seats=7,
            audit_log=True,
            created_at=T0,
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
        record = TroopRecord("troop_x", "acct_a", "ünïcode name", T0, 2, "e" * 64)
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
        record = token(
            "tok_1",
            grants=grants,
            expires_at=T0 + timedelta(days=1, microseconds=7),
            generation=3,
        )
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        with s.transaction("acct_a", write=False) as tx:
            assert same_token(tx.get_token("tok_1"), record)
        found = s.lookup(record.digest)
        assert same_token(found, record)
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

    def test_member_grants_follow_every_change(self, s: Store) -> None:
        """A member's grants read back exactly after they grow, shrink to a
        smaller non-empty set, are replaced, and are emptied."""
        with s.transaction("acct_a") as tx:
            tx.put_troop(TroopRecord("troop_c", "acct_a", "c", T0))
        steps = [
            {"troop_a": FULL},
            {"troop_a": FULL, "troop_c": EDIT_DEPLOY},
            {"troop_c": EDIT_DEPLOY},
            {"troop_c": _VIEW_PROD},
            {"troop_a": EDIT_DEPLOY},
            {"troop_a": EDIT_DEPLOY, "troop_c": FULL},
            {"troop_a": _VIEW_PROD},
        ]
        for grants in steps:
            with s.transaction("acct_a") as tx:
                tx.put_member(MemberRecord("alice", "acct_a", grants))
            with s.transaction("acct_a", write=False) as tx:
                got = tx.get_member("alice")
                assert got is not None
                assert dict(got.grants) == grants, f"wrote {grants}, read {got}"
        with s.transaction("acct_a") as tx:
            tx.put_member(MemberRecord("alice", "acct_a", {}))
        with s.transaction("acct_a", write=False) as tx:
            left = tx.get_member("alice")
            assert left is None or not left.grants

    def test_audit_events_round_trip_in_order(self, s: Store) -> None:
        """Audit events read back equal, oldest first, each log apart."""
        auth = TroopAuth(s, clock=FrozenClock())
        told = story(auth)
        issued = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        auth.rotate(told.owner, issued.token_id)
        auth.revoke(told.owner, issued.token_id)
        events = auth.audit_log(told.troop_id)
        assert [e.action for e in events] == [
            AuditAction.ISSUE,
            AuditAction.ROTATE,
            AuditAction.REVOKE,
        ]
        assert [e.seq for e in events] == [1, 2, 3]
        assert {e.troop_id for e in events} == {told.troop_id}
        assert [e.action for e in auth.account_audit_log(told.account_id)] == [
            AuditAction.PAT_ISSUE
        ]
        assert auth.check_audit_log(told.troop_id) is None
        assert auth.check_account_audit_log(told.account_id) is None

    def test_account_logs_are_kept_apart(self, s: Store) -> None:
        """Each account's own audit log holds its own events only, and each
        chain checks out."""
        auth = TroopAuth(s, clock=FrozenClock())
        first, second = story(auth), story(auth)
        auth.issue_personal_token(first.account_id)
        first_log = auth.account_audit_log(first.account_id)
        second_log = auth.account_audit_log(second.account_id)
        assert [e.action for e in first_log] == [
            AuditAction.PAT_ISSUE,
            AuditAction.PAT_REPLACE,
        ]
        assert [e.action for e in second_log] == [AuditAction.PAT_ISSUE]
        assert {e.account_id for e in first_log} == {first.account_id}
        assert {e.account_id for e in second_log} == {second.account_id}
        assert auth.check_account_audit_log(first.account_id) is None
        assert auth.check_account_audit_log(second.account_id) is None

    def test_reads_are_scoped_to_the_account(self, s: Store) -> None:
        """A transaction sees its own account's records only: each record is
        written, seen by its own account, and unseen (or unchanged) by the other,
        even a member with the same id in both."""
        soon = T0 + timedelta(hours=1)
        with s.transaction("acct_a") as tx:
            tx.put_token(token("tok_1", expires_at=soon))
            tx.put_member(MemberRecord("m", "acct_a", {"troop_a": FULL}))
            tx.put_troop(TroopRecord("troop_a2", "acct_a", "a2", T0))
        auth = TroopAuth(s, clock=FrozenClock())
        pat = auth.issue_personal_token("acct_a")
        auth.add_member(auth.authenticate(pat.value), "troop_a", "m2", EDIT_DEPLOY)
        with s.transaction("acct_b") as tx:
            tx.put_member(MemberRecord("m", "acct_b", {"troop_b": EDIT_DEPLOY}))
        with s.transaction("acct_a", write=False) as tx:
            assert tx.get_troop("troop_a2") is not None
            assert tx.get_token("tok_1") is not None
            member = tx.get_member("m")
            assert member is not None
            assert dict(member.grants) == {"troop_a": FULL}
            assert {t.id for t in tx.troops()} == {"troop_a", "troop_a2"}
            attached = {t.id for t in tx.attached_tokens("troop_a")}
            assert attached == {"tok_1", pat.token_id}
            assert [t.id for t in tx.expired_seated(soon)] == ["tok_1"]
            assert len(tx.audit_events(None)) == 1
            assert len(tx.audit_events("troop_a")) == 1
        with s.transaction("acct_b", write=False) as tx:
            assert tx.get_troop("troop_a") is None
            assert tx.get_troop("troop_a2") is None
            assert tx.get_token("tok_1") is None
            member = tx.get_member("m")
            assert member is not None
            assert dict(member.grants) == {"troop_b": EDIT_DEPLOY}
            assert tx.get_member("m2") is None
            assert [t.id for t in tx.troops()] == ["troop_b"]
            assert tx.attached_tokens("troop_a") == []
            assert tx.expired_seated(soon) == []
            assert tx.audit_events("troop_a") == []
            assert tx.audit_events(None) == []
        with s.transaction("acct_b") as tx:
            tx.put_member(MemberRecord("m", "acct_b", {}))
        with s.transaction("acct_a", write=False) as tx:
            member = tx.get_member("m")
            assert member is not None
            assert dict(member.grants) == {"troop_a": FULL}

    def test_reads_see_the_transactions_own_writes(self, s: Store) -> None:
        """Inside a transaction, every read sees what it wrote."""
        with s.transaction("acct_a") as tx:
            tx.put_account(attrs.evolve(account(), seats_used=2))
            tx.put_troop(TroopRecord("troop_n", "acct_a", "new", T0))
            tx.put_token(token("tok_1", grants={"troop_n": EDIT_DEPLOY}))
            found = tx.get_account()
            assert found is not None
            assert found.seats_used == 2
            assert tx.get_troop("troop_n") is not None
            assert "troop_n" in {t.id for t in tx.troops()}
            assert [t.id for t in tx.attached_tokens("troop_n")] == ["tok_1"]

    def test_expired_seated_comes_from_the_expiry(self, s: Store) -> None:
        """expired_seated(now) returns the seated tokens with expires_at <= now."""
        soon, later = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
        with s.transaction("acct_a") as tx:
            tx.put_token(token("tok_soon", expires_at=soon))
            tx.put_token(token("tok_later", expires_at=later))
            tx.put_token(token("tok_never"))
            tx.put_token(token("tok_unseated", expires_at=soon, seated=False))
        with s.transaction("acct_a", write=False) as tx:
            assert tx.expired_seated(T0) == []
            assert [t.id for t in tx.expired_seated(soon)] == ["tok_soon"]
            ids = sorted(t.id for t in tx.expired_seated(later))
            assert ids == ["tok_later", "tok_soon"]
        with s.transaction("acct_a") as tx:
            found = tx.get_token("tok_soon")
            assert found is not None
            tx.put_token(attrs.evolve(found, seated=False))
            assert [t.id for t in tx.expired_seated(soon)] == []

    def test_attached_tokens_follow_the_grants(self, s: Store) -> None:
        """attached_tokens(troop) lists exactly the tokens whose grants name it."""
        with s.transaction("acct_a") as tx:
            tx.put_troop(TroopRecord("troop_c", "acct_a", "c", T0))
            tx.put_token(token("tok_1", grants={"troop_a": EDIT_DEPLOY}))
            tx.put_token(
                token(
                    "tok_2",
                    grants={"troop_a": EDIT_DEPLOY, "troop_c": FULL},
                )
            )
        with s.transaction("acct_a") as tx:
            found = tx.get_token("tok_2")
            assert found is not None
            tx.put_token(attrs.evolve(found, grants={"troop_c": FULL}))
        with s.transaction("acct_a", write=False) as tx:
            assert sorted(t.id for t in tx.attached_tokens("troop_a")) == ["tok_1"]
            assert sorted(t.id for t in tx.attached_tokens("troop_c")) == ["tok_2"]

    def test_returned_collections_are_copies(self, s: Store) -> None:
        """Emptying or extending a list a read returned changes nothing the next
        read returns, in the same transaction or a later one."""
        auth = TroopAuth(s, clock=FrozenClock())
        told = story(auth)
        issued = auth.issue_token(
            told.owner, told.troop_id, EDIT_DEPLOY, expires_at=T0 + timedelta(hours=1)
        )
        auth.add_member(told.owner, told.troop_id, "alice", EDIT_DEPLOY)
        later = T0 + timedelta(hours=2)

        def reads(tx: Transaction) -> list[list[Any]]:
            return [
                tx.troops(),
                tx.attached_tokens(told.troop_id),
                tx.expired_seated(later),
                tx.audit_events(told.troop_id),
                tx.audit_events(None),
            ]

        with s.transaction(told.account_id, write=False) as tx:
            before = [[repr(r) for r in found] for found in reads(tx)]
            assert all(before), f"every read returns something: {before}"
            for found in reads(tx):
                found.append(found[0])
            for found in reads(tx):
                found.clear()
            assert [[repr(r) for r in found] for found in reads(tx)] == before
        with s.transaction(told.account_id, write=False) as tx:
            assert [[repr(r) for r in found] for found in reads(tx)] == before
        log = auth.audit_log(told.troop_id)
        log.clear()
        assert len(auth.audit_log(told.troop_id)) == len(before[3])
        assert any(issued.token_id in text for text in before[1])

    def test_every_change_reads_back_whole(self, s: Store) -> None:
        """After each change through TroopAuth (issue, attach, re-attach,
        detach, rotate, revoke, a personal token issued and replaced, members
        added, changed and removed) every record written reads back whole, a
        live token's digest finds it whole, and old digests find nothing."""
        recorder = Recorder(s)
        auth = TroopAuth(recorder, clock=FrozenClock())
        told = story(auth)
        other = auth.create_troop(told.account_id, "other").id
        owner = told.owner
        check_records(recorder, everything=True)
        issued = auth.issue_token(owner, told.troop_id, EDIT_DEPLOY, name="ci")
        token_id = issued.token_id
        changes: list[Callable[[], object]] = [
            lambda: auth.attach(owner, token_id, other, FULL),
            lambda: auth.attach(owner, token_id, other, _VIEW_PROD),
            lambda: auth.rotate(owner, token_id),
            lambda: auth.detach(owner, token_id, told.troop_id),
            lambda: auth.rotate(owner, token_id),
            lambda: auth.add_member(owner, told.troop_id, "alice", FULL),
            lambda: auth.add_member(owner, other, "alice", EDIT_DEPLOY),
            lambda: auth.add_member(owner, told.troop_id, "alice", _VIEW_PROD),
            lambda: auth.remove_member(owner, told.troop_id, "alice"),
            lambda: auth.add_member(owner, other, "alice", FULL),
            lambda: auth.remove_member(owner, other, "alice"),
            lambda: auth.revoke(owner, token_id),
            lambda: auth.issue_personal_token(told.account_id),
            lambda: auth.create_troop(told.account_id, "third"),
        ]
        check_records(recorder)
        for change in changes:
            change()
            check_records(recorder)
        check_records(recorder, everything=True)
