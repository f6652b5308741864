"""The verify path: lookup by digest, and what rotation, revocation and a
replaced personal token do to it."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

from ..auth import TroopAuth
from ..errors import AccessDenied, InvalidToken, StoreError
from ..models import Kind
from ..permission import Permission
from ..store import Store, TroopRecord
from ..tokens import digest, new_value
from ._helpers import EDIT_DEPLOY, T0, FrozenClock, KitBase, same_token, story, token


class LookupTests(KitBase):
    """Lookup by digest, digest uniqueness, rotation, revocation, the PAT."""

    def test_lookup_by_digest(self, s: Store) -> None:
        """lookup finds a committed live token by its digest, else None."""
        record = token("tok_1")
        assert s.lookup(record.digest) is None
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        assert same_token(s.lookup(record.digest), record)
        assert s.lookup(digest(new_value())) is None

    def test_lookup_skips_revoked(self, s: Store) -> None:
        """A revoked token leaves the digest index."""
        record = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        with s.transaction("acct_a") as tx:
            tx.put_token(attrs.evolve(record, revoked=True, seated=False, grants={}))
        assert s.lookup(record.digest) is None

    def test_digest_is_unique(self, s: Store) -> None:
        """A second token with a digest in use is refused, and nothing commits."""
        first = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(first)
        twin = attrs.evolve(token("tok_2"), digest=first.digest)

        def clash() -> None:
            with s.transaction("acct_a") as tx:
                tx.put_troop(TroopRecord("troop_late", "acct_a", "late", T0))
                tx.put_token(twin)

        with pytest.raises(StoreError):
            clash()
        with s.transaction("acct_a", write=False) as tx:
            assert tx.get_token("tok_2") is None
            assert tx.get_troop("troop_late") is None
        assert same_token(s.lookup(first.digest), first)

    def test_rotation_replaces_the_digest_atomically(self, s: Store) -> None:
        """After a new digest commits, the old one finds nothing, the new one the
        token; no moment where both or neither work for the committed state."""
        old = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(old)
        new = attrs.evolve(old, digest=digest(new_value()), generation=1)
        with s.transaction("acct_a") as tx:
            tx.put_token(new)
        assert s.lookup(old.digest) is None
        found = s.lookup(new.digest)
        assert found is not None
        assert found.generation == 1

    def test_rotation_rewrites_the_whole_record(self, s: Store) -> None:
        """A token rewritten with a new digest, hint, generation, name, expiry and
        grants reads back with all of them, by id and by its new digest."""
        old = token("tok_1", expires_at=T0 + timedelta(days=1))
        with s.transaction("acct_a") as tx:
            tx.put_token(old)
        value = new_value()
        new = attrs.evolve(
            old,
            digest=digest(value),
            hint=f"{value[:10]}…{value[-2:]}",
            generation=old.generation + 1,
            name="renamed",
            expires_at=T0 + timedelta(days=2),
            grants={"troop_a": EDIT_DEPLOY, "troop_z": EDIT_DEPLOY},
        )
        assert new.hint != old.hint
        with s.transaction("acct_a") as tx:
            tx.put_token(new)
            assert same_token(tx.get_token("tok_1"), new)
        with s.transaction("acct_a", write=False) as tx:
            assert same_token(tx.get_token("tok_1"), new)
            assert [t.id for t in tx.attached_tokens("troop_z")] == ["tok_1"]
        assert same_token(s.lookup(new.digest), new)
        assert s.lookup(old.digest) is None

    def test_uncommitted_writes_are_invisible(self, s: Store) -> None:
        """Another thread's lookup sees a token only once its transaction commits."""
        record = token("tok_1")
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
        told = story(auth)
        issued = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        again = auth.rotate(told.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            auth.verify(issued.value, told.troop_id, Permission.EDIT, key="deploy")
        principal = auth.verify(again.value, told.troop_id, Permission.EDIT, "deploy")
        assert principal.token_id == issued.token_id

    def test_revocation_kills_the_value_and_frees_the_seat(self, s: Store) -> None:
        """Through TroopAuth: a revoked value is refused and its seat is free."""
        auth = TroopAuth(s)
        told = story(auth, seats=1)
        issued = auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
        auth.revoke(told.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            auth.authenticate(issued.value)
        assert auth.seats(told.account_id).used == 0
        auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)

    def test_replaced_personal_token_is_refused(self, s: Store) -> None:
        """Through TroopAuth: once a personal token is replaced, its old value
        is refused at once and its digest finds nothing; the new value works."""
        auth = TroopAuth(s, clock=FrozenClock())
        told = story(auth)
        first = auth.issue_personal_token(told.account_id)
        second = auth.issue_personal_token(told.account_id)
        with pytest.raises(InvalidToken):
            auth.authenticate(first.value)
        with pytest.raises(InvalidToken):
            auth.verify(first.value, told.troop_id, Permission.VIEW)
        assert s.lookup(digest(first.value)) is None
        with s.transaction(told.account_id, write=False) as tx:
            dead = tx.get_token(first.token_id)
            assert dead is not None
            assert dead.revoked
            assert dead.kind is Kind.PERSONAL
        principal = auth.verify(second.value, told.troop_id, Permission.MANAGE)
        assert principal.token_id == second.token_id
        with pytest.raises(AccessDenied):
            auth.issue_token(told.owner, told.troop_id, EDIT_DEPLOY)
