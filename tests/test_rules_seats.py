"""Example-based tests of DESIGN.md section 1: seats (one per live attached
troop token, PAT and members free, expiry frees) and atomicity (a refused
call changes nothing: seats, listings, audit logs and verify answers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from tests.helpers import Setup, grant, issue, make_account, snapshot
from troopauth import (
    AccessDenied,
    Grant,
    InvalidArgument,
    InvalidToken,
    IssuedToken,
    NotFound,
    Permission,
    Principal,
    SeatPool,
    SeatsExhausted,
    TroopAuth,
)

V = Permission.VIEW


def _pool(auth: TroopAuth, world: Setup) -> tuple[int, int, int]:
    pool = auth.seats(world.account.id)
    return pool.capacity, pool.used, pool.free


class TestSeatCounting:
    """A troop token takes one seat while attached, live and unexpired."""

    def test_fresh_account(self, auth):
        """A new account (with its PAT and troops) uses no seat."""
        world = make_account(auth, seats=3, troops=2)
        assert auth.seats(world.account.id) == SeatPool(3, 0)
        assert auth.seats(world.account.id).free == 3

    def test_issue_takes_one(self, auth):
        """Each issue takes exactly one seat."""
        world = make_account(auth, seats=3)
        auth.issue_token(world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (3, 1, 2)
        auth.issue_token(world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (3, 2, 1)

    def test_more_troops_same_seat(self, auth):
        """Attaching to a 2nd and 3rd troop, re-attaching, rotating: still one seat."""
        world = make_account(auth, seats=1, troops=3)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        for tid in world.troop_ids()[1:]:
            auth.attach(world.owner, ci.token_id, tid, grant("view"))
            assert _pool(auth, world) == (1, 1, 0)
        auth.attach(world.owner, ci.token_id, world.tid, grant("edit"))
        auth.rotate(world.owner, ci.token_id)
        assert _pool(auth, world) == (1, 1, 0)

    def test_detach_last_frees(self, auth):
        """Detaching from some troops keeps the seat; from the last frees it."""
        world = make_account(auth, seats=1, troops=3)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        for tid in world.troop_ids()[1:]:
            auth.attach(world.owner, ci.token_id, tid, grant("view"))
        for tid in world.troop_ids()[:-1]:
            auth.detach(world.owner, ci.token_id, tid)
            assert _pool(auth, world) == (1, 1, 0)
        auth.detach(world.owner, ci.token_id, world.troop_ids()[-1])
        assert _pool(auth, world) == (1, 0, 1)
        auth.issue_token(world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (1, 1, 0)

    def test_reattach_takes_seat_again(self, auth):
        """A token attached nowhere takes a seat again when attached."""
        world = make_account(auth, seats=1, troops=2)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        auth.detach(world.owner, ci.token_id, world.tid)
        auth.attach(world.owner, ci.token_id, world.troop_ids()[1], grant("view"))
        assert _pool(auth, world) == (1, 1, 0)
        auth.attach(world.owner, ci.token_id, world.tid, grant("view"))
        assert _pool(auth, world) == (1, 1, 0)

    def test_revoke_frees(self, auth):
        """Revoke frees the seat once; a second revoke frees nothing more."""
        world = make_account(auth, seats=2, troops=3)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        keep = auth.issue_token(world.owner, world.tid, grant("view"))
        for tid in world.troop_ids()[1:]:
            auth.attach(world.owner, ci.token_id, tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        assert _pool(auth, world) == (2, 1, 1)
        auth.revoke(world.owner, ci.token_id)
        assert _pool(auth, world) == (2, 1, 1)
        auth.verify(keep.value, world.tid, V)

    def test_revoke_unattached_frees_nothing(self, auth):
        """Revoking a token that is attached nowhere leaves the count alone."""
        world = make_account(auth, seats=2)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        auth.issue_token(world.owner, world.tid, grant("view"))
        auth.detach(world.owner, ci.token_id, world.tid)
        assert _pool(auth, world) == (2, 1, 1)
        auth.revoke(world.owner, ci.token_id)
        assert _pool(auth, world) == (2, 1, 1)

    def test_expiry_frees_and_seat_reused(self, auth, clock):
        """An expired token's seat is free at once and a new issue can take it."""
        world = make_account(auth, seats=1, troops=3)
        old = auth.issue_token(
            world.owner,
            world.tid,
            grant("view"),
            expires_at=clock.now + timedelta(minutes=5),
        )
        for tid in world.troop_ids()[1:]:
            auth.attach(world.owner, old.token_id, tid, grant("view"))
        with pytest.raises(SeatsExhausted):
            auth.issue_token(world.owner, world.tid, grant("view"))
        clock.advance(minutes=5)
        assert _pool(auth, world) == (1, 0, 1)
        new, _ = issue(auth, world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (1, 1, 0)
        auth.verify(new.value, world.tid, V)
        with pytest.raises(InvalidToken):
            auth.verify(old.value, world.tid, V)
        auth.revoke(world.owner, old.token_id)
        assert _pool(auth, world) == (1, 1, 0)
        with pytest.raises(SeatsExhausted):
            auth.issue_token(world.owner, world.tid, grant("view"))

    def test_expired_then_revoked_frees_once(self, auth, clock):
        """Revoking an expired token before anything reaped it frees one seat only."""
        world = make_account(auth, seats=2)
        old = auth.issue_token(
            world.owner, world.tid, grant("view"), expires_at=clock.now + timedelta(1)
        )
        auth.issue_token(world.owner, world.tid, grant("view"))
        clock.advance(days=1)
        assert _pool(auth, world) == (2, 1, 1)
        auth.revoke(world.owner, old.token_id)
        assert _pool(auth, world) == (2, 1, 1)
        auth.issue_token(world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (2, 2, 0)
        with pytest.raises(SeatsExhausted):
            auth.issue_token(world.owner, world.tid, grant("view"))

    def test_expiry_after_reattach_frees_once(self, auth, clock):
        """A token detached and re-attached, then expired, frees its one seat once."""
        world = make_account(auth, seats=2, troops=2)
        ci = auth.issue_token(
            world.owner, world.tid, grant("view"), expires_at=clock.now + timedelta(1)
        )
        auth.detach(world.owner, ci.token_id, world.tid)
        auth.attach(world.owner, ci.token_id, world.troop_ids()[1], grant("view"))
        auth.issue_token(world.owner, world.tid, grant("view"))
        clock.advance(days=1)
        assert _pool(auth, world) == (2, 1, 1)
        auth.issue_token(world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (2, 2, 0)
        with pytest.raises(SeatsExhausted):
            auth.issue_token(world.owner, world.tid, grant("view"))

    def test_reaped_token_still_listed(self, auth, clock):
        """An expired token whose seat was reused stays listed until revoked."""
        world = make_account(auth, seats=1)
        old = auth.issue_token(
            world.owner, world.tid, grant("view"), expires_at=clock.now + timedelta(1)
        )
        clock.advance(days=1)
        new = auth.issue_token(world.owner, world.tid, grant("view"))
        listed = {t.token_id for t in auth.tokens(world.tid)}
        assert listed == {old.token_id, new.token_id}
        with pytest.raises(NotFound):
            auth.attach(world.owner, old.token_id, world.tid, grant("view"))
        auth.revoke(world.owner, old.token_id)
        assert [t.token_id for t in auth.tokens(world.tid)] == [new.token_id]
        assert _pool(auth, world) == (1, 1, 0)

    def test_many_expire_together(self, auth, clock):
        """Several tokens expiring at once free as many seats."""
        world = make_account(auth, seats=3)
        for minutes in (1, 2, 3):
            auth.issue_token(
                world.owner,
                world.tid,
                grant("view"),
                expires_at=clock.now + timedelta(minutes=minutes),
            )
        clock.advance(minutes=2)
        assert _pool(auth, world) == (3, 1, 2)
        for _ in range(2):
            auth.issue_token(world.owner, world.tid, grant("view"))
        assert _pool(auth, world) == (3, 3, 0)
        clock.advance(minutes=1)
        assert _pool(auth, world) == (3, 2, 1)

    def test_pat_and_members_free(self, auth):
        """PAT issue and replacement and members take no seat."""
        world = make_account(auth, seats=0, troops=2)
        auth.issue_personal_token(world.account.id)
        owner = auth.authenticate(auth.issue_personal_token(world.account.id).value)
        for tid in world.troop_ids():
            auth.add_member(owner, tid, "alice", Grant.full())
        assert _pool(auth, world) == (0, 0, 0)

    def test_accounts_apart(self, auth):
        """Each account has its own pool."""
        one = make_account(auth, seats=1)
        two = make_account(auth, seats=1)
        auth.issue_token(one.owner, one.tid, grant("view"))
        assert _pool(auth, two) == (1, 0, 1)
        auth.issue_token(two.owner, two.tid, grant("view"))
        assert _pool(auth, one) == (1, 1, 0)


class TestSeatsExhausted:
    """No free seat: issuing or attaching an unseated token fails, changing nothing."""

    def test_seats_zero(self, auth):
        """With 0 seats no troop token can be issued; the PAT still works."""
        world = make_account(auth, seats=0)
        before = snapshot(auth, [world], [world.pat.value])
        with pytest.raises(SeatsExhausted):
            auth.issue_token(world.owner, world.tid, grant("view"))
        assert snapshot(auth, [world], [world.pat.value]) == before
        auth.verify(world.pat.value, world.tid, Permission.MANAGE)

    def test_issue_when_full(self, auth):
        """Issue with every seat taken: no token, no seat, no event."""
        world = make_account(auth, seats=2, troops=2)
        held = [auth.issue_token(world.owner, world.tid, grant("view")) for _ in "ab"]
        values = [world.pat.value, *(t.value for t in held)]
        before = snapshot(auth, [world], values)
        for tid in world.troop_ids():
            with pytest.raises(SeatsExhausted):
                auth.issue_token(world.owner, tid, grant("view"), name="extra")
        assert snapshot(auth, [world], values) == before
        assert len(auth.tokens(world.tid)) == 2

    def test_attach_unseated_when_full(self, auth):
        """Attaching a token attached nowhere with every seat taken fails."""
        world = make_account(auth, seats=1, troops=2)
        loose = auth.issue_token(world.owner, world.tid, grant("view"))
        auth.detach(world.owner, loose.token_id, world.tid)
        full = auth.issue_token(world.owner, world.tid, grant("view"))
        values = [loose.value, full.value]
        before = snapshot(auth, [world], values)
        for tid in world.troop_ids():
            with pytest.raises(SeatsExhausted):
                auth.attach(world.owner, loose.token_id, tid, grant("view"))
        assert snapshot(auth, [world], values) == before
        with pytest.raises(AccessDenied):
            auth.verify(loose.value, world.tid, V)

    def test_attach_seated_when_full(self, auth):
        """An already seated token can still be attached to more troops."""
        world = make_account(auth, seats=1, troops=2)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        auth.attach(world.owner, ci.token_id, world.troop_ids()[1], grant("view"))
        auth.verify(ci.value, world.troop_ids()[1], V)

    def test_freed_by_revoke(self, auth):
        """After a revoke, the freed seat can be taken."""
        world = make_account(auth, seats=1)
        ci = auth.issue_token(world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        issue(auth, world.owner, world.tid, grant("view"))

    def test_is_not_access_denied(self, auth):
        """SeatsExhausted is its own error, not an AccessDenied or NotFound."""
        world = make_account(auth, seats=0)
        with pytest.raises(SeatsExhausted) as caught:
            auth.issue_token(world.owner, world.tid, grant("view"))
        assert not isinstance(caught.value, AccessDenied | NotFound)


@dataclass(frozen=True)
class Full:
    """An account whose seats are all taken, with tokens in every state.

    ``a`` (full in T0, view in T1; rotated once: ``a_old`` is its dead first
    principal), ``b`` (view in T0), ``e`` (view in T0): the three seats.
    ``loose`` attached nowhere; ``expired`` (full in T0, expired); ``revoked``;
    ``old_owner`` (a replaced PAT); members ``bob`` (view in T0), ``mgr``
    (view,manage in T0), ``boss`` (full in T0 only) and ``viewer``
    (view,use,edit in T0).
    """

    world: Setup
    other: Setup
    a: IssuedToken
    a_old: Principal
    b: IssuedToken
    e: IssuedToken
    loose: IssuedToken
    expired: IssuedToken
    expired_p: Principal
    revoked: IssuedToken
    old_owner: Principal
    mgr: Principal
    boss: Principal
    viewer: Principal

    @property
    def owner(self) -> Principal:
        return self.world.owner

    def t(self, i: int) -> str:
        return self.world.troops[i].id


def _full(auth: TroopAuth, clock) -> Full:
    acct = auth.create_account(seats=3, audit_log=True)
    troops = tuple(auth.create_troop(acct.id, f"t{i}") for i in range(3))
    old_owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
    pat = auth.issue_personal_token(acct.id)
    owner = auth.authenticate(pat.value)
    world = Setup(auth, acct, troops, pat, owner)
    t0, t1 = troops[0].id, troops[1].id
    expired, expired_p = issue(
        auth, owner, t0, Grant.full(), expires_at=clock.now + timedelta(seconds=30)
    )
    loose = auth.issue_token(owner, t0, grant("view"))
    auth.detach(owner, loose.token_id, t0)
    revoked = auth.issue_token(owner, t0, grant("view"))
    auth.revoke(owner, revoked.token_id)
    a, a_old = issue(auth, owner, t0, Grant.full())
    auth.attach(owner, a.token_id, t1, grant("view"))
    a = auth.rotate(owner, a.token_id)
    b = auth.issue_token(owner, t0, grant("view"))
    clock.advance(seconds=30)
    e = auth.issue_token(owner, t0, grant("view"))  # reaps `expired`'s seat
    auth.add_member(owner, t0, "bob", grant("view"))
    auth.add_member(owner, t0, "mgr", grant("view,manage"))
    auth.add_member(owner, t0, "boss", Grant.full())
    auth.add_member(owner, t0, "viewer", grant("view,use,edit"))
    return Full(
        world=world,
        other=make_account(auth, seats=1, troops=1),
        a=a,
        a_old=a_old,
        b=b,
        e=e,
        loose=loose,
        expired=expired,
        expired_p=expired_p,
        revoked=revoked,
        old_owner=old_owner,
        mgr=auth.member(acct.id, "mgr"),
        boss=auth.member(acct.id, "boss"),
        viewer=auth.member(acct.id, "viewer"),
    )


def _state(auth: TroopAuth, f: Full) -> dict[str, object]:
    values = [f.a.value, f.b.value, f.e.value, f.loose.value, f.expired.value]
    values += [f.revoked.value, f.world.pat.value, f.other.pat.value]
    return snapshot(
        auth, [f.world, f.other], values, ["bob", "mgr", "boss", "viewer", "carol"]
    )


_SOON = timedelta(hours=1)

#: Refused calls: (id, expected error, call).
REFUSED: list[
    tuple[str, type[Exception], Callable[[TroopAuth, Full, object], object]]
] = [
    # SeatsExhausted
    (
        "issue-full",
        SeatsExhausted,
        lambda a, f, c: a.issue_token(f.owner, f.t(2), grant("view")),
    ),
    (
        "issue-full-by-member",
        SeatsExhausted,
        lambda a, f, c: a.issue_token(f.mgr, f.t(0), grant("view")),
    ),
    (
        "attach-loose-full",
        SeatsExhausted,
        lambda a, f, c: a.attach(f.owner, f.loose.token_id, f.t(0), grant("view")),
    ),
    # AccessDenied: no MANAGE on '*', escalation, rotate/revoke rights
    (
        "issue-no-manage",
        AccessDenied,
        lambda a, f, c: a.issue_token(f.viewer, f.t(0), grant("view")),
    ),
    (
        "issue-escalate",
        AccessDenied,
        lambda a, f, c: a.issue_token(f.mgr, f.t(0), grant("edit")),
    ),
    (
        "issue-other-troop",
        AccessDenied,
        lambda a, f, c: a.issue_token(f.mgr, f.t(1), grant("view")),
    ),
    (
        "attach-escalate",
        AccessDenied,
        lambda a, f, c: a.attach(f.mgr, f.b.token_id, f.t(0), Grant.full()),
    ),
    (
        "attach-no-manage",
        AccessDenied,
        lambda a, f, c: a.attach(f.viewer, f.b.token_id, f.t(0), grant("view")),
    ),
    (
        "detach-no-manage",
        AccessDenied,
        lambda a, f, c: a.detach(f.viewer, f.b.token_id, f.t(0)),
    ),
    (
        "rotate-not-containing",
        AccessDenied,
        lambda a, f, c: a.rotate(f.mgr, f.a.token_id),
    ),
    (
        "rotate-manager-of-one",
        AccessDenied,
        lambda a, f, c: a.rotate(f.boss, f.a.token_id),
    ),
    (
        "rotate-loose-by-member",
        AccessDenied,
        lambda a, f, c: a.rotate(f.mgr, f.loose.token_id),
    ),
    (
        "revoke-loose-by-member",
        AccessDenied,
        lambda a, f, c: a.revoke(f.mgr, f.loose.token_id),
    ),
    (
        "revoke-no-manage",
        AccessDenied,
        lambda a, f, c: a.revoke(f.viewer, f.b.token_id),
    ),
    (
        "add-member-escalate",
        AccessDenied,
        lambda a, f, c: a.add_member(f.mgr, f.t(0), "carol", grant("use")),
    ),
    (
        "add-member-no-manage",
        AccessDenied,
        lambda a, f, c: a.add_member(f.viewer, f.t(0), "carol", grant("view")),
    ),
    (
        "remove-member-no-manage",
        AccessDenied,
        lambda a, f, c: a.remove_member(f.viewer, f.t(0), "bob"),
    ),
    (
        "revoke-pat",
        AccessDenied,
        lambda a, f, c: a.revoke(f.owner, f.world.pat.token_id),
    ),
    (
        "rotate-pat",
        AccessDenied,
        lambda a, f, c: a.rotate(f.owner, f.world.pat.token_id),
    ),
    (
        "attach-pat",
        AccessDenied,
        lambda a, f, c: a.attach(f.owner, f.world.pat.token_id, f.t(0), grant("view")),
    ),
    (
        "detach-pat",
        AccessDenied,
        lambda a, f, c: a.detach(f.owner, f.world.pat.token_id, f.t(0)),
    ),
    ("old-pat-acts", AccessDenied, lambda a, f, c: a.revoke(f.old_owner, f.b.token_id)),
    (
        "rotated-out-acts",
        AccessDenied,
        lambda a, f, c: a.detach(f.a_old, f.b.token_id, f.t(0)),
    ),
    (
        "expired-acts",
        AccessDenied,
        lambda a, f, c: a.add_member(f.expired_p, f.t(0), "carol", grant("view")),
    ),
    # NotFound
    (
        "detach-not-attached",
        NotFound,
        lambda a, f, c: a.detach(f.owner, f.b.token_id, f.t(1)),
    ),
    (
        "detach-expired",
        NotFound,
        lambda a, f, c: a.detach(f.owner, f.expired.token_id, f.t(0)),
    ),
    (
        "attach-expired",
        NotFound,
        lambda a, f, c: a.attach(f.owner, f.expired.token_id, f.t(1), grant("view")),
    ),
    ("rotate-expired", NotFound, lambda a, f, c: a.rotate(f.owner, f.expired.token_id)),
    (
        "attach-revoked",
        NotFound,
        lambda a, f, c: a.attach(f.owner, f.revoked.token_id, f.t(0), grant("view")),
    ),
    ("rotate-revoked", NotFound, lambda a, f, c: a.rotate(f.owner, f.revoked.token_id)),
    ("revoke-unknown", NotFound, lambda a, f, c: a.revoke(f.owner, "tok_nope")),
    (
        "issue-unknown-troop",
        NotFound,
        lambda a, f, c: a.issue_token(f.owner, "troop_nope", grant("view")),
    ),
    (
        "remove-missing-member",
        NotFound,
        lambda a, f, c: a.remove_member(f.owner, f.t(0), "carol"),
    ),
    (
        "remove-member-wrong-troop",
        NotFound,
        lambda a, f, c: a.remove_member(f.owner, f.t(1), "bob"),
    ),
    (
        "issue-other-account",
        NotFound,
        lambda a, f, c: a.issue_token(f.owner, f.other.tid, grant("view")),
    ),
    (
        "revoke-other-account",
        NotFound,
        lambda a, f, c: a.revoke(f.owner, f.other.pat.token_id),
    ),
    (
        "attach-to-other-account",
        NotFound,
        lambda a, f, c: a.attach(f.owner, f.b.token_id, f.other.tid, grant("view")),
    ),
    # InvalidArgument
    (
        "issue-past",
        InvalidArgument,
        lambda a, f, c: a.issue_token(
            f.owner, f.t(0), grant("view"), expires_at=c.now - _SOON
        ),
    ),
    (
        "issue-now",
        InvalidArgument,
        lambda a, f, c: a.issue_token(f.owner, f.t(0), grant("view"), expires_at=c.now),
    ),
    (
        "issue-naive",
        InvalidArgument,
        lambda a, f, c: a.issue_token(
            f.owner,
            f.t(0),
            grant("view"),
            expires_at=(c.now + _SOON).replace(tzinfo=None),
        ),
    ),
    (
        "issue-not-a-grant",
        InvalidArgument,
        lambda a, f, c: a.issue_token(f.owner, f.t(0), "view"),
    ),
    (
        "attach-not-a-grant",
        InvalidArgument,
        lambda a, f, c: a.attach(f.owner, f.b.token_id, f.t(1), None),
    ),
    (
        "add-member-bad-id",
        InvalidArgument,
        lambda a, f, c: a.add_member(f.owner, f.t(0), "car ol", grant("view")),
    ),
    (
        "add-member-empty-id",
        InvalidArgument,
        lambda a, f, c: a.add_member(f.owner, f.t(0), "", grant("view")),
    ),
]


class TestAtomicity:
    """A refused call leaves seats, listings, audit logs and verify answers alone."""

    @pytest.mark.parametrize(
        ("expected", "call"),
        [pytest.param(err, call, id=name) for name, err, call in REFUSED],
    )
    def test_refused_call_changes_nothing(self, auth, clock, expected, call):
        """The call raises the expected error and the state is unchanged."""
        f = _full(auth, clock)
        before = _state(auth, f)
        with pytest.raises(expected):
            call(auth, f, clock)
        assert _state(auth, f) == before

    def test_all_refusals_then_work(self, auth, clock):
        """After every refused call in a row, the state is unchanged and usable."""
        f = _full(auth, clock)
        before = _state(auth, f)
        for _, expected, call in REFUSED:
            with pytest.raises(expected):
                call(auth, f, clock)
        assert _state(auth, f) == before
        assert _pool(auth, f.world) == (3, 3, 0)
        auth.revoke(f.owner, f.e.token_id)
        auth.attach(f.owner, f.loose.token_id, f.t(2), grant("use"))
        auth.verify(f.loose.value, f.t(2), Permission.USE)
        assert _pool(auth, f.world) == (3, 3, 0)

    def test_scene_is_as_described(self, auth, clock):
        """The fixture account is full and its tokens are in the stated states."""
        f = _full(auth, clock)
        assert _pool(auth, f.world) == (3, 3, 0)
        assert _pool(auth, f.other) == (1, 0, 1)
        for value in (f.a.value, f.b.value, f.e.value):
            auth.verify(value, f.t(0), V)
        with pytest.raises(AccessDenied):
            auth.verify(f.loose.value, f.t(0), V)
        for value in (f.expired.value, f.revoked.value):
            with pytest.raises(InvalidToken):
                auth.verify(value, f.t(0), V)
        auth.authorize(f.mgr, f.t(0), Permission.MANAGE)
