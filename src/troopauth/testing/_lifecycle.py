"""The store's own lifecycle: ``close()`` and ``with``."""

from __future__ import annotations

from typing import Any

import pytest

from ..auth import TroopAuth
from ..errors import StoreError, TroopAuthError
from ..permission import Permission
from ..tokens import digest
from ._helpers import EDIT_DEPLOY, KitBase, Opener, story


class LifecycleTests(KitBase):
    """A closed store serves nothing: no change, no lookup, no verify."""

    def test_close_ends_the_store(self, opener: Opener) -> None:
        """After close(), management calls raise StoreError (a TroopAuthError)."""
        auth = TroopAuth(opener.main)
        told = story(auth)
        opener.main.close()
        with pytest.raises(StoreError):
            auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)

    def test_close_ends_lookup_and_verify(self, opener: Opener) -> None:
        """After close(), lookup no longer finds a live token (it raises
        StoreError or returns None), and verify and authenticate fail with a
        TroopAuthError."""
        auth = TroopAuth(opener.main)
        told = story(auth)
        issued = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        auth.verify(issued.value, told.troop_id, Permission.EDIT, key="deploy")
        opener.main.close()
        try:
            found = opener.main.lookup(digest(issued.value))
        except StoreError:
            found = None
        assert found is None, "lookup still finds tokens after close()"
        with pytest.raises(TroopAuthError):
            auth.verify(issued.value, told.troop_id, Permission.EDIT, key="deploy")
        with pytest.raises(TroopAuthError):
            auth.authenticate(issued.value)

    def test_context_manager_closes(self, opener: Opener) -> None:
        """``with store:`` returns the store and closes it on the way out."""
        store: Any = opener.main
        with store as entered:
            assert entered is store
        with pytest.raises(StoreError), store.transaction("acct_a", write=False):
            pass
