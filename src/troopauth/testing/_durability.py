"""Durability: commits survive a reopen and are seen by other connections."""

from __future__ import annotations

import pytest

from ..auth import TroopAuth
from ..errors import InvalidToken
from ..permission import Permission
from ._helpers import EDIT_DEPLOY, KitBase, Opener, story


class DurabilityTests(KitBase):
    """What was committed is kept, and every store object sees it."""

    def test_changes_survive_a_reopen(self, opener: Opener) -> None:
        """Closed and reopened, the store keeps tokens, seats and audit logs."""
        self._need(opener, "durable")
        auth = TroopAuth(opener.main)
        told = story(auth)
        kept = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        gone = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        auth.revoke(told.owner, gone.token_id)
        events = auth.audit_log(told.troop_id)
        opener.main.close()
        again = TroopAuth(opener.open())
        again.verify(kept.value, told.troop_id, Permission.EDIT, key="deploy")
        with pytest.raises(InvalidToken):
            again.authenticate(gone.value)
        assert again.seats(told.account_id).used == 1
        assert again.audit_log(told.troop_id) == events
        assert again.check_audit_log(told.troop_id) is None

    def test_a_commit_is_seen_by_another_connection(self, opener: Opener) -> None:
        """A revoke committed on one store object is seen at once by another."""
        self._need(opener, "shared")
        auth = TroopAuth(opener.main)
        told = story(auth)
        issued = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        other = TroopAuth(opener.open())
        other.verify(issued.value, told.troop_id, Permission.EDIT, key="deploy")
        auth.revoke(told.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            other.verify(issued.value, told.troop_id, Permission.EDIT, key="deploy")
