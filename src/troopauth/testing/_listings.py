"""Listings and token hygiene: a troop's tokens a page at a time, its members,
the expiry window, a token's account, the account's policy, a rotation
overlap's kept digest, and the optional last-use stamps."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from ..grant import Grant
from ..store import AccountRecord, MemberRecord, Store, TroopRecord
from ..tokens import digest, new_value
from ._helpers import EDIT_DEPLOY, FULL, T0, KitBase, same_token, token


class ListingTests(KitBase):
    """The reads behind the listings, and the hygiene fields of the records."""

    def test_attached_tokens_are_paged_oldest_first(self, s: Store) -> None:
        """attached_tokens orders by (created_at, id), starts strictly after
        ``after`` and returns at most ``limit``; pages join up to the whole."""
        times = [T0 + timedelta(seconds=n) for n in (3, 1, 2, 1, 0)]
        ids = [f"tok_{n}" for n in "edcba"]
        with s.transaction("acct_a") as tx:
            for token_id, at in zip(ids, times, strict=True):
                tx.put_token(token(token_id, created_at=at))
        expected = [t for _, t in sorted(zip(times, ids, strict=True))]
        with s.transaction("acct_a", write=False) as tx:
            whole = [t.id for t in tx.attached_tokens("troop_a")]
            assert whole == expected
            joined: list[str] = []
            after = None
            while True:
                page = tx.attached_tokens("troop_a", after=after, limit=2)
                joined += [t.id for t in page]
                if len(page) < 2:
                    break
                after = (page[-1].created_at, page[-1].id)
            assert joined == expected
            middle = tx.attached_tokens("troop_a", after=(times[1], "tok_b"), limit=1)
            assert [t.id for t in middle] == ["tok_d"]  # same time, a later id

    def test_members_of_a_troop(self, s: Store) -> None:
        """members(troop) lists the members whose grants name it, following
        every change, in this account only."""
        with s.transaction("acct_a") as tx:
            tx.put_troop(TroopRecord("troop_c", "acct_a", "troop c", T0))
            tx.put_member(MemberRecord("m1", "acct_a", {"troop_a": Grant.full()}))
            tx.put_member(
                MemberRecord("m2", "acct_a", {"troop_a": EDIT_DEPLOY, "troop_c": FULL})
            )
        with s.transaction("acct_b") as tx:
            tx.put_member(MemberRecord("m1", "acct_b", {"troop_b": Grant.full()}))
        with s.transaction("acct_a") as tx:
            tx.put_member(MemberRecord("m2", "acct_a", {"troop_c": FULL}))
        with s.transaction("acct_a", write=False) as tx:
            assert {m.id for m in tx.members("troop_a")} == {"m1"}
            assert {m.id for m in tx.members("troop_c")} == {"m2"}
        with s.transaction("acct_a") as tx:
            tx.put_member(MemberRecord("m1", "acct_a", {}))
        with s.transaction("acct_a", write=False) as tx:
            assert tx.members("troop_a") == []
        with s.transaction("acct_b", write=False) as tx:
            assert [m.id for m in tx.members("troop_b")] == ["m1"]

    def test_expiring_window(self, s: Store) -> None:
        """expiring_seated(after, until) gives the seated tokens with
        after < expires_at <= until, soonest first."""
        at = {n: T0 + timedelta(hours=n) for n in range(1, 5)}
        with s.transaction("acct_a") as tx:
            tx.put_token(token("tok_3", expires_at=at[3]))
            tx.put_token(token("tok_1", expires_at=at[1]))
            tx.put_token(token("tok_2", expires_at=at[2]))
            tx.put_token(token("tok_4", expires_at=at[4], seated=False))
            tx.put_token(token("tok_n"))
        with s.transaction("acct_a", write=False) as tx:
            found = [t.id for t in tx.expiring_seated(at[1], at[4])]
            assert found == ["tok_2", "tok_3"]
            assert [t.id for t in tx.expiring_seated(T0, at[1])] == ["tok_1"]
        with s.transaction("acct_b", write=False) as tx:
            assert tx.expiring_seated(T0, at[4]) == []

    def test_token_account(self, s: Store) -> None:
        """token_account names the account of a token in any state."""
        with s.transaction("acct_a") as tx:
            tx.put_token(token("tok_live"))
            tx.put_token(token("tok_gone", revoked=True, seated=False, grants={}))
        assert s.token_account("tok_live") == "acct_a"
        assert s.token_account("tok_gone") == "acct_a"
        assert s.token_account("tok_nope") is None

    def test_policy_round_trip(self, s: Store) -> None:
        """The account's token policy reads back exactly, and can be cleared."""
        with s.transaction("acct_a") as tx:
            record = tx.get_account()
            assert record is not None
            policy = attrs.evolve(
                record,
                max_token_lifetime=timedelta(days=90, microseconds=1),
                require_expiry=True,
            )
            tx.put_account(policy)
        with s.transaction("acct_a", write=False) as tx:
            assert tx.get_account() == policy
        with s.transaction("acct_a") as tx:
            tx.put_account(attrs.evolve(policy, max_token_lifetime=None))
        with s.transaction("acct_a", write=False) as tx:
            got = tx.get_account()
            assert isinstance(got, AccountRecord)
            assert (got.max_token_lifetime, got.require_expiry) == (None, True)

    def test_rotation_overlap_keeps_the_previous_digest(self, s: Store) -> None:
        """A record with a kept previous digest is found by either digest and
        reads back whole; once the kept digest is dropped, it finds nothing."""
        first = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(first)
        rotated = attrs.evolve(
            first,
            digest=digest(new_value()),
            generation=1,
            prev_digest=first.digest,
            prev_expires_at=T0 + timedelta(hours=1),
        )
        with s.transaction("acct_a") as tx:
            tx.put_token(rotated)
        assert same_token(s.lookup(rotated.digest), rotated)
        assert same_token(s.lookup(first.digest), rotated)
        with s.transaction("acct_a", write=False) as tx:
            assert same_token(tx.get_token("tok_1"), rotated)
        settled = attrs.evolve(rotated, prev_digest=None, prev_expires_at=None)
        with s.transaction("acct_a") as tx:
            tx.put_token(settled)
        assert s.lookup(first.digest) is None
        assert same_token(s.lookup(rotated.digest), settled)

    def test_last_use_stamps(self, s: Store) -> None:
        """record_last_used (optional) stamps tokens, never backwards; a
        change written afterwards keeps the stamp."""
        record = getattr(s, "record_last_used", None)
        if record is None:
            pytest.skip("the adapter does not record last use (record_last_used)")
        first = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(first)
        stamp = T0 + timedelta(minutes=5)
        record({"tok_1": stamp, "tok_missing": stamp})
        record({"tok_1": stamp - timedelta(minutes=1)})
        found = s.lookup(first.digest)
        assert found is not None
        assert found.last_used_at == stamp
        with s.transaction("acct_a") as tx:
            current = tx.get_token("tok_1")
            assert current is not None
            assert current.last_used_at == stamp
            tx.put_token(attrs.evolve(current, name="renamed"))
        with s.transaction("acct_a", write=False) as tx:
            again = tx.get_token("tok_1")
            assert again is not None
            assert (again.name, again.last_used_at) == ("renamed", stamp)
