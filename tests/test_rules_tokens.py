"""Example-based tests of DESIGN.md section 1: verify, authenticate, authorize
and the token lifecycle (issue, attach, detach, rotate, revoke, expiry, PAT)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.helpers import Setup, grant, issue, make_account, member
from troopauth import (
    AccessDenied,
    Grant,
    InvalidArgument,
    InvalidToken,
    Kind,
    NotFound,
    Permission,
    TroopAuth,
)
from troopauth.tokens import new_value

V, U, E, M = Permission.VIEW, Permission.USE, Permission.EDIT, Permission.MANAGE


@pytest.fixture
def world(auth: TroopAuth) -> Setup:
    """An account with three troops, ten seats and the audit log on."""
    return make_account(auth, seats=10, troops=3)


def _in(clock, seconds: float) -> datetime:
    return clock.now + timedelta(seconds=seconds)


class TestVerifyDecisions:
    """verify(): what a live token's grant allows, and what it does not."""

    def test_allowed_key(self, auth, world):
        """A grant's permission on a key its scope names is allowed."""
        ci, _ = issue(auth, world.owner, world.tid, grant("edit", "key:deploy"))
        principal = auth.verify(ci.value, world.tid, E, key="deploy")
        assert principal.kind is Kind.TROOP
        assert principal.token_id == ci.token_id
        assert principal.account_id == world.account.id

    def test_denied_key(self, auth, world):
        """A key outside the scope is denied."""
        ci, _ = issue(auth, world.owner, world.tid, grant("edit", "key:deploy"))
        for key in ("other", "deploy2", "deplo", "Deploy"):
            with pytest.raises(AccessDenied):
                auth.verify(ci.value, world.tid, E, key=key)

    def test_prefix_scope(self, auth, world):
        """A prefix pattern covers keys that start with it, and nothing else."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view", "key:prod/*"))
        auth.verify(ci.value, world.tid, V, key="prod/db")
        auth.verify(ci.value, world.tid, V, key="prod/")
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, world.tid, V, key="prod")
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, world.tid, V, key="staging/db")

    def test_denied_permission(self, auth, world):
        """A permission the grant lacks is denied on a covered key."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view", "key:deploy"))
        for perm in (U, E, M):
            with pytest.raises(AccessDenied):
                auth.verify(ci.value, world.tid, perm, key="deploy")

    @pytest.mark.parametrize("held", [V, U, E, M])
    def test_permissions_independent(self, auth, world, held):
        """No permission implies another (MANAGE does not imply VIEW, ...)."""
        ci, _ = issue(auth, world.owner, world.tid, Grant(held, grant("view").scope))
        for perm in (V, U, E, M):
            if perm is held:
                auth.verify(ci.value, world.tid, perm, key="k")
            else:
                with pytest.raises(AccessDenied):
                    auth.verify(ci.value, world.tid, perm, key="k")

    def test_troop_level_needs_whole_scope(self, auth, world):
        """key=None (a troop-level target) is covered only by the '*' scope."""
        keyed, _ = issue(auth, world.owner, world.tid, grant("view", "key:deploy"))
        prefixed, _ = issue(auth, world.owner, world.tid, grant("view", "key:a*"))
        whole, _ = issue(auth, world.owner, world.tid, grant("view"))
        for value in (keyed.value, prefixed.value):
            with pytest.raises(AccessDenied):
                auth.verify(value, world.tid, V)
            with pytest.raises(AccessDenied):
                auth.verify(value, world.tid, V, key=None)
        assert auth.verify(whole.value, world.tid, V).token_id == whole.token_id

    def test_whole_scope_covers_any_valid_key(self, auth, world):
        """The '*' scope reaches every valid key name."""
        whole, _ = issue(auth, world.owner, world.tid, grant("use"))
        for key in ("a", "prod/db-password", "stripe-live", "é:x"):
            auth.verify(whole.value, world.tid, U, key=key)

    @pytest.mark.parametrize(
        "key", ["", "a,b", "a b", "tab\there", "*", "a*", "x" * 257, "nl\n"]
    )
    def test_invalid_key_names_denied(self, auth, world, key):
        """Invalid key names are never covered, not even by '*' or the PAT."""
        whole, _ = issue(auth, world.owner, world.tid, grant("view"))
        pre, _ = issue(auth, world.owner, world.tid, grant("view", "key:a*"))
        for value in (whole.value, pre.value, world.pat.value):
            with pytest.raises(AccessDenied):
                auth.verify(value, world.tid, V, key=key)

    def test_combined_permissions_need_all(self, auth, world):
        """A combined permission is allowed only if every flag is held."""
        some, _ = issue(auth, world.owner, world.tid, grant("view,edit", "key:k"))
        auth.verify(some.value, world.tid, V | E, key="k")
        for wanted in (V | U, E | M, V | E | U, V | U | E | M):
            with pytest.raises(AccessDenied):
                auth.verify(some.value, world.tid, wanted, key="k")
        auth.verify(world.pat.value, world.tid, V | U | E | M, key="k")
        auth.verify(world.pat.value, world.tid, V | U | E | M)

    def test_empty_permission_denied(self, auth, world):
        """An empty permission set is always denied, even to the PAT."""
        some, _ = issue(auth, world.owner, world.tid, grant("view"))
        for value in (some.value, world.pat.value):
            for key in (None, "k"):
                with pytest.raises(AccessDenied):
                    auth.verify(value, world.tid, Permission(0), key=key)

    def test_not_attached_troop_denied(self, auth, world):
        """A real token asking in a troop it is not attached to: AccessDenied."""
        ci, _ = issue(auth, world.owner, world.tid, Grant.full())
        other = world.troops[1].id
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, other, V)
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, other, V, key="k")
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, "troop_does_not_exist", V)

    def test_other_account_denied(self, auth, world):
        """A token never reaches another account's troop (AccessDenied)."""
        ci, _ = issue(auth, world.owner, world.tid, Grant.full())
        other = make_account(auth, troops=2)
        for tid in other.troop_ids():
            for value in (ci.value, world.pat.value):
                with pytest.raises(AccessDenied):
                    auth.verify(value, tid, V)
                with pytest.raises(AccessDenied):
                    auth.verify(value, tid, V, key="k")
        for tid in world.troop_ids():
            with pytest.raises(AccessDenied):
                auth.verify(other.pat.value, tid, V)


def _malformed(value: str) -> list[str]:
    body = value[8:]
    flipped = value[:-1] + ("A" if value[-1] != "A" else "B")
    return [
        "",
        "garbage",
        value[:-1],
        value + "x",
        value.upper() if value.upper() != value else value.lower(),
        "xxx_pat_" + body,
        flipped,
        value[:20] + "-" + value[21:],
        value[:20] + "é" + value[21:],
        " " + value[1:],
    ]


class TestVerifyInvalidToken:
    """verify()/authenticate(): every dead or bogus value is one opaque InvalidToken."""

    @staticmethod
    def _assert_invalid(auth: TroopAuth, value: str, troop_id: str) -> None:
        with pytest.raises(InvalidToken) as caught:
            auth.verify(value, troop_id, V)
        assert str(caught.value) == "invalid token"
        with pytest.raises(InvalidToken) as caught_auth:
            auth.authenticate(value)
        assert str(caught_auth.value) == "invalid token"
        if value:
            assert value not in repr(caught.value)
            assert value not in repr(caught_auth.value)

    def test_malformed(self, auth, world):
        """Malformed values (length, prefix, alphabet, checksum) are InvalidToken."""
        ci, _ = issue(auth, world.owner, world.tid, Grant.full())
        for value in _malformed(ci.value):
            self._assert_invalid(auth, value, world.tid)
        auth.verify(ci.value, world.tid, V)

    def test_unknown(self, auth, world):
        """A well-formed value with a valid checksum that was never issued."""
        self._assert_invalid(auth, new_value(), world.tid)

    def test_rotated(self, auth, world):
        """The old value of a rotated token is InvalidToken at once."""
        ci, _ = issue(auth, world.owner, world.tid, Grant.full())
        auth.rotate(world.owner, ci.token_id)
        self._assert_invalid(auth, ci.value, world.tid)

    def test_revoked(self, auth, world):
        """A revoked token's value is InvalidToken."""
        ci, _ = issue(auth, world.owner, world.tid, Grant.full())
        auth.revoke(world.owner, ci.token_id)
        self._assert_invalid(auth, ci.value, world.tid)

    def test_expired(self, auth, world, clock):
        """An expired token's value is InvalidToken."""
        ci, _ = issue(
            auth, world.owner, world.tid, Grant.full(), expires_at=_in(clock, 60)
        )
        clock.advance(seconds=61)
        self._assert_invalid(auth, ci.value, world.tid)

    def test_replaced_pat(self, auth, world):
        """A replaced PAT's value is InvalidToken."""
        auth.issue_personal_token(world.account.id)
        self._assert_invalid(auth, world.pat.value, world.tid)

    def test_invalid_before_access_check(self, auth, world):
        """A dead value is InvalidToken even for a troop it was never attached to."""
        ci, _ = issue(auth, world.owner, world.tid, Grant.full())
        auth.revoke(world.owner, ci.token_id)
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.troops[1].id, V, key="k")


class TestExpiry:
    """Expiry: a token is refused once now >= expires_at."""

    def test_boundary(self, auth, world, clock):
        """Alive a microsecond before expires_at, dead exactly at it."""
        expires = _in(clock, 3600)
        ci, principal = issue(
            auth, world.owner, world.tid, grant("view"), expires_at=expires
        )
        clock.now = expires - timedelta(microseconds=1)
        auth.verify(ci.value, world.tid, V)
        auth.authorize(principal, world.tid, V)
        assert auth.authenticate(ci.value) == principal
        clock.now = expires
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.tid, V)
        with pytest.raises(InvalidToken):
            auth.authenticate(ci.value)
        with pytest.raises(AccessDenied):
            auth.authorize(principal, world.tid, V)

    def test_boundary_via_advance(self, auth, world, clock):
        """Advancing the clock by exactly the lifetime kills the token."""
        ci, _ = issue(
            auth, world.owner, world.tid, grant("view"), expires_at=_in(clock, 90)
        )
        clock.advance(seconds=90)
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.tid, V)

    def test_other_timezone(self, auth, world, clock):
        """expires_at in another timezone means the same instant."""
        from datetime import timezone

        tz = timezone(timedelta(hours=-7))
        ci, _ = issue(
            auth,
            world.owner,
            world.tid,
            grant("view"),
            expires_at=_in(clock, 60).astimezone(tz),
        )
        clock.advance(seconds=59)
        auth.verify(ci.value, world.tid, V)
        clock.advance(seconds=1)
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.tid, V)

    def test_listed_until_revoked(self, auth, world, clock):
        """An expired token stays in tokens() with its expires_at; revoke drops it."""
        expires = _in(clock, 60)
        ci, _ = issue(auth, world.owner, world.tid, grant("view"), expires_at=expires)
        clock.advance(seconds=120)
        (info,) = auth.tokens(world.tid)
        assert info.token_id == ci.token_id
        assert info.expires_at == expires
        auth.revoke(world.owner, ci.token_id)
        assert auth.tokens(world.tid) == []

    @pytest.mark.parametrize("offset", [0, -1, -3600])
    def test_issue_not_future(self, auth, world, clock, offset):
        """expires_at at or before now is InvalidArgument."""
        with pytest.raises(InvalidArgument):
            auth.issue_token(
                world.owner, world.tid, grant("view"), expires_at=_in(clock, offset)
            )
        assert auth.tokens(world.tid) == []

    def test_issue_naive(self, auth, world, clock):
        """A naive expires_at is InvalidArgument."""
        naive = _in(clock, 3600).replace(tzinfo=None)
        with pytest.raises(InvalidArgument):
            auth.issue_token(world.owner, world.tid, grant("view"), expires_at=naive)
        assert auth.tokens(world.tid) == []


class TestPersonalToken:
    """The PAT: every troop of its account with every permission, nothing else."""

    def test_reaches_every_troop(self, auth, world):
        """The PAT verifies in every troop, every permission, troop-level too."""
        for tid in world.troop_ids():
            principal = auth.verify(world.pat.value, tid, V | U | E | M)
            assert principal.kind is Kind.PERSONAL
            assert principal.token_id == world.pat.token_id
            auth.verify(world.pat.value, tid, M, key="prod/db")
            auth.authorize(world.owner, tid, V | U | E | M)

    def test_reaches_later_troops(self, auth, world):
        """A troop created after the PAT is reached by it at once."""
        later = auth.create_troop(world.account.id, "later")
        auth.verify(world.pat.value, later.id, V | U | E | M)
        auth.authorize(world.owner, later.id, M)
        issue(auth, world.owner, later.id, grant("view"))

    def test_not_other_account(self, auth, world):
        """The PAT never reaches another account's troops."""
        other = make_account(auth, troops=1)
        later = auth.create_troop(other.account.id, "later")
        for tid in (other.tid, later.id):
            with pytest.raises(AccessDenied):
                auth.verify(world.pat.value, tid, V)
            with pytest.raises(AccessDenied):
                auth.authorize(world.owner, tid, V)

    def test_reissue_kills_old(self, auth, world):
        """Issuing a PAT again kills the old value and principal at once."""
        new = auth.issue_personal_token(world.account.id)
        assert new.token_id != world.pat.token_id
        assert new.value != world.pat.value
        with pytest.raises(InvalidToken):
            auth.verify(world.pat.value, world.tid, V)
        with pytest.raises(AccessDenied):
            auth.authorize(world.owner, world.tid, V)
        with pytest.raises(AccessDenied):
            auth.issue_token(world.owner, world.tid, grant("view"))
        owner = auth.authenticate(new.value)
        for tid in world.troop_ids():
            auth.verify(new.value, tid, V | U | E | M)
            auth.authorize(owner, tid, M)

    def test_reissued_reaches_later_troops(self, auth, world):
        """After a replacement, new troops go to the new PAT, not the old one."""
        new = auth.issue_personal_token(world.account.id)
        later = auth.create_troop(world.account.id, "later")
        auth.verify(new.value, later.id, M)
        with pytest.raises(InvalidToken):
            auth.verify(world.pat.value, later.id, M)

    def test_lifecycle_calls_refused(self, auth, world):
        """revoke/rotate/attach/detach on the PAT are AccessDenied, even by itself."""
        pat_id = world.pat.token_id
        with pytest.raises(AccessDenied):
            auth.revoke(world.owner, pat_id)
        with pytest.raises(AccessDenied):
            auth.rotate(world.owner, pat_id)
        with pytest.raises(AccessDenied):
            auth.attach(world.owner, pat_id, world.tid, grant("view"))
        with pytest.raises(AccessDenied):
            auth.detach(world.owner, pat_id, world.tid)
        auth.verify(world.pat.value, world.tid, M)
        auth.authorize(world.owner, world.tid, M)

    def test_not_listed(self, auth, world):
        """tokens() never lists the PAT."""
        assert auth.tokens(world.tid) == []


class TestAuthenticate:
    """authenticate(): the principal a live value stands for."""

    def test_troop_token(self, auth, world):
        """A troop token's principal names kind, account and token."""
        ci, principal = issue(auth, world.owner, world.tid, grant("view"))
        assert principal.kind is Kind.TROOP
        assert principal.account_id == world.account.id
        assert principal.token_id == ci.token_id
        assert principal.member_id is None
        assert auth.verify(ci.value, world.tid, V) == principal

    def test_personal_token(self, auth, world):
        """The PAT's principal is of kind personal."""
        assert world.owner.kind is Kind.PERSONAL
        assert world.owner.account_id == world.account.id
        assert world.owner.token_id == world.pat.token_id

    def test_principal_after_detach_from_all(self, auth, world):
        """A token attached nowhere still authenticates but is denied everywhere."""
        ci, principal = issue(auth, world.owner, world.tid, grant("view"))
        auth.detach(world.owner, ci.token_id, world.tid)
        assert auth.authenticate(ci.value) == principal
        for tid in world.troop_ids():
            with pytest.raises(AccessDenied):
                auth.verify(ci.value, tid, V)
            with pytest.raises(AccessDenied):
                auth.authorize(principal, tid, V)


class TestAuthorize:
    """authorize(): the principal judged by what it holds now."""

    def test_same_decisions_as_verify(self, auth, world):
        """authorize allows and denies like verify for a live principal."""
        _, p = issue(auth, world.owner, world.tid, grant("view,edit", "key:k"))
        auth.authorize(p, world.tid, V | E, key="k")
        auth.authorize(p, world.tid, V, key="k")
        for perm, key in ((V, None), (U, "k"), (V, "j"), (Permission(0), "k")):
            with pytest.raises(AccessDenied):
                auth.authorize(p, world.tid, perm, key=key)
        with pytest.raises(AccessDenied):
            auth.authorize(p, world.troops[1].id, V, key="k")

    def test_combined_permissions_need_all(self, auth, world):
        """authorize with combined flags needs every flag; empty is denied."""
        _, p = issue(auth, world.owner, world.tid, grant("view,edit"))
        auth.authorize(p, world.tid, V | E)
        auth.authorize(p, world.tid, V | E, key="k")
        for wanted in (V | U, E | M, V | U | E | M, Permission(0)):
            with pytest.raises(AccessDenied):
                auth.authorize(p, world.tid, wanted)
            with pytest.raises(AccessDenied):
                auth.authorize(p, world.tid, wanted, key="k")
        auth.authorize(world.owner, world.tid, V | U | E | M)
        with pytest.raises(AccessDenied):
            auth.authorize(world.owner, world.tid, Permission(0))

    def test_after_rotate(self, auth, world):
        """The principal of a rotated-out value is denied; the new one allowed."""
        ci, old = issue(auth, world.owner, world.tid, grant("view"))
        new = auth.rotate(world.owner, ci.token_id)
        with pytest.raises(AccessDenied):
            auth.authorize(old, world.tid, V)
        auth.authorize(auth.authenticate(new.value), world.tid, V)

    def test_after_revoke(self, auth, world):
        """A revoked token's principal is denied."""
        ci, p = issue(auth, world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        with pytest.raises(AccessDenied):
            auth.authorize(p, world.tid, V)

    def test_after_expiry(self, auth, world, clock):
        """An expired token's principal is denied."""
        _, p = issue(
            auth, world.owner, world.tid, grant("view"), expires_at=_in(clock, 5)
        )
        auth.authorize(p, world.tid, V)
        clock.advance(seconds=5)
        with pytest.raises(AccessDenied):
            auth.authorize(p, world.tid, V)

    def test_after_pat_replaced(self, auth, world):
        """The old PAT's principal is denied in every troop."""
        auth.issue_personal_token(world.account.id)
        for tid in world.troop_ids():
            with pytest.raises(AccessDenied):
                auth.authorize(world.owner, tid, V)

    def test_after_reattach_shrinks(self, auth, world):
        """Re-attaching with a smaller grant leaves only the new grant."""
        ci, p = issue(auth, world.owner, world.tid, grant("view,edit"))
        auth.attach(world.owner, ci.token_id, world.tid, grant("view", "key:k"))
        auth.authorize(p, world.tid, V, key="k")
        auth.verify(ci.value, world.tid, V, key="k")
        for perm, key in ((E, "k"), (V, "j"), (V, None)):
            with pytest.raises(AccessDenied):
                auth.authorize(p, world.tid, perm, key=key)
            with pytest.raises(AccessDenied):
                auth.verify(ci.value, world.tid, perm, key=key)

    def test_after_detach(self, auth, world):
        """After a detach, the principal is denied there and kept elsewhere."""
        ci, p = issue(auth, world.owner, world.tid, grant("view"))
        other = world.troops[1].id
        auth.attach(world.owner, ci.token_id, other, grant("view"))
        auth.detach(world.owner, ci.token_id, world.tid)
        with pytest.raises(AccessDenied):
            auth.authorize(p, world.tid, V)
        auth.authorize(p, other, V)

    def test_member_shrinks(self, auth, world):
        """A member re-added with a smaller grant holds only the new grant."""
        alice = member(auth, world.owner, world.tid, "alice", grant("view,edit,manage"))
        auth.authorize(alice, world.tid, V | E | M)
        auth.add_member(world.owner, world.tid, "alice", grant("view", "key:k"))
        auth.authorize(alice, world.tid, V, key="k")
        for perm, key in ((E, "k"), (M, None), (V, None), (V, "j")):
            with pytest.raises(AccessDenied):
                auth.authorize(alice, world.tid, perm, key=key)

    def test_member_removed(self, auth, world):
        """A removed member's principal is denied in that troop."""
        alice = member(auth, world.owner, world.tid, "alice", grant("view"))
        auth.add_member(world.owner, world.troops[1].id, "alice", grant("view"))
        auth.remove_member(world.owner, world.tid, "alice")
        with pytest.raises(AccessDenied):
            auth.authorize(alice, world.tid, V)
        auth.authorize(alice, world.troops[1].id, V)
        auth.remove_member(world.owner, world.troops[1].id, "alice")
        with pytest.raises(AccessDenied):
            auth.authorize(alice, world.troops[1].id, V)

    def test_other_account(self, auth, world):
        """A principal is denied in another account's troop."""
        _, p = issue(auth, world.owner, world.tid, Grant.full())
        alice = member(auth, world.owner, world.tid, "alice", Grant.full())
        other = make_account(auth)
        for principal in (p, alice, world.owner):
            with pytest.raises(AccessDenied):
                auth.authorize(principal, other.tid, V)


class TestIssue:
    """issue_token(): a new token, its value shown once."""

    def test_issue(self, auth, world, clock):
        """The token is attached to the troop with the grant, name and expiry."""
        given = grant("view,use", "key:a,key:b/*")
        expires = _in(clock, 3600)
        ci = auth.issue_token(
            world.owner, world.tid, given, name="ci", expires_at=expires
        )
        (info,) = auth.tokens(world.tid)
        assert info.token_id == ci.token_id
        assert info.name == "ci"
        assert dict(info.grants) == {world.tid: given}
        assert info.expires_at == expires
        assert info.created_at == clock.now
        assert ci.value not in repr(ci)
        assert ci.value not in str(ci)
        assert ci.value not in repr(info)
        assert auth.tokens(world.troops[1].id) == []

    def test_values_and_ids_unique(self, auth, world):
        """Each issue gives a fresh token id and value."""
        issued = [
            auth.issue_token(world.owner, world.tid, grant("view")) for _ in range(5)
        ]
        assert len({t.token_id for t in issued}) == 5
        assert len({t.value for t in issued}) == 5


class TestAttach:
    """attach(): reach another troop; re-attaching replaces the grant."""

    def test_attach_second_troop(self, auth, world):
        """An attached token verifies in the new troop with that troop's grant."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        other = world.troops[1].id
        info = auth.attach(world.owner, ci.token_id, other, grant("edit", "key:k"))
        assert dict(info.grants) == {
            world.tid: grant("view"),
            other: grant("edit", "key:k"),
        }
        auth.verify(ci.value, other, E, key="k")
        auth.verify(ci.value, world.tid, V)
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, other, V, key="k")
        assert [t.token_id for t in auth.tokens(other)] == [ci.token_id]

    def test_reattach_replaces(self, auth, world):
        """Re-attaching to a troop replaces its grant (it can also grow it)."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view", "key:a"))
        auth.attach(world.owner, ci.token_id, world.tid, grant("edit", "key:b"))
        (info,) = auth.tokens(world.tid)
        assert dict(info.grants) == {world.tid: grant("edit", "key:b")}
        auth.verify(ci.value, world.tid, E, key="b")
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, world.tid, V, key="a")

    def test_revoked(self, auth, world):
        """Attaching a revoked token is NotFound."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        with pytest.raises(NotFound):
            auth.attach(world.owner, ci.token_id, world.troops[1].id, grant("view"))
        with pytest.raises(NotFound):
            auth.attach(world.owner, ci.token_id, world.tid, grant("view"))

    def test_expired(self, auth, world, clock):
        """Attaching an expired token is NotFound."""
        ci, _ = issue(
            auth, world.owner, world.tid, grant("view"), expires_at=_in(clock, 1)
        )
        clock.advance(seconds=1)
        with pytest.raises(NotFound):
            auth.attach(world.owner, ci.token_id, world.troops[1].id, grant("view"))

    @pytest.mark.parametrize("token_id", ["tok_nope", "x"])
    def test_unknown_token(self, auth, world, token_id):
        """Attaching a token id that does not exist is NotFound."""
        with pytest.raises(NotFound):
            auth.attach(world.owner, token_id, world.tid, grant("view"))

    def test_unknown_troop(self, auth, world):
        """Attaching to a troop that does not exist is NotFound."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        with pytest.raises(NotFound):
            auth.attach(world.owner, ci.token_id, "troop_nope", grant("view"))


class TestDetach:
    """detach(): leave one troop, keep the others."""

    def test_detach(self, auth, world):
        """After detach the troop is denied and unlisted; other troops unchanged."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        other = world.troops[1].id
        auth.attach(world.owner, ci.token_id, other, grant("use"))
        info = auth.detach(world.owner, ci.token_id, world.tid)
        assert dict(info.grants) == {other: grant("use")}
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, world.tid, V)
        auth.verify(ci.value, other, U)
        assert auth.tokens(world.tid) == []

    def test_not_attached(self, auth, world):
        """Detaching from a troop the token is not attached to is NotFound."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        with pytest.raises(NotFound):
            auth.detach(world.owner, ci.token_id, world.troops[1].id)
        auth.detach(world.owner, ci.token_id, world.tid)
        with pytest.raises(NotFound):
            auth.detach(world.owner, ci.token_id, world.tid)

    def test_revoked_or_expired(self, auth, world, clock):
        """Detaching a revoked or expired token is NotFound."""
        gone, _ = issue(auth, world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, gone.token_id)
        old, _ = issue(
            auth, world.owner, world.tid, grant("view"), expires_at=_in(clock, 1)
        )
        clock.advance(seconds=2)
        for token_id in (gone.token_id, old.token_id, "tok_nope"):
            with pytest.raises(NotFound):
                auth.detach(world.owner, token_id, world.tid)

    def test_reattach_after_detach(self, auth, world):
        """A token detached from every troop can be attached again and works."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        auth.detach(world.owner, ci.token_id, world.tid)
        auth.attach(world.owner, ci.token_id, world.troops[2].id, grant("edit"))
        auth.verify(ci.value, world.troops[2].id, E)
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, world.tid, V)


class TestRotate:
    """rotate(): a new secret in place; the old one dies at once."""

    def test_keeps_identity(self, auth, world, clock):
        """Same token id, name, attachments, expiry and seat; a new value."""
        expires = _in(clock, 3600)
        ci, _ = issue(
            auth, world.owner, world.tid, grant("view"), name="ci", expires_at=expires
        )
        auth.attach(world.owner, ci.token_id, world.troops[1].id, grant("edit"))
        (before,) = auth.tokens(world.tid)
        seats = auth.seats(world.account.id)
        new = auth.rotate(world.owner, ci.token_id)
        assert new.token_id == ci.token_id
        assert new.value != ci.value
        (after,) = auth.tokens(world.tid)
        assert after.token_id == before.token_id
        assert after.name == "ci"
        assert after.expires_at == expires
        assert after.created_at == before.created_at
        assert dict(after.grants) == dict(before.grants)
        assert auth.seats(world.account.id) == seats
        auth.verify(new.value, world.tid, V)
        auth.verify(new.value, world.troops[1].id, E)
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.tid, V)
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.troops[1].id, E)

    def test_rotate_twice(self, auth, world):
        """Each rotation kills the previous value and principal."""
        ci, p0 = issue(auth, world.owner, world.tid, grant("view"))
        v1 = auth.rotate(world.owner, ci.token_id)
        p1 = auth.authenticate(v1.value)
        v2 = auth.rotate(world.owner, ci.token_id)
        for value in (ci.value, v1.value):
            with pytest.raises(InvalidToken):
                auth.authenticate(value)
        for principal in (p0, p1):
            with pytest.raises(AccessDenied):
                auth.authorize(principal, world.tid, V)
        auth.authorize(auth.authenticate(v2.value), world.tid, V)

    def test_self_rotate(self, auth, world):
        """A manager token may rotate itself; its old principal then is dead."""
        mgr, p = issue(auth, world.owner, world.tid, grant("manage"))
        new = auth.rotate(p, mgr.token_id)
        with pytest.raises(AccessDenied):
            auth.issue_token(p, world.tid, grant("manage"))
        issue(auth, auth.authenticate(new.value), world.tid, grant("manage"))

    def test_revoked_or_expired(self, auth, world, clock):
        """Rotating a revoked or expired token is NotFound."""
        gone, _ = issue(auth, world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, gone.token_id)
        old, _ = issue(
            auth, world.owner, world.tid, grant("view"), expires_at=_in(clock, 1)
        )
        clock.advance(seconds=1)
        for token_id in (gone.token_id, old.token_id, "tok_nope"):
            with pytest.raises(NotFound):
                auth.rotate(world.owner, token_id)


class TestRevoke:
    """revoke(): disable a token for good."""

    def test_revoke(self, auth, world):
        """The value and principal die in every troop; tokens() drops it."""
        ci, p = issue(auth, world.owner, world.tid, grant("view"))
        for tid in world.troop_ids()[1:]:
            auth.attach(world.owner, ci.token_id, tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        for tid in world.troop_ids():
            with pytest.raises(InvalidToken):
                auth.verify(ci.value, tid, V)
            with pytest.raises(AccessDenied):
                auth.authorize(p, tid, V)
            assert auth.tokens(tid) == []

    def test_twice(self, auth, world):
        """Revoking a revoked token is not an error and changes nothing."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        log = auth.audit_log(world.tid)
        seats = auth.seats(world.account.id)
        auth.revoke(world.owner, ci.token_id)
        assert auth.audit_log(world.tid) == log
        assert auth.seats(world.account.id) == seats

    def test_twice_by_other_live_actor(self, auth, world):
        """Any live actor of the account may re-revoke a revoked token (a no-op)."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        _, viewer = issue(auth, world.owner, world.troops[1].id, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        log = auth.audit_log(world.tid)
        auth.revoke(viewer, ci.token_id)
        assert auth.audit_log(world.tid) == log

    def test_unknown(self, auth, world):
        """Revoking a token id that does not exist is NotFound."""
        with pytest.raises(NotFound):
            auth.revoke(world.owner, "tok_nope")

    def test_no_resurrection(self, auth, world):
        """A revoked token cannot come back through attach or rotate."""
        ci, _ = issue(auth, world.owner, world.tid, grant("view"))
        auth.revoke(world.owner, ci.token_id)
        with pytest.raises(NotFound):
            auth.attach(world.owner, ci.token_id, world.tid, grant("view"))
        with pytest.raises(NotFound):
            auth.rotate(world.owner, ci.token_id)
        with pytest.raises(InvalidToken):
            auth.verify(ci.value, world.tid, V)
