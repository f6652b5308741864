"""Inputs that must not hurt: the largest scope, datetimes no store can hold,
malformed ids and principals given to every public method, and what a store
accepted it can always read back, list, detach and revoke."""

from __future__ import annotations

import contextlib
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troopauth import (
    Grant,
    InvalidArgument,
    InvalidToken,
    Kind,
    MemoryStore,
    Permission,
    Principal,
    Scope,
    SQLiteStore,
    TroopAuth,
    TroopAuthError,
)
from troopauth.scope import MAX_SCOPE_TEXT

from .conftest import FrozenClock
from .helpers import grant, make_account
from .strategies import any_key_names, non_text, permissions

EDIT = grant("edit", "key:deploy")


def largest_scope() -> Scope:
    """A scope whose canonical text is exactly MAX_SCOPE_TEXT characters: as
    many short prefixes as fit (the costliest shape to minimise), topped up
    with one exact key to land on the limit."""
    names = (
        a + b + c
        for a in string.ascii_letters
        for b in string.ascii_letters
        for c in string.ascii_letters
    )
    prefixes: list[str] = []
    length = -1  # no comma before the first pattern
    while length + len("key:xyz*") + 1 + len("key:k") + 1 <= MAX_SCOPE_TEXT:
        prefixes.append(next(names))
        length += len("key:xyz*") + 1
    # Exact keys start with a digit: no prefix above covers them.
    key = "0" * (MAX_SCOPE_TEXT - length - 1 - len("key:"))
    scope = Scope.of([key], prefixes)
    assert len(str(scope)) == MAX_SCOPE_TEXT
    return scope


class TestLargestScope:
    """The largest scope goes through every door and every store."""

    def test_text_round_trip(self) -> None:
        """It parses back from its text; one character more is refused by
        both Scope.parse and Scope.of."""
        scope = largest_scope()
        assert Scope.parse(str(scope)) == scope
        with pytest.raises(InvalidArgument, match="65,536"):
            Scope.parse(str(scope) + "0")
        with pytest.raises(InvalidArgument, match="65,536"):
            Scope.of([*scope.keys, "1"], scope.prefixes)

    def test_through_a_store(self, auth: TroopAuth) -> None:
        """Issued, verified, listed, attached, given to a member, detached and
        revoked on every store."""
        big = Grant(Permission.EDIT | Permission.MANAGE, largest_scope())
        s = make_account(auth, troops=2)
        issued = auth.issue_token(s.owner, s.tid, big)
        auth.verify(issued.value, s.tid, Permission.EDIT, key="abc/anything")
        auth.attach(s.owner, issued.token_id, s.troops[1].id, big)
        assert [t.grants[s.tid] for t in auth.tokens(s.tid)] == [big]
        assert auth.token(issued.token_id).grants[s.troops[1].id] == big
        auth.add_member(s.owner, s.tid, "alice", big)
        assert [m.grant for m in auth.members(s.tid)] == [big]
        auth.detach(s.owner, issued.token_id, s.tid)
        auth.revoke(s.owner, issued.token_id)
        assert auth.seats(s.account.id).used == 0

    def test_read_back_in_a_fresh_store(self, tmp_path: Path) -> None:
        """A fresh SQLiteStore on the file reads the stored scope back."""
        big = Grant(Permission.EDIT, largest_scope())
        with SQLiteStore(tmp_path / "db") as store:
            auth = TroopAuth(store)
            s = make_account(auth)
            issued = auth.issue_token(s.owner, s.tid, big)
        with SQLiteStore(tmp_path / "db") as store:
            auth = TroopAuth(store)
            auth.verify(issued.value, s.tid, Permission.EDIT, key="abc/1")
            assert auth.tokens(s.tid)[0].grants[s.tid] == big


class TestDatetimeRange:
    """Datetimes outside what every store can hold are refused at the door."""

    @pytest.mark.parametrize("bad", ["2030-01-01T00:00:00+00:00", 1.7e9, 0, [], True])
    def test_expiry_not_a_datetime(self, auth: TroopAuth, bad: object) -> None:
        """An expires_at that is no datetime at all is InvalidArgument (not an
        AttributeError from deep inside), and takes no seat."""
        s = make_account(auth)
        with pytest.raises(InvalidArgument, match="must be a datetime"):
            auth.issue_token(s.owner, s.tid, EDIT, expires_at=bad)  # type: ignore[arg-type]
        assert auth.seats(s.account.id).used == 0

    @pytest.mark.parametrize(
        "when",
        [
            datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
            datetime.max.replace(tzinfo=UTC),
            datetime(9999, 6, 1, tzinfo=UTC),
        ],
        ids=["past-9999-in-utc", "max", "no-room-for-arithmetic"],
    )
    def test_expiry_too_late(self, auth: TroopAuth, when: datetime) -> None:
        """An expires_at too late for every store is InvalidArgument, and no
        token, seat or audit event is made."""
        s = make_account(auth)
        with pytest.raises(InvalidArgument, match="between"):
            auth.issue_token(s.owner, s.tid, EDIT, expires_at=when)
        assert auth.seats(s.account.id).used == 0
        assert auth.tokens(s.tid) == []
        assert auth.audit_log(s.tid) == []

    def test_latest_accepted_expiry_round_trips(self, auth: TroopAuth) -> None:
        """The latest accepted expiry is stored and read back on every store."""
        from troopauth.core import LATEST

        s = make_account(auth)
        issued = auth.issue_token(s.owner, s.tid, EDIT, expires_at=LATEST)
        assert auth.token(issued.token_id).expires_at == LATEST
        auth.verify(issued.value, s.tid, Permission.EDIT, key="deploy")

    @pytest.mark.parametrize(
        "when",
        [
            datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            datetime(1, 6, 1, tzinfo=UTC),
            datetime(9999, 12, 31, tzinfo=UTC),
        ],
    )
    def test_clock_out_of_range(self, when: datetime) -> None:
        """A clock reading outside the range makes every call InvalidArgument."""
        clock = FrozenClock()
        auth = TroopAuth(MemoryStore(), clock=clock)
        clock.now = when
        with pytest.raises(InvalidArgument):
            auth.create_account(seats=1)


#: Ids and principals' fields no troopauth call could have produced.
BAD_IDS: list[object] = [
    ["troop"],
    1,
    "",
    None,
    b"troop",
    1.5,
    "a\x00b",
    "x" * 257,
    {"a": 1},
]


def _calls(s: Any, live: Any) -> dict[str, Callable[[object], object]]:
    """Every public method of TroopAuth, one argument at a time made bad."""
    auth: TroopAuth = s.auth
    g = EDIT
    return {
        "create_troop(account_id)": lambda v: auth.create_troop(v, "n"),  # type: ignore[arg-type]
        "issue_personal_token(account_id)": auth.issue_personal_token,
        "member(account_id)": lambda v: auth.member(v, "alice"),  # type: ignore[arg-type]
        "member(member_id)": lambda v: auth.member(s.account.id, v),  # type: ignore[arg-type]
        "issue_token(troop_id)": lambda v: auth.issue_token(s.owner, v, g),  # type: ignore[arg-type]
        "attach(token_id)": lambda v: auth.attach(s.owner, v, s.tid, g),  # type: ignore[arg-type]
        "attach(troop_id)": lambda v: auth.attach(s.owner, live.token_id, v, g),  # type: ignore[arg-type]
        "detach(token_id)": lambda v: auth.detach(s.owner, v, s.tid),  # type: ignore[arg-type]
        "detach(troop_id)": lambda v: auth.detach(s.owner, live.token_id, v),  # type: ignore[arg-type]
        "rotate(token_id)": lambda v: auth.rotate(s.owner, v),  # type: ignore[arg-type]
        "revoke(token_id)": lambda v: auth.revoke(s.owner, v),  # type: ignore[arg-type]
        "add_member(troop_id)": lambda v: auth.add_member(s.owner, v, "m", g),  # type: ignore[arg-type]
        "add_member(member_id)": lambda v: auth.add_member(s.owner, s.tid, v, g),  # type: ignore[arg-type]
        "remove_member(troop_id)": lambda v: auth.remove_member(s.owner, v, "m"),  # type: ignore[arg-type]
        "remove_member(member_id)": lambda v: auth.remove_member(s.owner, s.tid, v),  # type: ignore[arg-type]
        "tokens(troop_id)": auth.tokens,
        "tokens(after)": lambda v: auth.tokens(s.tid, after=v),  # type: ignore[arg-type]
        "token(token_id)": auth.token,
        "troops(account_id)": auth.troops,
        "account(account_id)": auth.account,
        "members(troop_id)": auth.members,
        "set_seats(account_id)": lambda v: auth.set_seats(v, 3),  # type: ignore[arg-type]
        "seats(account_id)": auth.seats,
        "audit_log(troop_id)": auth.audit_log,
        "account_audit_log(account_id)": auth.account_audit_log,
        "check_audit_log(troop_id)": auth.check_audit_log,
        "check_account_audit_log(account_id)": auth.check_account_audit_log,
        "authorize(troop_id)": lambda v: auth.authorize(s.owner, v, Permission.VIEW),  # type: ignore[arg-type]
    }


def _principals(s: Any) -> dict[str, Callable[[object], Principal]]:
    """The owner's principal with one field made bad."""
    return {
        field: (lambda v, field=field: attrs.evolve(s.owner, **{field: v}))
        for field in ("account_id", "token_id", "generation", "kind")
    } | {
        "member_id": lambda v: Principal(Kind.MEMBER, s.account.id, None, v),  # type: ignore[arg-type]
    }


@pytest.fixture
def world(auth: TroopAuth) -> tuple[Any, Any]:
    """An account with a troop and a live token, on each store."""
    s = make_account(auth)
    return s, auth.issue_token(s.owner, s.tid, EDIT)


def _refusal(call: Callable[[Any], object], arg: object) -> str:
    """The TroopAuthError class *call* raised, or "accepted"."""
    try:
        call(arg)
    except TroopAuthError as exc:
        return type(exc).__name__
    return "accepted"


class TestAccountArguments:
    """create_account's own arguments."""

    @pytest.mark.parametrize("bad", [-1, True, 1.5, "3", None])
    def test_bad_seat_count(self, auth: TroopAuth, bad: object) -> None:
        """A seat count that is not a whole number >= 0 is InvalidArgument."""
        with pytest.raises(InvalidArgument, match="seats"):
            auth.create_account(seats=bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [1, None, "yes"])
    def test_bad_audit_flag(self, auth: TroopAuth, bad: object) -> None:
        """audit_log is True or False."""
        with pytest.raises(InvalidArgument, match="audit_log"):
            auth.create_account(seats=1, audit_log=bad)  # type: ignore[arg-type]


class TestNames:
    """Names: the documented limits, at the boundary."""

    def test_token_name_limit(self, auth: TroopAuth) -> None:
        """A token name of 200 characters is kept; 201 is InvalidArgument and
        takes no seat."""
        s = make_account(auth)
        issued = auth.issue_token(s.owner, s.tid, EDIT, name="n" * 200)
        assert auth.token(issued.token_id).name == "n" * 200
        with pytest.raises(InvalidArgument, match="200"):
            auth.issue_token(s.owner, s.tid, EDIT, name="n" * 201)
        assert auth.seats(s.account.id).used == 1

    def test_troop_name_limit(self, auth: TroopAuth) -> None:
        """A troop name of 200 characters is kept; 201 is InvalidArgument."""
        s = make_account(auth)
        assert auth.create_troop(s.account.id, "t" * 200).name == "t" * 200
        with pytest.raises(InvalidArgument, match="200"):
            auth.create_troop(s.account.id, "t" * 201)
        assert len(auth.troops(s.account.id)) == 2

    @pytest.mark.parametrize("bad", ["", "\x00", "a\nb", 7, None])
    def test_bad_token_names(self, auth: TroopAuth, bad: object) -> None:
        """Non-text or unprintable names are InvalidArgument; the empty name is
        allowed (a token need not be named)."""
        s = make_account(auth)
        if bad == "":
            auth.issue_token(s.owner, s.tid, EDIT, name=bad)
            return
        with pytest.raises(InvalidArgument):
            auth.issue_token(s.owner, s.tid, EDIT, name=bad)  # type: ignore[arg-type]


class TestMalformedIds:
    """Malformed ids and principals never escape as anything but a
    TroopAuthError, and the ones that cannot be ids are InvalidArgument."""

    @pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
    def test_every_method_every_id(self, world: tuple[Any, Any], bad: object) -> None:
        """Every id argument of every method: InvalidArgument (a name that
        cannot be a member id or a troop name counts too), never NotFound."""
        s, live = world
        calls = _calls(s, live)
        outcomes = {name: _refusal(call, bad) for name, call in calls.items()}
        expected = dict.fromkeys(calls, "InvalidArgument")
        if bad is None:
            expected["tokens(after)"] = "accepted"  # None: from the first token
        assert outcomes == expected

    @pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
    def test_every_principal_field(self, world: tuple[Any, Any], bad: object) -> None:
        """A principal with any field malformed is InvalidArgument for a
        management call and for authorize."""
        s, _ = world
        for field, make in _principals(s).items():
            if field == "generation" and type(bad) is int:
                continue  # a whole number is a generation (an old one: AccessDenied)
            actor = make(bad)
            outcomes = [
                _refusal(lambda a: s.auth.issue_token(a, s.tid, EDIT), actor),
                _refusal(lambda a: s.auth.authorize(a, s.tid, Permission.VIEW), actor),
                _refusal(lambda a: s.auth.revoke(a, "tok_x"), actor),
            ]
            assert outcomes == ["InvalidArgument"] * 3, field

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(value=non_text | st.text(max_size=300))
    def test_fuzzed(self, world: tuple[Any, Any], value: object) -> None:
        """Any object or text in any id position: only TroopAuthError escapes."""
        s, live = world
        for call in _calls(s, live).values():
            _refusal(call, value)  # anything but a TroopAuthError propagates

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(value=non_text | st.text(max_size=50) | st.integers() | st.just(-1))
    def test_every_other_argument(self, world: tuple[Any, Any], value: object) -> None:
        """Any object as a grant, name, expiry, seat count, limit, window,
        overlap, policy, permission or key of any public method: only
        TroopAuthError escapes (a valid value may simply succeed)."""
        s, live = world
        auth: TroopAuth = s.auth
        v: Any = value
        calls = [
            lambda: auth.create_account(seats=v),
            lambda: auth.create_account(seats=1, audit_log=v),
            lambda: auth.create_account(seats=1, max_token_lifetime=v),
            lambda: auth.create_account(seats=1, require_expiry=v),
            lambda: auth.issue_token(s.owner, s.tid, v),
            lambda: auth.issue_token(s.owner, s.tid, EDIT, name=v),
            lambda: auth.issue_token(s.owner, s.tid, EDIT, expires_at=v),
            lambda: auth.attach(s.owner, live.token_id, s.tid, v),
            lambda: auth.rotate(s.owner, live.token_id, overlap=v),
            lambda: auth.add_member(s.owner, s.tid, "m", v),
            lambda: auth.set_seats(s.account.id, v),
            lambda: auth.set_policy(s.account.id, max_token_lifetime=v),
            lambda: auth.set_policy(s.account.id, require_expiry=v),
            lambda: auth.tokens(s.tid, limit=v),
            lambda: auth.expiring(s.account.id, within=v),
            lambda: auth.authorize(s.owner, s.tid, v),
            lambda: auth.authorize(s.owner, s.tid, Permission.VIEW, v),
            lambda: auth.verify(live.value, s.tid, v),
            lambda: auth.verify(live.value, s.tid, Permission.EDIT, v),
            lambda: auth.report_leak(v),
            lambda: auth.authenticate(v),
            lambda: auth.introspect(v),
            lambda: auth.member(s.account.id, v),
        ]
        for call in calls:
            with contextlib.suppress(TroopAuthError):
                call()
        auth.set_policy(s.account.id, max_token_lifetime=None, require_expiry=False)


@st.composite
def odd_grants(draw: st.DrawFn) -> Grant:
    """Valid grants at the edges: any Unicode key names, many patterns, the
    largest scope now and then."""
    if draw(st.integers(0, 9)) == 0:
        return Grant(draw(permissions), largest_scope())
    if draw(st.booleans()):
        return Grant(draw(permissions), Scope.whole_troop())
    keys = draw(st.frozensets(any_key_names, max_size=30))
    prefixes = draw(st.frozensets(any_key_names, max_size=30))
    if not keys and not prefixes:
        keys = frozenset(["k"])
    return Grant(draw(permissions), Scope.of(keys, prefixes))


class TestWhateverWasAccepted:
    """What a store accepted, it can read back, list, detach and revoke."""

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        given_grant=odd_grants(),
        name=st.text(
            alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")),
            max_size=200,
        ).filter(str.isprintable),
        expires=st.none() | st.sampled_from(["latest", "soon"]),
    )
    def test_round_trip(
        self,
        auth: TroopAuth,
        clock: FrozenClock,
        given_grant: Grant,
        name: str,
        expires: str | None,
    ) -> None:
        """Issue with any valid grant, name and expiry; then verify, list,
        read, give to a member, detach and revoke all succeed."""
        from troopauth.core import LATEST

        s = make_account(auth, troops=2)
        when = {None: None, "latest": LATEST, "soon": clock.now + timedelta(1)}
        issued = auth.issue_token(
            s.owner, s.tid, given_grant, name=name, expires_at=when[expires]
        )
        principal = auth.authenticate(issued.value)
        assert principal.token_id == issued.token_id
        info = auth.token(issued.token_id)
        assert (info.name, dict(info.grants)) == (name, {s.tid: given_grant})
        assert [t.token_id for t in auth.tokens(s.tid)] == [issued.token_id]
        auth.attach(s.owner, issued.token_id, s.troops[1].id, given_grant)
        auth.add_member(s.owner, s.tid, "m", given_grant)
        assert auth.members(s.tid)[0].grant == given_grant
        auth.detach(s.owner, issued.token_id, s.tid)
        auth.revoke(s.owner, issued.token_id)
        with pytest.raises(InvalidToken):
            auth.authenticate(issued.value)
        assert auth.seats(s.account.id).used == 0
