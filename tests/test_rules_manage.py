"""Example-based tests of DESIGN.md section 1: who may manage tokens and
members (MANAGE on the whole troop, no escalation, rotate/revoke rights,
tokens attached nowhere, dead actors, other accounts) and the audit log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Setup, grant, issue, make_account, member, snapshot
from troopauth import (
    AccessDenied,
    AuditAction,
    Grant,
    InvalidArgument,
    InvalidToken,
    IssuedToken,
    Kind,
    NotFound,
    Permission,
    Principal,
    TroopAuth,
)

V, U, E, M = Permission.VIEW, Permission.USE, Permission.EDIT, Permission.MANAGE


@dataclass(frozen=True)
class Scene:
    """An account with three troops; a token ``victim`` (view in T0), a token
    ``spare`` (view in T1) and a member ``bob`` (view in T0)."""

    world: Setup
    victim: IssuedToken
    spare: IssuedToken

    @property
    def t0(self) -> str:
        return self.world.troops[0].id

    @property
    def t1(self) -> str:
        return self.world.troops[1].id

    @property
    def t2(self) -> str:
        return self.world.troops[2].id


@pytest.fixture
def scene(auth: TroopAuth) -> Scene:
    """The shared scene (see `Scene`)."""
    world = make_account(auth, seats=20, troops=3)
    t0, t1 = world.troops[0].id, world.troops[1].id
    victim = auth.issue_token(world.owner, t0, grant("view"), name="victim")
    spare = auth.issue_token(world.owner, t1, grant("view"), name="spare")
    auth.add_member(world.owner, t0, "bob", grant("view"))
    return Scene(world, victim, spare)


#: Every management call on troop T0 of the scene, by name.
Op = Callable[[TroopAuth, Scene, Principal], object]
OPS: dict[str, Op] = {
    "issue": lambda a, s, p: a.issue_token(p, s.t0, grant("view")),
    "attach": lambda a, s, p: a.attach(p, s.spare.token_id, s.t0, grant("view")),
    "reattach": lambda a, s, p: a.attach(p, s.victim.token_id, s.t0, grant("view")),
    "detach": lambda a, s, p: a.detach(p, s.victim.token_id, s.t0),
    "rotate": lambda a, s, p: a.rotate(p, s.victim.token_id),
    "revoke": lambda a, s, p: a.revoke(p, s.victim.token_id),
    "add_member": lambda a, s, p: a.add_member(p, s.t0, "carol", grant("view")),
    "readd_member": lambda a, s, p: a.add_member(p, s.t0, "bob", grant("view")),
    "remove_member": lambda a, s, p: a.remove_member(p, s.t0, "bob"),
}


def _actor(
    auth: TroopAuth, scene: Scene, kind: str, grants: dict[str, Grant]
) -> Principal:
    """A token or member actor holding *grants* (troop id -> grant)."""
    owner = scene.world.owner
    if kind == "token":
        items = iter(grants.items())
        tid, first = next(items)
        issued = auth.issue_token(owner, tid, first, name="actor")
        for tid, g in items:
            auth.attach(owner, issued.token_id, tid, g)
        return auth.authenticate(issued.value)
    for tid, g in grants.items():
        auth.add_member(owner, tid, "actor", g)
    return auth.member(owner.account_id, "actor")


def _state(auth: TroopAuth, scene: Scene) -> dict[str, object]:
    return snapshot(
        auth,
        [scene.world],
        [scene.victim.value, scene.spare.value, scene.world.pat.value],
        ["bob", "carol"],
    )


#: Grants in T0 (and T1) that do not make a manager of T0.
NOT_ENOUGH = {
    "manage-on-key": lambda s: {s.t0: grant("view,manage", "key:k")},
    "manage-on-prefix": lambda s: {s.t0: grant("view,manage", "key:a*")},
    "all-but-manage": lambda s: {s.t0: grant("view,use,edit")},
    "manage-elsewhere": lambda s: {s.t1: grant("view,manage"), s.t2: Grant.full()},
    "manage-key-everywhere": lambda s: {
        s.t0: grant("view,manage", "key:k,key:a*"),
        s.t1: grant("view,manage", "key:k"),
    },
}


class TestManageNeedsWholeTroopManage:
    """Every management call in T needs MANAGE with the whole-troop scope in T."""

    @pytest.mark.parametrize("kind", ["token", "member"])
    @pytest.mark.parametrize("held", sorted(NOT_ENOUGH))
    @pytest.mark.parametrize("op", sorted(OPS))
    def test_refused(self, auth, scene, kind, held, op):
        """Without MANAGE on '*' in T0: AccessDenied and nothing changes."""
        actor = _actor(auth, scene, kind, NOT_ENOUGH[held](scene))
        before = _state(auth, scene)
        with pytest.raises(AccessDenied):
            OPS[op](auth, scene, actor)
        assert _state(auth, scene) == before

    @pytest.mark.parametrize("kind", ["token", "member", "personal"])
    @pytest.mark.parametrize("op", sorted(OPS))
    def test_allowed(self, auth, scene, kind, op):
        """MANAGE on '*' (plus what is granted) in T0 is enough, token or member."""
        if kind == "personal":
            actor = scene.world.owner
        else:
            actor = _actor(auth, scene, kind, {scene.t0: grant("view,manage")})
        before = _state(auth, scene)
        OPS[op](auth, scene, actor)
        assert _state(auth, scene) != before


class TestNoEscalation:
    """An actor may only grant, in T, what its own grant in T contains."""

    @pytest.fixture
    def actor(self, auth, scene) -> Principal:
        """A token with view,manage on '*' in T0 and full in T1."""
        return _actor(
            auth,
            scene,
            "token",
            {scene.t0: grant("view,manage"), scene.t1: Grant.full()},
        )

    @pytest.mark.parametrize("given", ["edit", "view,use", "use", "view,edit,manage"])
    def test_more_permission_refused(self, auth, scene, actor, given):
        """Issuing, attaching or adding a member with a permission not held: denied."""
        before = _state(auth, scene)
        g = grant(given, "key:k")
        with pytest.raises(AccessDenied):
            auth.issue_token(actor, scene.t0, g)
        with pytest.raises(AccessDenied):
            auth.attach(actor, scene.spare.token_id, scene.t0, g)
        with pytest.raises(AccessDenied):
            auth.attach(actor, scene.victim.token_id, scene.t0, g)
        with pytest.raises(AccessDenied):
            auth.add_member(actor, scene.t0, "carol", g)
        with pytest.raises(AccessDenied):
            auth.add_member(actor, scene.t0, "bob", g)
        assert _state(auth, scene) == before

    @pytest.mark.parametrize(
        ("given", "scope"),
        [
            ("view,manage", "*"),
            ("view", "*"),
            ("manage", "*"),
            ("view", "key:k,key:a*"),
        ],
    )
    def test_equal_or_less_allowed(self, auth, scene, actor, given, scope):
        """An equal or smaller grant may be given."""
        g = grant(given, scope)
        issued = auth.issue_token(actor, scene.t0, g)
        auth.attach(actor, scene.spare.token_id, scene.t0, g)
        auth.add_member(actor, scene.t0, "carol", g)
        listed = {t.token_id: dict(t.grants) for t in auth.tokens(scene.t0)}
        assert listed[issued.token_id] == {scene.t0: g}
        assert listed[scene.spare.token_id] == {scene.t0: g, scene.t1: grant("view")}
        carol = auth.member(scene.world.account.id, "carol")
        auth.authorize(carol, scene.t0, g.permission, key="k")

    def test_per_troop(self, auth, scene, actor):
        """What the actor holds in another troop does not count in T0."""
        with pytest.raises(AccessDenied):
            auth.issue_token(actor, scene.t0, grant("edit"))
        auth.issue_token(actor, scene.t1, grant("edit"))

    def test_issued_manager_bounded(self, auth, scene, actor):
        """A manager made by a manager inherits the bound: it cannot escalate either."""
        sub, p = issue(auth, actor, scene.t0, grant("view,manage"))
        with pytest.raises(AccessDenied):
            auth.issue_token(p, scene.t0, grant("edit"))
        with pytest.raises(AccessDenied):
            auth.attach(p, sub.token_id, scene.t0, Grant.full())
        with pytest.raises(AccessDenied):
            auth.attach(p, sub.token_id, scene.t1, grant("view"))


class TestRotateRights:
    """rotate: MANAGE on '*' and a containing grant in every attached troop."""

    @pytest.fixture
    def token(self, auth, scene) -> IssuedToken:
        """A token with edit on key:k in T0 and view on '*' in T1."""
        owner = scene.world.owner
        issued = auth.issue_token(owner, scene.t0, grant("edit", "key:k"))
        auth.attach(owner, issued.token_id, scene.t1, grant("view"))
        return issued

    @pytest.mark.parametrize(
        "held",
        [
            pytest.param(lambda s: {s.t0: Grant.full()}, id="manager-in-one-only"),
            pytest.param(
                lambda s: {s.t0: Grant.full(), s.t1: grant("manage")},
                id="not-containing-in-one",
            ),
            pytest.param(
                lambda s: {s.t0: grant("view,manage"), s.t1: Grant.full()},
                id="not-containing-in-other",
            ),
            pytest.param(
                lambda s: {s.t0: Grant.full(), s.t1: grant("view,manage", "key:k")},
                id="manage-on-key-in-one",
            ),
            pytest.param(
                lambda s: {s.t0: grant("edit", "key:k"), s.t1: grant("view")},
                id="same-grants-no-manage",
            ),
        ],
    )
    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_refused(self, auth, scene, token, held, kind):
        """Missing MANAGE or containment in any attached troop: AccessDenied."""
        actor = _actor(auth, scene, kind, held(scene))
        before = _state(auth, scene)
        with pytest.raises(AccessDenied):
            auth.rotate(actor, token.token_id)
        assert _state(auth, scene) == before
        auth.verify(token.value, scene.t0, E, key="k")

    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_allowed(self, auth, scene, token, kind):
        """Manager containing the token's grant in every troop may rotate it."""
        actor = _actor(
            auth,
            scene,
            kind,
            {scene.t0: grant("edit,manage"), scene.t1: grant("view,manage")},
        )
        new = auth.rotate(actor, token.token_id)
        auth.verify(new.value, scene.t0, E, key="k")
        auth.verify(new.value, scene.t1, V)


class TestRevokeRights:
    """revoke: MANAGE on '*' in every troop the token is attached to."""

    @pytest.fixture
    def token(self, auth, scene) -> IssuedToken:
        """A full token in T0 and T1."""
        owner = scene.world.owner
        issued = auth.issue_token(owner, scene.t0, Grant.full())
        auth.attach(owner, issued.token_id, scene.t1, Grant.full())
        return issued

    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_manager_of_every_troop(self, auth, scene, token, kind):
        """Bare MANAGE on '*' in each attached troop suffices (no containment)."""
        held = {scene.t0: grant("manage"), scene.t1: grant("manage")}
        actor = _actor(auth, scene, kind, held)
        auth.revoke(actor, token.token_id)
        with pytest.raises(InvalidToken):
            auth.verify(token.value, scene.t0, V)
        for tid in (scene.t0, scene.t1):
            assert token.token_id not in {t.token_id for t in auth.tokens(tid)}

    @pytest.mark.parametrize(
        "held",
        [
            pytest.param(lambda s: {s.t1: grant("manage")}, id="manager-of-one"),
            pytest.param(lambda s: {s.t2: Grant.full()}, id="manager-of-unattached"),
            pytest.param(
                lambda s: {
                    s.t0: grant("view,use,edit,manage", "key:k"),
                    s.t1: grant("view,use,edit,manage"),
                },
                id="no-whole-manage-in-one",
            ),
        ],
    )
    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_refused(self, auth, scene, token, held, kind):
        """Without MANAGE on '*' in every attached troop: AccessDenied, and
        nothing changes."""
        actor = _actor(auth, scene, kind, held(scene))
        before = _state(auth, scene)
        with pytest.raises(AccessDenied):
            auth.revoke(actor, token.token_id)
        assert _state(auth, scene) == before
        auth.verify(token.value, scene.t0, V)

    def test_attach_then_revoke_is_refused(self, auth, scene):
        """The attack the rule closes: a manager of one small troop attaches
        another troop's token to it (within its own grant) and then tries to
        revoke it everywhere: refused; it can only detach it again."""
        owner = scene.world.owner
        victim = auth.issue_token(owner, scene.t0, grant("view"))
        small = _actor(auth, scene, "token", {scene.t2: Grant.full()})
        auth.attach(small, victim.token_id, scene.t2, grant("view"))
        with pytest.raises(AccessDenied):
            auth.revoke(small, victim.token_id)
        auth.verify(victim.value, scene.t0, V)
        auth.detach(small, victim.token_id, scene.t2)
        auth.verify(victim.value, scene.t0, V)


class TestTokenAttachedNowhere:
    """A token attached to no troop: managers may attach it, only the PAT may
    rotate or revoke it."""

    @pytest.fixture
    def loose(self, auth, scene) -> IssuedToken:
        """The victim, detached from its only troop."""
        auth.detach(scene.world.owner, scene.victim.token_id, scene.t0)
        return scene.victim

    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_attach_by_target_manager(self, auth, scene, loose, kind):
        """A manager of the target troop attaches it within its own grant."""
        actor = _actor(auth, scene, kind, {scene.t2: grant("use,manage")})
        with pytest.raises(AccessDenied):
            auth.attach(actor, loose.token_id, scene.t2, grant("view"))
        with pytest.raises(AccessDenied):
            auth.attach(actor, loose.token_id, scene.t1, grant("use"))
        auth.attach(actor, loose.token_id, scene.t2, grant("use"))
        auth.verify(loose.value, scene.t2, U)

    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_rotate_revoke_only_by_pat(self, auth, scene, loose, kind):
        """Even a manager of every troop cannot rotate or revoke it; the PAT can."""
        everywhere = {t: Grant.full() for t in scene.world.troop_ids()}
        actor = _actor(auth, scene, kind, everywhere)
        before = _state(auth, scene)
        with pytest.raises(AccessDenied):
            auth.rotate(actor, loose.token_id)
        with pytest.raises(AccessDenied):
            auth.revoke(actor, loose.token_id)
        assert _state(auth, scene) == before
        new = auth.rotate(scene.world.owner, loose.token_id)
        auth.revoke(scene.world.owner, loose.token_id)
        for tid in scene.world.troop_ids():
            with pytest.raises(NotFound):
                auth.attach(scene.world.owner, loose.token_id, tid, grant("view"))
        with pytest.raises(InvalidToken):
            auth.authenticate(new.value)

    def test_rotate_revoke_leave_a_trace_in_the_account_log(self, auth, scene, loose):
        """With no troop to log to, rotate and revoke go to the account's log."""
        owner = scene.world.owner
        before = auth.account_audit_log(owner.account_id)
        auth.rotate(owner, loose.token_id)
        auth.revoke(owner, loose.token_id)
        after = auth.account_audit_log(owner.account_id)
        added = after[len(before) :]
        assert [str(e.action) for e in added] == ["token.rotate", "token.revoke"]
        assert {(e.token_id, e.troop_id, e.actor) for e in added} == {
            (loose.token_id, None, owner.describe())
        }
        assert auth.check_account_audit_log(owner.account_id) is None


#: How an actor can die (or lose MANAGE), each returning the old principal.
def _die_rotated(auth, scene, clock):
    issued, p = issue(auth, scene.world.owner, scene.t0, Grant.full())
    auth.rotate(scene.world.owner, issued.token_id)
    return p


def _die_revoked(auth, scene, clock):
    issued, p = issue(auth, scene.world.owner, scene.t0, Grant.full())
    auth.revoke(scene.world.owner, issued.token_id)
    return p


def _die_expired(auth, scene, clock):
    expires_at = clock.now + timedelta(seconds=10)
    _, p = issue(auth, scene.world.owner, scene.t0, Grant.full(), expires_at=expires_at)
    clock.advance(seconds=10)
    return p


def _die_replaced(auth, scene, clock):
    auth.issue_personal_token(scene.world.account.id)
    return scene.world.owner


def _die_removed(auth, scene, clock):
    p = member(auth, scene.world.owner, scene.t0, "gone", Grant.full())
    auth.remove_member(scene.world.owner, scene.t0, "gone")
    return p


def _die_shrunk(auth, scene, clock):
    issued, p = issue(auth, scene.world.owner, scene.t0, Grant.full())
    auth.attach(scene.world.owner, issued.token_id, scene.t0, grant("view,use,edit"))
    return p


def _die_member_shrunk(auth, scene, clock):
    p = member(auth, scene.world.owner, scene.t0, "demoted", Grant.full())
    auth.add_member(scene.world.owner, scene.t0, "demoted", grant("view,use,edit"))
    return p


DEATHS = {
    "rotated": _die_rotated,
    "revoked": _die_revoked,
    "expired": _die_expired,
    "pat-replaced": _die_replaced,
    "member-removed": _die_removed,
    "token-shrunk": _die_shrunk,
    "member-shrunk": _die_member_shrunk,
}


class TestDeadActor:
    """A principal is judged by its credential now: dead or shrunk, it is denied."""

    @pytest.mark.parametrize("death", sorted(DEATHS))
    @pytest.mark.parametrize("op", sorted(OPS))
    def test_refused(self, auth, scene, clock, death, op):
        """Every management call by a dead or demoted actor is AccessDenied."""
        actor = DEATHS[death](auth, scene, clock)
        before = _state(auth, scene)
        with pytest.raises(AccessDenied):
            OPS[op](auth, scene, actor)
        assert _state(auth, scene) == before

    @pytest.mark.parametrize("death", ["rotated", "revoked", "expired", "pat-replaced"])
    def test_dead_actor_rerevoke(self, auth, scene, clock, death):
        """A dead actor cannot even re-revoke an already revoked token."""
        auth.revoke(scene.world.owner, scene.spare.token_id)
        actor = DEATHS[death](auth, scene, clock)
        with pytest.raises(AccessDenied):
            auth.revoke(actor, scene.spare.token_id)


class TestOtherAccount:
    """Troops and tokens of another account look missing: NotFound."""

    @pytest.fixture
    def theirs(self, auth) -> Scene:
        """A second account with its own scene."""
        world = make_account(auth, seats=5, troops=3)
        t0, t1 = world.troops[0].id, world.troops[1].id
        victim = auth.issue_token(world.owner, t0, grant("view"))
        spare = auth.issue_token(world.owner, t1, grant("view"))
        auth.add_member(world.owner, t0, "bob", grant("view"))
        return Scene(world, victim, spare)

    @pytest.mark.parametrize("kind", ["personal", "token", "member"])
    def test_not_found(self, auth, scene, theirs, kind):
        """Every call naming another account's troop or token is NotFound."""
        if kind == "personal":
            actor = scene.world.owner
        else:
            everywhere = {t: Grant.full() for t in scene.world.troop_ids()}
            actor = _actor(auth, scene, kind, everywhere)
        mine, ours = scene, theirs
        calls = [
            lambda: auth.issue_token(actor, ours.t0, grant("view")),
            lambda: auth.attach(actor, mine.victim.token_id, ours.t0, grant("view")),
            lambda: auth.attach(actor, ours.victim.token_id, mine.t0, grant("view")),
            lambda: auth.attach(actor, ours.victim.token_id, ours.t0, grant("view")),
            lambda: auth.detach(actor, ours.victim.token_id, ours.t0),
            lambda: auth.detach(actor, mine.victim.token_id, ours.t0),
            lambda: auth.rotate(actor, ours.victim.token_id),
            lambda: auth.revoke(actor, ours.victim.token_id),
            lambda: auth.revoke(actor, ours.world.pat.token_id),
            lambda: auth.rotate(actor, ours.world.pat.token_id),
            lambda: auth.add_member(actor, ours.t0, "carol", grant("view")),
            lambda: auth.remove_member(actor, ours.t0, "bob"),
        ]
        before = (_state(auth, mine), _state(auth, ours))
        for call in calls:
            with pytest.raises(NotFound):
                call()
        assert (_state(auth, mine), _state(auth, ours)) == before

    def test_foreign_actor_denied(self, auth, scene, theirs):
        """A principal of another account cannot act here (denied or not found)."""
        before = _state(auth, scene)
        for op in OPS.values():
            with pytest.raises((AccessDenied, NotFound)):
                op(auth, scene, theirs.world.owner)
        assert _state(auth, scene) == before


class TestMembers:
    """add_member / remove_member / member()."""

    def test_add(self, auth, scene):
        """An added member gets a principal of kind member with that grant."""
        owner = scene.world.owner
        auth.add_member(owner, scene.t1, "alice", grant("use", "key:k"))
        alice = auth.member(scene.world.account.id, "alice")
        assert alice.kind is Kind.MEMBER
        assert alice.member_id == "alice"
        assert alice.account_id == scene.world.account.id
        assert alice.token_id is None
        auth.authorize(alice, scene.t1, U, key="k")
        with pytest.raises(AccessDenied):
            auth.authorize(alice, scene.t0, U, key="k")
        with pytest.raises(AccessDenied):
            auth.authorize(alice, scene.t1, V, key="k")

    def test_grants_per_troop(self, auth, scene):
        """A member holds one grant per troop, set independently."""
        owner = scene.world.owner
        auth.add_member(owner, scene.t0, "bob", grant("edit"))
        auth.add_member(owner, scene.t1, "bob", grant("use"))
        bob = auth.member(scene.world.account.id, "bob")
        auth.authorize(bob, scene.t0, E)
        auth.authorize(bob, scene.t1, U)
        with pytest.raises(AccessDenied):
            auth.authorize(bob, scene.t0, V)
        with pytest.raises(AccessDenied):
            auth.authorize(bob, scene.t1, E)

    def test_remove(self, auth, scene):
        """Removing the last grant makes member() NotFound."""
        owner = scene.world.owner
        bob = auth.member(scene.world.account.id, "bob")
        auth.remove_member(owner, scene.t0, "bob")
        with pytest.raises(NotFound):
            auth.member(scene.world.account.id, "bob")
        with pytest.raises(AccessDenied):
            auth.authorize(bob, scene.t0, V)

    def test_remove_missing(self, auth, scene):
        """Removing a member who holds no grant in that troop is NotFound."""
        owner = scene.world.owner
        before = _state(auth, scene)
        with pytest.raises(NotFound):
            auth.remove_member(owner, scene.t0, "nobody")
        with pytest.raises(NotFound):
            auth.remove_member(owner, scene.t1, "bob")
        assert _state(auth, scene) == before
        auth.remove_member(owner, scene.t0, "bob")
        with pytest.raises(NotFound):
            auth.remove_member(owner, scene.t0, "bob")

    def test_member_unknown(self, auth, scene):
        """member() of an unknown id, or in another account, is NotFound."""
        other = make_account(auth)
        with pytest.raises(NotFound):
            auth.member(scene.world.account.id, "nobody")
        with pytest.raises(NotFound):
            auth.member(other.account.id, "bob")

    @pytest.mark.parametrize("member_id", ["", "a b", "tab\t", "nl\n", "x" * 257])
    def test_bad_member_id(self, auth, scene, member_id):
        """Malformed member ids are InvalidArgument and change nothing."""
        owner = scene.world.owner
        before = _state(auth, scene)
        with pytest.raises(InvalidArgument):
            auth.add_member(owner, scene.t0, member_id, grant("view"))
        with pytest.raises(InvalidArgument):
            auth.remove_member(owner, scene.t0, member_id)
        assert _state(auth, scene) == before

    def test_member_manages(self, auth, scene):
        """A member with MANAGE on '*' issues tokens and manages members."""
        boss = member(auth, scene.world.owner, scene.t0, "boss", grant("view,manage"))
        issued, _ = issue(auth, boss, scene.t0, grant("view"))
        auth.add_member(boss, scene.t0, "carol", grant("view"))
        auth.remove_member(boss, scene.t0, "bob")
        auth.revoke(boss, issued.token_id)
        auth.verify(scene.world.pat.value, scene.t0, M)

    def test_token_manages_members(self, auth, scene):
        """A token with MANAGE on '*' adds and removes members."""
        _, mgr = issue(auth, scene.world.owner, scene.t0, grant("view,manage"))
        auth.add_member(mgr, scene.t0, "carol", grant("view"))
        auth.authorize(auth.member(scene.world.account.id, "carol"), scene.t0, V)
        auth.remove_member(mgr, scene.t0, "carol")
        with pytest.raises(NotFound):
            auth.member(scene.world.account.id, "carol")


class TestAuditLog:
    """The audit log: one event per change per troop touched, none for refusals."""

    def test_events_name_everything(self, auth, scene, clock):
        """Each change appends one event naming actor, action, token, troop, grant."""
        owner = scene.world.owner
        actor_name = owner.describe()
        base = len(auth.audit_log(scene.t2))
        clock.advance(seconds=5)
        ci = auth.issue_token(owner, scene.t2, grant("view", "key:k"))
        auth.attach(owner, ci.token_id, scene.t2, grant("use"))
        auth.add_member(owner, scene.t2, "zed", grant("edit"))
        auth.remove_member(owner, scene.t2, "zed")
        auth.rotate(owner, ci.token_id)
        auth.detach(owner, ci.token_id, scene.t2)
        auth.attach(owner, ci.token_id, scene.t2, grant("view"))
        auth.revoke(owner, ci.token_id)
        events = auth.audit_log(scene.t2)[base:]
        expected = [
            (AuditAction.ISSUE, ci.token_id, None, grant("view", "key:k")),
            (AuditAction.ATTACH, ci.token_id, None, grant("use")),
            (AuditAction.MEMBER_ADD, None, "zed", grant("edit")),
            (AuditAction.MEMBER_REMOVE, None, "zed", grant("edit")),
            (AuditAction.ROTATE, ci.token_id, None, grant("use")),
            (AuditAction.DETACH, ci.token_id, None, grant("use")),
            (AuditAction.ATTACH, ci.token_id, None, grant("view")),
            (AuditAction.REVOKE, ci.token_id, None, grant("view")),
        ]
        assert [
            (e.action, e.token_id, e.member_id, e.grant) for e in events
        ] == expected
        assert all(e.actor == actor_name for e in events)
        assert all(e.troop_id == scene.t2 for e in events)
        assert all(e.at == clock.now for e in events)
        assert [e.seq for e in auth.audit_log(scene.t2)] == list(
            range(1, base + len(expected) + 1)
        )
        assert auth.check_audit_log(scene.t2) is None

    @pytest.mark.parametrize("kind", ["token", "member"])
    def test_actor_named(self, auth, scene, kind):
        """Events name a token actor or member actor by its label."""
        actor = _actor(auth, scene, kind, {scene.t2: grant("view,manage")})
        auth.issue_token(actor, scene.t2, grant("view"))
        last = auth.audit_log(scene.t2)[-1]
        if kind == "member":
            assert last.actor == "member:actor"
        else:
            assert last.actor == f"troop:{actor.token_id}"

    def test_multi_troop_rotate_revoke(self, auth, scene):
        """Rotate and revoke of a token in three troops: one event in each log."""
        owner = scene.world.owner
        tids = scene.world.troop_ids()
        grants = {tids[0]: grant("view"), tids[1]: grant("use"), tids[2]: grant("edit")}
        ci = auth.issue_token(owner, tids[0], grants[tids[0]])
        for tid in tids[1:]:
            auth.attach(owner, ci.token_id, tid, grants[tid])
        lengths = {tid: len(auth.audit_log(tid)) for tid in tids}
        auth.rotate(owner, ci.token_id)
        auth.revoke(owner, ci.token_id)
        auth.revoke(owner, ci.token_id)
        for tid in tids:
            new = auth.audit_log(tid)[lengths[tid] :]
            assert [(e.action, e.troop_id, e.token_id, e.grant) for e in new] == [
                (AuditAction.ROTATE, tid, ci.token_id, grants[tid]),
                (AuditAction.REVOKE, tid, ci.token_id, grants[tid]),
            ]
            assert auth.check_audit_log(tid) is None

    def test_attach_touches_one_troop(self, auth, scene):
        """Attach, detach and issue log only in the troop they touch."""
        owner = scene.world.owner
        lengths = {tid: len(auth.audit_log(tid)) for tid in scene.world.troop_ids()}
        auth.attach(owner, scene.victim.token_id, scene.t2, grant("view"))
        assert len(auth.audit_log(scene.t2)) == lengths[scene.t2] + 1
        assert len(auth.audit_log(scene.t0)) == lengths[scene.t0]
        assert len(auth.audit_log(scene.t1)) == lengths[scene.t1]

    def test_refused_calls_log_nothing(self, auth, scene):
        """A refused call appends no event anywhere."""
        _, viewer = issue(auth, scene.world.owner, scene.t0, grant("view"))
        before = _state(auth, scene)
        for op in OPS.values():
            with pytest.raises(AccessDenied):
                op(auth, scene, viewer)
        with pytest.raises(NotFound):
            auth.remove_member(scene.world.owner, scene.t0, "nobody")
        with pytest.raises(NotFound):
            auth.detach(scene.world.owner, scene.spare.token_id, scene.t0)
        assert _state(auth, scene) == before

    def test_no_secret_in_events(self, auth, scene):
        """No event holds a token value."""
        new = auth.rotate(scene.world.owner, scene.victim.token_id)
        values = [
            scene.victim.value,
            new.value,
            scene.spare.value,
            scene.world.pat.value,
        ]
        events = [e for t in scene.world.troop_ids() for e in auth.audit_log(t)]
        events += auth.account_audit_log(scene.world.account.id)
        text = "".join(repr(e) + str(e) for e in events)
        assert events
        assert not any(v in text for v in values)
        assert not any(v[8:38] in text for v in values)

    def test_pat_events_account_log(self, auth):
        """PAT issue and replacement go to the account's log, not to troop logs."""
        acct = auth.create_account(seats=1, audit_log=True)
        troop = auth.create_troop(acct.id, "t")
        first = auth.issue_personal_token(acct.id)
        second = auth.issue_personal_token(acct.id)
        events = auth.account_audit_log(acct.id)
        assert [(e.action, e.token_id, e.troop_id) for e in events] == [
            (AuditAction.PAT_ISSUE, first.token_id, None),
            (AuditAction.PAT_REPLACE, second.token_id, None),
        ]
        assert [e.seq for e in events] == [1, 2]
        assert auth.audit_log(troop.id) == []
        assert auth.check_account_audit_log(acct.id) is None

    def test_off_keeps_nothing(self, auth):
        """An account with audit_log=False keeps no events at all."""
        world = make_account(auth, seats=5, audit_log=False, troops=2)
        t0, t1 = world.troop_ids()
        ci = auth.issue_token(world.owner, t0, grant("view"))
        auth.attach(world.owner, ci.token_id, t1, grant("view"))
        auth.add_member(world.owner, t0, "a", grant("view"))
        auth.remove_member(world.owner, t0, "a")
        auth.rotate(world.owner, ci.token_id)
        auth.detach(world.owner, ci.token_id, t1)
        auth.revoke(world.owner, ci.token_id)
        auth.issue_personal_token(world.account.id)
        assert auth.audit_log(t0) == []
        assert auth.audit_log(t1) == []
        assert auth.account_audit_log(world.account.id) == []

    def test_accounts_apart(self, auth, scene):
        """One account's changes never appear in another account's logs."""
        other = make_account(auth, troops=1)
        before = (auth.audit_log(other.tid), auth.account_audit_log(other.account.id))
        auth.rotate(scene.world.owner, scene.victim.token_id)
        auth.issue_personal_token(scene.world.account.id)
        after = (auth.audit_log(other.tid), auth.account_audit_log(other.account.id))
        assert after == before


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    attached=st.sets(st.integers(0, 3), min_size=2, max_size=4),
    data=st.data(),
)
def test_a_manager_of_some_troops_never_revokes(auth, attached, data):
    """Whatever troops a token is attached to, an actor managing (with any
    grant, MANAGE on '*' included) a strict subset of them cannot revoke it;
    managing every one of them, it can."""
    world = make_account(auth, seats=2, troops=4)
    troops = world.troop_ids()
    owner = world.owner
    victim = auth.issue_token(owner, troops[min(attached)], Grant.full())
    for t in sorted(attached)[1:]:
        auth.attach(owner, victim.token_id, troops[t], Grant.full())
    subset = data.draw(
        st.sets(st.sampled_from(sorted(attached)), max_size=len(attached) - 1)
    )
    boss = auth.issue_token(owner, troops[0], Grant.full())
    for t in range(4):
        if t in subset:
            auth.attach(owner, boss.token_id, troops[t], Grant.full())
        elif t == 0:
            auth.detach(owner, boss.token_id, troops[0])
    actor = auth.authenticate(boss.value)
    with pytest.raises(AccessDenied):
        auth.revoke(actor, victim.token_id)
    auth.verify(victim.value, troops[min(attached)], V)
    for t in sorted(attached):
        auth.attach(owner, boss.token_id, troops[t], Grant.full())
    auth.revoke(auth.authenticate(boss.value), victim.token_id)
    with pytest.raises(InvalidToken):
        auth.authenticate(victim.value)
