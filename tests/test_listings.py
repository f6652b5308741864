"""The listings on every store: an account's troops, a troop's members, one
token in any state, resizing the seat pool, and a troop's tokens a page at a
time, oldest first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from troopauth import (
    InvalidArgument,
    Member,
    MemoryStore,
    NotFound,
    SeatsExhausted,
    TroopAuth,
)

from .conftest import FrozenClock
from .helpers import grant, make_account

EDIT = grant("edit", "key:deploy")


class TestAccount:
    """``account(account_id)``: the account as it is now."""

    def test_reads_the_policy_and_the_pool(self, auth: TroopAuth) -> None:
        """Capacity, audit log and token policy, as last set."""
        from datetime import timedelta

        s = make_account(auth, seats=2)
        auth.set_seats(s.account.id, 4)
        auth.set_policy(s.account.id, max_token_lifetime=timedelta(days=3))
        account = auth.account(s.account.id)
        assert (account.id, account.seats, account.audit_log) == (
            s.account.id,
            4,
            True,
        )
        assert account.max_token_lifetime == timedelta(days=3)
        assert account.require_expiry is False

    def test_unknown_account(self, auth: TroopAuth) -> None:
        """An account that does not exist is NotFound; a malformed id is
        InvalidArgument."""
        with pytest.raises(NotFound):
            auth.account("acct_nope")
        with pytest.raises(InvalidArgument):
            auth.account("")


class TestTroops:
    """``troops(account_id)``."""

    def test_oldest_first(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """Every troop of the account, oldest first, and no other account's."""
        s = make_account(auth, troops=1)
        clock.advance(seconds=1)
        second = auth.create_troop(s.account.id, "second")
        make_account(auth, troops=2)  # another account's troops stay apart
        assert [t.id for t in auth.troops(s.account.id)] == [s.tid, second.id]
        assert auth.troops(s.account.id)[1] == second

    def test_unknown_account(self, auth: TroopAuth) -> None:
        """An account that does not exist is NotFound."""
        with pytest.raises(NotFound):
            auth.troops("acct_nope")


class TestMembers:
    """``members(troop_id)``."""

    def test_by_member_id_with_their_grant(self, auth: TroopAuth) -> None:
        """The members holding a grant in the troop, ordered by id, each with
        the grant they hold there (not their grants elsewhere)."""
        s = make_account(auth, troops=2)
        auth.add_member(s.owner, s.tid, "carol", EDIT)
        auth.add_member(s.owner, s.tid, "alice", grant("view"))
        auth.add_member(s.owner, s.troops[1].id, "bob", EDIT)
        auth.add_member(s.owner, s.troops[1].id, "alice", EDIT)
        assert auth.members(s.tid) == [
            Member(s.tid, "alice", grant("view")),
            Member(s.tid, "carol", EDIT),
        ]
        assert [m.member_id for m in auth.members(s.troops[1].id)] == ["alice", "bob"]

    def test_follows_changes(self, auth: TroopAuth) -> None:
        """A replaced grant is listed as replaced; a removed member is gone."""
        s = make_account(auth)
        auth.add_member(s.owner, s.tid, "alice", grant("view,edit"))
        auth.add_member(s.owner, s.tid, "alice", grant("view"))
        assert auth.members(s.tid) == [Member(s.tid, "alice", grant("view"))]
        auth.remove_member(s.owner, s.tid, "alice")
        assert auth.members(s.tid) == []

    def test_unknown_troop(self, auth: TroopAuth) -> None:
        """A troop that does not exist is NotFound."""
        with pytest.raises(NotFound):
            auth.members("troop_nope")


class TestToken:
    """``token(token_id)``."""

    def test_any_state(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """A live, an expired and a revoked token are all found; the revoked one
        says so and is attached nowhere."""
        s = make_account(auth)
        live = auth.issue_token(s.owner, s.tid, EDIT, name="live")
        soon = clock.now.replace(year=clock.now.year + 1)
        expiring = auth.issue_token(s.owner, s.tid, EDIT, expires_at=soon)
        gone = auth.issue_token(s.owner, s.tid, EDIT, name="gone")
        auth.revoke(s.owner, gone.token_id)
        clock.now = soon
        info = auth.token(live.token_id)
        assert (info.name, info.revoked, dict(info.grants)) == (
            "live",
            False,
            {s.tid: EDIT},
        )
        assert auth.token(expiring.token_id).expires_at == soon
        revoked = auth.token(gone.token_id)
        assert revoked.revoked
        assert dict(revoked.grants) == {}
        assert auth.token(s.pat.token_id).kind.value == "personal"

    def test_unknown_token(self, auth: TroopAuth) -> None:
        """A token id that does not exist is NotFound."""
        make_account(auth)
        with pytest.raises(NotFound):
            auth.token("tok_nope")


class TestSetSeats:
    """``set_seats(account_id, n)``."""

    def test_grow_and_shrink(self, auth: TroopAuth) -> None:
        """The pool grows and shrinks down to the seats in use, not below."""
        s = make_account(auth, seats=1)
        auth.issue_token(s.owner, s.tid, EDIT)
        with pytest.raises(SeatsExhausted):
            auth.issue_token(s.owner, s.tid, EDIT)
        assert auth.set_seats(s.account.id, 3).free == 2
        auth.issue_token(s.owner, s.tid, EDIT)
        with pytest.raises(SeatsExhausted):
            auth.set_seats(s.account.id, 1)
        assert auth.seats(s.account.id).capacity == 3
        pool = auth.set_seats(s.account.id, 2)
        assert (pool.capacity, pool.used, pool.free) == (2, 2, 0)
        assert auth.seats(s.account.id) == pool

    def test_expired_tokens_do_not_count(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """Seats held by tokens that expired since are free to shrink away."""
        s = make_account(auth, seats=2)
        later = clock.now.replace(year=clock.now.year + 1)
        auth.issue_token(s.owner, s.tid, EDIT, expires_at=later)
        clock.now = later
        assert auth.set_seats(s.account.id, 0).used == 0

    @pytest.mark.parametrize("bad", [-1, True, 1.5, "3", None])
    def test_bad_count(self, auth: TroopAuth, bad: object) -> None:
        """A count that is not a whole number >= 0 is InvalidArgument."""
        s = make_account(auth, seats=2)
        with pytest.raises(InvalidArgument):
            auth.set_seats(s.account.id, bad)  # type: ignore[arg-type]
        assert auth.seats(s.account.id).capacity == 2


class TestTokensPages:
    """``tokens(troop_id, limit=, after=)``."""

    def test_oldest_first(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """A troop's tokens come oldest first, whatever order they were
        attached in; the personal token is never listed."""
        s = make_account(auth, troops=2)
        first = auth.issue_token(s.owner, s.troops[1].id, EDIT)
        clock.advance(seconds=1)
        second = auth.issue_token(s.owner, s.tid, EDIT)
        clock.advance(seconds=1)
        auth.attach(s.owner, first.token_id, s.tid, EDIT)  # older, attached later
        assert [t.token_id for t in auth.tokens(s.tid)] == [
            first.token_id,
            second.token_id,
        ]

    def test_pages_cover_everything_once(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """Walking the pages yields every token exactly once, in order; a
        page shorter than the limit is the last."""
        s = make_account(auth, seats=7)
        made = []
        for i in range(7):
            if i % 3:
                clock.advance(seconds=1)  # some share a creation time
            made.append(auth.issue_token(s.owner, s.tid, EDIT).token_id)
        expected = [t.token_id for t in auth.tokens(s.tid)]
        assert sorted(expected) == sorted(made)
        walked: list[str] = []
        page = auth.tokens(s.tid, limit=3)
        while page:
            walked += [t.token_id for t in page]
            if len(page) < 3:
                break
            page = auth.tokens(s.tid, limit=3, after=page[-1].token_id)
        assert walked == expected

    def test_after_a_token_that_left(self, auth: TroopAuth) -> None:
        """The cursor still works when its token was revoked since."""
        s = make_account(auth)
        a, b, c = (auth.issue_token(s.owner, s.tid, EDIT) for _ in range(3))
        ordered = [t.token_id for t in auth.tokens(s.tid)]
        auth.revoke(s.owner, ordered[0])
        rest = auth.tokens(s.tid, after=ordered[0])
        assert [t.token_id for t in rest] == ordered[1:]
        assert {a.token_id, b.token_id, c.token_id} == set(ordered)

    @pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2"])
    def test_bad_limit(self, auth: TroopAuth, bad: object) -> None:
        """A limit that is not a whole number >= 1 is InvalidArgument."""
        s = make_account(auth)
        with pytest.raises(InvalidArgument):
            auth.tokens(s.tid, limit=bad)  # type: ignore[arg-type]

    def test_unknown_or_foreign_cursor(self, auth: TroopAuth) -> None:
        """A cursor naming no token of this account is NotFound."""
        s = make_account(auth)
        other = make_account(auth)
        theirs = auth.issue_token(other.owner, other.tid, EDIT)
        with pytest.raises(NotFound):
            auth.tokens(s.tid, after="tok_nope")
        with pytest.raises(NotFound):
            auth.tokens(s.tid, after=theirs.token_id)


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["issue", "attach", "detach"])),
        max_size=14,
    ),
    limit=st.integers(1, 4),
)
def test_pages_agree_with_the_whole_listing(
    steps: list[tuple[int, str]], limit: int
) -> None:
    """Whatever was issued, attached and detached, the pages of a troop join up
    to exactly the whole listing, and the whole listing is in (created_at, id)
    order."""
    clock = FrozenClock()
    auth = TroopAuth(MemoryStore(), clock=clock)
    s = make_account(auth, seats=20, troops=2)
    tokens: list[str] = []
    for tick, action in steps:
        clock.advance(seconds=tick)
        if action == "issue" or not tokens:
            tokens.append(auth.issue_token(s.owner, s.troops[1].id, EDIT).token_id)
        elif action == "attach":
            auth.attach(s.owner, tokens[tick % len(tokens)], s.tid, EDIT)
        else:
            token_id = tokens[tick % len(tokens)]
            if s.tid in auth.token(token_id).grants:
                auth.detach(s.owner, token_id, s.tid)
    whole = auth.tokens(s.tid)
    assert [(t.created_at, t.token_id) for t in whole] == sorted(
        (t.created_at, t.token_id) for t in whole
    )
    joined: list[str] = []
    page = auth.tokens(s.tid, limit=limit)
    while page:
        joined += [t.token_id for t in page]
        page = auth.tokens(s.tid, limit=limit, after=page[-1].token_id)
    assert joined == [t.token_id for t in whole]


class TestExpiring:
    """``expiring(account_id, within)``: live seated tokens expiring soon."""

    def test_soonest_first_within_the_window(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """Only tokens with now < expires_at <= now + within, soonest first;
        never-expiring, expired, revoked and detached tokens are left out."""
        from datetime import timedelta

        s = make_account(auth, seats=10)
        day = timedelta(days=1)
        at = {n: clock.now + n * day for n in (1, 3, 5, 9)}
        made = {
            n: auth.issue_token(s.owner, s.tid, EDIT, expires_at=at[n]).token_id
            for n in (5, 1, 3, 9)
        }
        auth.issue_token(s.owner, s.tid, EDIT)  # never expires
        gone = auth.issue_token(s.owner, s.tid, EDIT, expires_at=at[3])
        auth.revoke(s.owner, gone.token_id)
        loose = auth.issue_token(s.owner, s.tid, EDIT, expires_at=at[3])
        auth.detach(s.owner, loose.token_id, s.tid)
        ids = [t.token_id for t in auth.expiring(s.account.id, within=5 * day)]
        assert ids == [made[1], made[3], made[5]]
        clock.now = at[1]  # the first one expires now: no longer "expiring"
        ids = [t.token_id for t in auth.expiring(s.account.id, within=2 * day)]
        assert ids == [made[3]]
        assert auth.expiring(s.account.id, within=timedelta(0)) == []

    @pytest.mark.parametrize("bad", [-1, "7d", None])
    def test_bad_window(self, auth: TroopAuth, bad: object) -> None:
        """within must be a timedelta, not negative."""
        from datetime import timedelta

        s = make_account(auth)
        with pytest.raises(InvalidArgument):
            auth.expiring(s.account.id, within=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            auth.expiring(s.account.id, within=timedelta(seconds=-1))

    def test_unknown_account(self, auth: TroopAuth) -> None:
        """An account that does not exist is NotFound."""
        from datetime import timedelta

        with pytest.raises(NotFound):
            auth.expiring("acct_nope", within=timedelta(days=1))
