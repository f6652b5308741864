"""Atomicity: a transaction commits whole or not at all, audit events with it."""

from __future__ import annotations

import attrs
import pytest

from ..audit import seal
from ..auth import TroopAuth
from ..errors import SeatsExhausted
from ..models import AuditAction
from ..store import MemberRecord, Store, TroopRecord
from ._helpers import EDIT_DEPLOY, FULL, T0, BoomError, KitBase, story, token


class AtomicityTests(KitBase):
    """A failed transaction leaves nothing; a change and its events land together."""

    def test_a_transaction_that_raises_leaves_nothing(self, s: Store) -> None:
        """Every kind of write in a failed transaction is rolled back."""
        auth = TroopAuth(s)
        told = story(auth)
        before = auth.audit_log(told.troop_id)
        record = token("tok_gone", account_id=told.account_id, grants={})

        def fail_midway() -> None:
            with s.transaction(told.account_id) as tx:
                account = tx.get_account()
                troop = tx.get_troop(told.troop_id)
                assert account is not None
                assert troop is not None
                tx.put_account(attrs.evolve(account, seats_used=account.seats_used + 1))
                tx.put_troop(TroopRecord("troop_gone", told.account_id, "gone", T0))
                tx.put_token(record)
                tx.put_member(MemberRecord("m", told.account_id, {told.troop_id: FULL}))
                event = seal(
                    troop.audit_head,
                    troop.audit_seq + 1,
                    T0,
                    account_id=told.account_id,
                    troop_id=troop.id,
                    action=AuditAction.MEMBER_ADD,
                    actor="owner",
                    member_id="m",
                    grant=FULL,
                )
                tx.append_audit(event)
                tx.put_troop(
                    attrs.evolve(troop, audit_seq=event.seq, audit_head=event.hash)
                )
                raise BoomError

        with pytest.raises(BoomError):
            fail_midway()
        assert s.lookup(record.digest) is None
        assert s.troop_account("troop_gone") is None
        assert auth.seats(told.account_id).used == 0
        assert auth.audit_log(told.troop_id) == before
        assert auth.check_audit_log(told.troop_id) is None
        with s.transaction(told.account_id, write=False) as tx:
            assert tx.get_token("tok_gone") is None
            assert tx.get_member("m") is None

    def test_audit_events_commit_with_their_change(self, s: Store) -> None:
        """A change and its events land together; a refused change writes none."""
        auth = TroopAuth(s)
        told = story(auth, seats=1)
        issued = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        assert [e.token_id for e in auth.audit_log(told.troop_id)] == [issued.token_id]
        with pytest.raises(SeatsExhausted):
            auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        assert len(auth.audit_log(told.troop_id)) == 1
        assert auth.check_audit_log(told.troop_id) is None
