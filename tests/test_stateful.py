"""The token lifecycle, driven at random and checked against a small model.

The model below is written from DESIGN.md section 1 (and the decisions in
docs/), not from ``troopauth.core``: dicts of tokens with a grant per troop,
a revoked flag, an expiry, a generation and the current value, plus members
and a seat capacity. Every rule calls the real API, asks the model what must
happen (success, or exactly which error), and the two must agree. The
invariants then compare everything observable: seats, listings, what every
value verifies to, and the audit logs.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from troopauth import (
    AccessDenied,
    Grant,
    InvalidArgument,
    InvalidToken,
    Kind,
    MemoryStore,
    NotFound,
    Permission,
    Principal,
    Scope,
    SeatsExhausted,
    SQLiteStore,
    TroopAuth,
    TroopAuthError,
)

from .conftest import FrozenClock, postgres_unreachable, require_postgres

# -- the model ---------------------------------------------------------------

VIEW, USE, EDIT, MANAGE = 1, 2, 4, 8
ALL = VIEW | USE | EDIT | MANAGE
#: Small pools, so that scopes overlap, contain each other and miss often.
KEYS = ("a", "b", "a/", "a/x", "ab", "b/y")
PREFIXES = ("a", "a/", "b/")
MEMBERS = ("alice", "bob", "carol")
#: Keys every probe tries besides the pool: troop-level and invalid names.
ODD_KEYS = (None, "", "a b", "a,b", "a*", "zz")

ErrorClass = type[TroopAuthError] | None


def valid_key(key: str) -> bool:
    """Key names: 1-256 printable characters, no comma, whitespace or '*'."""
    return 0 < len(key) <= 256 and all(
        ch.isprintable() and not ch.isspace() and ch not in ",*" for ch in key
    )


@dataclass(frozen=True)
class MGrant:
    """A grant as the design states it: permission bits and a scope."""

    perms: int
    whole: bool = False
    keys: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()

    def covers(self, key: str | None) -> bool:
        """Whole troop: every key and troop-level targets; else exact or prefix."""
        if key is None:
            return self.whole
        if not valid_key(key):
            return False
        return (
            self.whole
            or key in self.keys
            or any(key.startswith(p) for p in self.prefixes)
        )

    def allows(self, perms: int, key: str | None) -> bool:
        """All of *perms* (never none) on *key*."""
        return perms != 0 and perms & ~self.perms == 0 and self.covers(key)

    def contains(self, other: MGrant) -> bool:
        """Everything *other* allows, this allows."""
        if other.perms & ~self.perms:
            return False
        if self.whole:
            return True
        if other.whole:
            return False
        return all(self.covers(k) for k in other.keys) and all(
            any(p.startswith(q) for q in self.prefixes) for p in other.prefixes
        )

    def manages(self) -> bool:
        """MANAGE with the whole-troop scope."""
        return self.whole and bool(self.perms & MANAGE)

    def real(self) -> Grant:
        """The library's Grant for this model grant."""
        scope = (
            Scope.whole_troop() if self.whole else Scope.of(self.keys, self.prefixes)
        )
        return Grant(Permission(self.perms), scope)


FULL = MGrant(ALL, whole=True)


@dataclass
class MToken:
    """A token as the design states it."""

    token_id: str
    personal: bool
    value: str
    grants: dict[str, MGrant] = field(default_factory=dict)
    expires_at: datetime | None = None
    revoked: bool = False
    generation: int = 0
    old_values: list[str] = field(default_factory=list)
    #: A rotation overlap: the previous value and when it stops working.
    kept: tuple[str, datetime] | None = None

    def works(self, value: str, now: datetime) -> bool:
        """Whether *value* is a live value of this token now."""
        if self.dead(now):
            return False
        if value == self.value:
            return True
        return self.kept is not None and value == self.kept[0] and now < self.kept[1]

    def dead(self, now: datetime) -> bool:
        """Revoked (or replaced), or ``now >= expires_at``."""
        return self.revoked or (self.expires_at is not None and now >= self.expires_at)

    def seated(self, now: datetime) -> bool:
        """A live troop token attached to at least one troop takes one seat."""
        return not self.personal and bool(self.grants) and not self.dead(now)


@dataclass(frozen=True)
class Actor:
    """A principal the machine obtained, and what it stood for then."""

    principal: Principal
    token_id: str | None = None
    generation: int = 0
    member_id: str | None = None


@dataclass
class Model:
    """One account: troops, tokens, members, a seat pool, audit-event counts."""

    troops: list[str]
    capacity: int
    clock: FrozenClock
    tokens: dict[str, MToken] = field(default_factory=dict)
    members: dict[str, dict[str, MGrant]] = field(default_factory=dict)
    pat_id: str = ""
    #: The account's token policy.
    max_lifetime: timedelta | None = None
    require_expiry: bool = False
    events: Counter[str | None] = field(default_factory=Counter)

    @property
    def now(self) -> datetime:
        """The machine's frozen time."""
        return self.clock.now

    def grants_of(self, tok: MToken) -> dict[str, MGrant]:
        """The PAT holds everything in its account; a troop token its grants."""
        return dict.fromkeys(self.troops, FULL) if tok.personal else tok.grants

    def held(self, actor: Actor) -> dict[str, MGrant] | None:
        """What the actor holds now; ``None`` for a dead credential."""
        if actor.member_id is not None:
            return self.members.get(actor.member_id, {})
        tok = self.tokens[actor.token_id or ""]
        if tok.dead(self.now) or tok.generation != actor.generation:
            return None
        return self.grants_of(tok)

    def log_change(self, tok: MToken) -> None:
        """A rotate or revoke: one event per troop the token is attached to;
        attached nowhere, one in the account's log (docs/decisions.md)."""
        troops: list[str | None] = [*tok.grants]
        self.events.update(troops or [None])

    def is_pat(self, actor: Actor) -> bool:
        """Whether the actor is a personal token."""
        return actor.principal.kind is Kind.PERSONAL

    def used(self) -> int:
        """Seats held by live troop tokens attached somewhere."""
        return sum(t.seated(self.now) for t in self.tokens.values())

    def live(self) -> Iterator[MToken]:
        """Tokens whose current value works."""
        return (t for t in self.tokens.values() if not t.dead(self.now))

    def _manager(self, actor: Actor, troop: str) -> tuple[ErrorClass, MGrant | None]:
        """Actor alive, troop of this account, actor manages it."""
        held = self.held(actor)
        if held is None:
            return AccessDenied, None
        if troop not in self.troops:
            return NotFound, None
        grant = held.get(troop)
        if grant is None or not grant.manages():
            return AccessDenied, None
        return None, grant

    def _target(self, token_id: str) -> tuple[ErrorClass, MToken | None]:
        """A live troop token of this account (attach, detach, rotate)."""
        tok = self.tokens.get(token_id)
        if tok is None:
            return NotFound, None
        if tok.personal:
            return AccessDenied, None
        if tok.dead(self.now):
            return NotFound, None
        return None, tok

    def check_issue(
        self, actor: Actor, troop: str, grant: MGrant, expires_at: datetime | None
    ) -> ErrorClass:
        """Issue needs MANAGE on the whole troop, no escalation, a free seat."""
        if expires_at is not None and expires_at <= self.now:
            return InvalidArgument
        error, held = self._manager(actor, troop)
        if held is None:
            return error
        if not held.contains(grant):
            return AccessDenied
        if self.max_lifetime is not None:
            if expires_at is not None and expires_at > self.now + self.max_lifetime:
                return InvalidArgument
        elif expires_at is None and self.require_expiry:
            return InvalidArgument
        return SeatsExhausted if self.used() >= self.capacity else None

    def policy_expiry(self, expires_at: datetime | None) -> datetime | None:
        """The expiry an issued token gets: asked for, else now + the maximum."""
        if expires_at is None and self.max_lifetime is not None:
            return self.now + self.max_lifetime
        return expires_at

    def outlives_policy(self, tok: MToken) -> bool:
        """A token that may not reach a new troop under the policy of now."""
        if tok.expires_at is None:
            return self.max_lifetime is not None or self.require_expiry
        return (
            self.max_lifetime is not None
            and tok.expires_at > self.now + self.max_lifetime
        )

    def check_attach(
        self, actor: Actor, token_id: str, troop: str, grant: MGrant
    ) -> ErrorClass:
        """Attach: as issue, on an existing live troop token; a seat if unseated."""
        error, held = self._manager(actor, troop)
        if held is None:
            return error
        if not held.contains(grant):
            return AccessDenied
        error, tok = self._target(token_id)
        if tok is None:
            return error
        if self.outlives_policy(tok):
            return InvalidArgument
        if not tok.seated(self.now) and self.used() >= self.capacity:
            return SeatsExhausted
        return None

    def check_detach(self, actor: Actor, token_id: str, troop: str) -> ErrorClass:
        """Detach: MANAGE on the whole troop, and the token attached there."""
        error, held = self._manager(actor, troop)
        if held is None:
            return error
        error, tok = self._target(token_id)
        if tok is None:
            return error
        return None if troop in tok.grants else NotFound

    def check_rotate(self, actor: Actor, token_id: str) -> ErrorClass:
        """Rotate: a manager containing the token's grant in every troop."""
        held = self.held(actor)
        if held is None:
            return AccessDenied
        error, tok = self._target(token_id)
        if tok is None:
            return error
        if not tok.grants and not self.is_pat(actor):
            return AccessDenied
        for troop, grant in tok.grants.items():
            mine = held.get(troop)
            if mine is None or not mine.manages() or not mine.contains(grant):
                return AccessDenied
        return None

    def check_revoke(self, actor: Actor, token_id: str) -> ErrorClass:
        """Revoke: a manager in every troop of the token; twice is a no-op."""
        held = self.held(actor)
        if held is None:
            return AccessDenied
        tok = self.tokens.get(token_id)
        if tok is None:
            return NotFound
        if tok.personal:
            return AccessDenied
        if tok.revoked:
            return None
        if not tok.grants:
            return None if self.is_pat(actor) else AccessDenied
        if all(held.get(t, MGrant(VIEW)).manages() for t in tok.grants):
            return None
        return AccessDenied

    def check_add_member(self, actor: Actor, troop: str, grant: MGrant) -> ErrorClass:
        """Adding a member: MANAGE on the whole troop, no escalation."""
        error, held = self._manager(actor, troop)
        if held is None:
            return error
        return None if held.contains(grant) else AccessDenied

    def check_remove_member(self, actor: Actor, troop: str, member: str) -> ErrorClass:
        """Removing a member: MANAGE on the whole troop; the member is there."""
        error, held = self._manager(actor, troop)
        if held is None:
            return error
        return None if troop in self.members.get(member, {}) else NotFound


def expected_verify(
    model: Model, tok: MToken, troop: str, perms: int, key: str | None
) -> ErrorClass:
    """What verify must answer for a live token's current value."""
    grant = model.grants_of(tok).get(troop)
    return None if grant is not None and grant.allows(perms, key) else AccessDenied


def probes(grant: MGrant | None) -> Iterator[tuple[int, str | None]]:
    """(permission bits, key) pairs: inside and outside the scope, odd keys,
    the empty set, every single flag and all four."""
    perms = grant.perms if grant is not None else VIEW
    for key in (*ODD_KEYS, *KEYS, "a/x/deep", "b/"):
        yield perms, key
    inside: str | None = None
    if grant is not None and not grant.whole:
        inside = min(grant.keys) if grant.keys else min(grant.prefixes) + "q"
    for bits in (0, VIEW, USE, EDIT, MANAGE, ALL):
        yield bits, inside


# -- strategies ---------------------------------------------------------------


@st.composite
def model_grants(draw: st.DrawFn) -> MGrant:
    """Random grants from small pools; about half on the whole troop."""
    perms = draw(st.integers(1, ALL))
    if draw(st.booleans()):
        return MGrant(perms, whole=True)
    keys = draw(st.frozensets(st.sampled_from(KEYS), max_size=3))
    prefixes = draw(st.frozensets(st.sampled_from(PREFIXES), max_size=2))
    if not keys and not prefixes:
        keys = frozenset([draw(st.sampled_from(KEYS))])
    return MGrant(perms, keys=keys, prefixes=prefixes)


picks = st.integers(0, 255)  # an index, taken modulo the list it picks from


def outcome(call: Callable[[], Any]) -> tuple[ErrorClass, Any]:
    """``(None, result)``, or the troopauth error's class and the error."""
    try:
        result = call()
    except TroopAuthError as exc:
        return type(exc), exc
    return None, result


def agree(expected: ErrorClass, call: Callable[[], Any], label: str = "") -> Any:
    """Run *call*; it must do what the model says. Returns its result.

    With a *label*, the outcome is counted in Hypothesis's statistics
    (``--hypothesis-show-statistics``), to see that every branch is reached.
    """
    got, result = outcome(call)
    want = "success" if expected is None else expected.__name__
    assert got is expected, f"model expects {want}, the library gave {result!r}"
    if label:
        event(label, want)
    return result


# -- the machine ---------------------------------------------------------------


class TokenLifecycle(RuleBasedStateMachine):
    """One account with 2-3 troops, a PAT, 1-3 seats and an audit log; a second
    account whose troop and token must stay out of reach."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FrozenClock()
        self.store = self.make_store()
        self.auth = TroopAuth(self.store, clock=self.clock)
        self.model: Model
        self.actors: list[Actor] = []

    def make_store(self) -> MemoryStore | SQLiteStore:
        """The store under test."""
        return MemoryStore()

    def teardown(self) -> None:
        """No audit event holds a token value; close the store."""
        try:
            if hasattr(self, "model"):
                self._no_value_in_audit_logs()
        finally:
            self.store.close()

    def _no_value_in_audit_logs(self) -> None:
        values = [
            v for t in self.model.tokens.values() for v in (t.value, *t.old_values)
        ]
        logs = [self.auth.audit_log(t) for t in self.model.troops]
        logs.append(self.auth.account_audit_log(self.account))
        text = repr(logs)
        assert not any(v in text for v in values)

    # -- setup -----------------------------------------------------------------

    @initialize(troops=st.integers(2, 3), seats=st.integers(1, 3), first=model_grants())
    def setup(self, troops: int, seats: int, first: MGrant) -> None:
        """The account, its troops, PAT and a first token; the foreign account."""
        self.account = self.auth.create_account(seats=seats, audit_log=True).id
        self.model = Model(
            [self.auth.create_troop(self.account, f"t{i}").id for i in range(troops)],
            seats,
            self.clock,
        )
        self._new_pat()
        other = self.auth.create_account(seats=1).id
        self.foreign_troop = self.auth.create_troop(other, "elsewhere").id
        self.foreign = self.auth.authenticate(
            self.auth.issue_personal_token(other).value
        )
        self.foreign_token = self.auth.issue_token(
            self.foreign, self.foreign_troop, Grant.full()
        ).token_id
        self.issue(a=0, t=0, grant=first, expires_in=None)

    def _new_pat(self) -> None:
        issued = self.auth.issue_personal_token(self.account)
        old = self.model.tokens.get(self.model.pat_id)
        if old is not None:
            old.revoked = True
        self.model.tokens[issued.token_id] = MToken(issued.token_id, True, issued.value)
        self.model.pat_id = issued.token_id
        self.model.events[None] += 1
        self.pat_actor = len(self.actors)
        self._authenticate(issued.token_id, issued.value)

    def _authenticate(self, token_id: str, value: str) -> None:
        principal = self.auth.authenticate(value)
        tok = self.model.tokens[token_id]
        assert principal.token_id == token_id
        assert principal.account_id == self.account
        assert principal.kind is (Kind.PERSONAL if tok.personal else Kind.TROOP)
        self.actors.append(Actor(principal, token_id, tok.generation))

    # -- picking -------------------------------------------------------------------

    def actor(self, i: int) -> Actor:
        """The PAT a third of the time, a live actor another third, else any
        principal obtained so far, dead ones included."""
        if i % 3 == 0:
            return self.actors[self.pat_actor]
        live = [a for a in self.actors if self.model.held(a) is not None]
        pool = live if i % 3 == 1 and live else self.actors
        return pool[i // 3 % len(pool)]

    def troop(self, i: int, near: dict[str, MGrant] | None = None) -> str:
        """A troop of the account, now and then a foreign or missing one; half
        the time one of *near* (the troops a token or member holds a grant in)."""
        if near and i % 2 == 0:
            return sorted(near)[i // 2 % len(near)]
        choices = self.model.troops * 4 + [self.foreign_troop, "troop_missing"]
        return choices[i // 2 % len(choices)]

    def token(self, i: int, *, unattached: bool = False) -> str:
        """A live troop token two times in three (with *unattached*, one
        attached nowhere if there is one); else any token id of the account
        (PATs too), a foreign or a missing one."""
        live = [t for t in self.model.live() if not t.personal]
        if unattached and any(not t.grants for t in live):
            live = [t for t in live if not t.grants]
        if i % 3 != 2 and live:
            return live[i // 3 % len(live)].token_id
        choices = [*self.model.tokens, self.foreign_token, "tok_missing"]
        return choices[i // 3 % len(choices)]

    def real_held(self, actor: Actor, troop: str) -> Grant | None:
        """The actor's grant in *troop* as the library shows it (members: model)."""
        if actor.principal.kind is Kind.PERSONAL:
            return Grant.full()
        if actor.member_id is not None:
            mine = self.model.members.get(actor.member_id, {}).get(troop)
            return None if mine is None else mine.real()
        for info in self.auth.tokens(troop):
            if info.token_id == actor.token_id:
                return info.grants[troop]
        return None

    # -- rules -----------------------------------------------------------------------

    @rule(
        a=picks,
        t=picks,
        grant=model_grants(),
        expires_in=st.none() | st.integers(-60, 7200),
    )
    def issue(self, a: int, t: int, grant: MGrant, expires_in: int | None) -> None:
        """Issue a token, sometimes expiring, by any actor with any grant."""
        actor, troop = self.actor(a), self.troop(t)
        expires_at = None
        if expires_in is not None:
            expires_at = self.clock.now + timedelta(seconds=expires_in)
        expected = self.model.check_issue(actor, troop, grant, expires_at)
        held = self.real_held(actor, troop) if expected is None else None
        issued = agree(
            expected,
            lambda: self.auth.issue_token(
                actor.principal,
                troop,
                grant.real(),
                name=f"n{len(self.model.tokens)}",
                expires_at=expires_at,
            ),
            "issue",
        )
        if expected is not None:
            return
        assert held is not None
        assert held.contains(grant.real())
        expires_at = self.model.policy_expiry(expires_at)
        assert self.auth.token(issued.token_id).expires_at == expires_at
        self.model.tokens[issued.token_id] = MToken(
            issued.token_id, False, issued.value, {troop: grant}, expires_at
        )
        self.model.events[troop] += 1
        self._authenticate(issued.token_id, issued.value)

    @rule(a=picks, k=picks, t=picks, grant=model_grants())
    def attach(self, a: int, k: int, t: int, grant: MGrant) -> None:
        """Attach (or re-attach) a token to a troop."""
        token_id = self.token(k, unattached=t % 5 == 0)
        actor, troop = self.actor(a), self.troop(t)
        expected = self.model.check_attach(actor, token_id, troop, grant)
        held = self.real_held(actor, troop) if expected is None else None
        info = agree(
            expected,
            lambda: self.auth.attach(actor.principal, token_id, troop, grant.real()),
            "attach",
        )
        if expected is not None:
            return
        assert held is not None
        assert held.contains(grant.real())
        assert info.grants[troop] == grant.real()
        self.model.tokens[token_id].grants[troop] = grant
        self.model.events[troop] += 1

    @rule(a=picks, k=picks, t=picks)
    def detach(self, a: int, k: int, t: int) -> None:
        """Detach a token from a troop."""
        actor, token_id = self.actor(a), self.token(k)
        tok = self.model.tokens.get(token_id)
        troop = self.troop(t, tok.grants if tok is not None else None)
        expected = self.model.check_detach(actor, token_id, troop)
        info = agree(
            expected,
            lambda: self.auth.detach(actor.principal, token_id, troop),
            "detach",
        )
        if expected is None:
            assert troop not in info.grants
            del self.model.tokens[token_id].grants[troop]
            self.model.events[troop] += 1

    @rule(a=picks, k=picks, overlap=st.sampled_from([0, 0, 30, 3600]))
    def rotate(self, a: int, k: int, overlap: int) -> None:
        """Rotate a token's secret; the old value dies, or with an overlap
        keeps working that many seconds (a value kept before dies now)."""
        actor, token_id = self.actor(a), self.token(k)
        expected = self.model.check_rotate(actor, token_id)
        window = timedelta(seconds=overlap)
        issued = agree(
            expected,
            lambda: self.auth.rotate(actor.principal, token_id, overlap=window),
            "rotate",
        )
        if expected is not None:
            return
        tok = self.model.tokens[token_id]
        assert issued.token_id == token_id
        assert issued.value != tok.value
        held = self.model.held(actor)
        assert held is not None
        assert all(held[t].contains(g) for t, g in tok.grants.items())
        tok.old_values.append(tok.value)
        tok.kept = (tok.value, self.model.now + window) if overlap else None
        tok.value = issued.value
        tok.generation += 1
        self.model.log_change(tok)
        self._authenticate(token_id, issued.value)

    @rule(a=picks, k=picks)
    def revoke(self, a: int, k: int) -> None:
        """Revoke a token (a revoked one again: a no-op)."""
        actor, token_id = self.actor(a), self.token(k)
        expected = self.model.check_revoke(actor, token_id)
        agree(expected, lambda: self.auth.revoke(actor.principal, token_id), "revoke")
        tok = self.model.tokens.get(token_id)
        if expected is None and tok is not None and not tok.revoked:
            self.model.log_change(tok)
            tok.revoked = True
            tok.grants = {}

    @rule(a=picks, t=picks, member=st.sampled_from(MEMBERS), grant=model_grants())
    def add_member(self, a: int, t: int, member: str, grant: MGrant) -> None:
        """Give a member a grant in a troop."""
        actor, troop = self.actor(a), self.troop(t)
        expected = self.model.check_add_member(actor, troop, grant)
        held = self.real_held(actor, troop) if expected is None else None
        agree(
            expected,
            lambda: self.auth.add_member(actor.principal, troop, member, grant.real()),
            "add_member",
        )
        if expected is None:
            assert held is not None
            assert held.contains(grant.real())
            self.model.members.setdefault(member, {})[troop] = grant
            self.model.events[troop] += 1

    @rule(a=picks, t=picks, m=picks)
    def remove_member(self, a: int, t: int, m: int) -> None:
        """Take a member's grant in a troop away."""
        holders = sorted(k for k, v in self.model.members.items() if v)
        if m % 2 == 0 and holders:
            member = holders[m // 2 % len(holders)]
        else:
            member = MEMBERS[m // 2 % len(MEMBERS)]
        actor, troop = self.actor(a), self.troop(t, self.model.members.get(member))
        expected = self.model.check_remove_member(actor, troop, member)
        agree(
            expected,
            lambda: self.auth.remove_member(actor.principal, troop, member),
            "remove_member",
        )
        if expected is None:
            del self.model.members[member][troop]
            self.model.events[troop] += 1

    @rule(member=st.sampled_from(MEMBERS))
    def act_as_member(self, member: str) -> None:
        """A member holding a grant somewhere becomes an actor; others: NotFound."""
        expected = None if self.model.members.get(member) else NotFound
        principal = agree(
            expected, lambda: self.auth.member(self.account, member), "member"
        )
        if expected is None:
            assert principal.kind is Kind.MEMBER
            assert principal.member_id == member
            self.actors.append(Actor(principal, member_id=member))

    @rule(t=picks, k=picks, grant=model_grants())
    def foreign_actor_reaches_nothing(self, t: int, k: int, grant: MGrant) -> None:
        """Another account's PAT finds none of this account's troops or tokens."""
        troop, token_id = self.model.troops[t % len(self.model.troops)], self.token(k)
        if token_id == self.foreign_token:
            token_id = self.model.pat_id
        calls: list[Callable[[], object]] = [
            lambda: self.auth.issue_token(self.foreign, troop, grant.real()),
            lambda: self.auth.attach(self.foreign, token_id, troop, grant.real()),
            lambda: self.auth.detach(self.foreign, token_id, troop),
            lambda: self.auth.rotate(self.foreign, token_id),
            lambda: self.auth.revoke(self.foreign, token_id),
            lambda: self.auth.add_member(self.foreign, troop, "alice", grant.real()),
            lambda: self.auth.remove_member(self.foreign, troop, "alice"),
        ]
        for call in calls:
            agree(NotFound, call)

    @rule(
        lifetime=st.sampled_from([None, 60, 3600]),
        require=st.booleans(),
        keep=st.sampled_from(["lifetime", "require", "neither", "both"]),
    )
    def set_policy(self, lifetime: int | None, require: bool, keep: str) -> None:
        """Change the token policy; a keyword left out keeps its value."""
        changes: dict[str, Any] = {}
        if keep in ("require", "neither"):
            changes["max_token_lifetime"] = (
                None if lifetime is None else timedelta(seconds=lifetime)
            )
        if keep in ("lifetime", "neither"):
            changes["require_expiry"] = require
        account = self.auth.set_policy(self.account, **changes)
        if "max_token_lifetime" in changes:
            self.model.max_lifetime = changes["max_token_lifetime"]
        if "require_expiry" in changes:
            self.model.require_expiry = require
        assert account.max_token_lifetime == self.model.max_lifetime
        assert account.require_expiry is self.model.require_expiry

    @rule(k=picks, which=st.sampled_from(["current", "old", "garbage"]))
    def report_leak(self, k: int, which: str) -> None:
        """Report a value leaked: its live token (a PAT too) dies for good, its
        seat is freed; a dead, rotated-away or unknown value changes nothing."""
        tokens = list(self.model.tokens.values())
        tok = tokens[k % len(tokens)]
        if which == "current":
            value = tok.value
        elif which == "old" and tok.old_values:
            value = tok.old_values[k % len(tok.old_values)]
        else:
            value = "cpt_pat_" + "0" * 36
        expected = which != "garbage" and tok.works(value, self.model.now)
        assert self.auth.report_leak(value) is expected
        if expected:
            if tok.personal:
                self.model.events[None] += 1  # a PAT's report: the account log
            else:
                self.model.log_change(tok)
            tok.revoked = True
            tok.grants = {}

    @rule()
    def reissue_pat(self) -> None:
        """Issue the PAT again: the old one dies at once."""
        self._new_pat()

    @rule(seconds=st.integers(0, 3600))
    def advance(self, seconds: int) -> None:
        """Time passes."""
        self.clock.advance(seconds=seconds)

    def _expiring(self) -> list[MToken]:
        return [
            t
            for t in self.model.tokens.values()
            if t.expires_at is not None and t.expires_at > self.clock.now
        ]

    @precondition(lambda self: bool(self._expiring()))
    @rule(k=picks, early=st.booleans())
    def advance_to_expiry(self, k: int, early: bool) -> None:
        """Time reaches a token's expiry exactly (or one microsecond before)."""
        expiring = self._expiring()
        target = expiring[k % len(expiring)].expires_at
        assert target is not None
        self.clock.now = max(
            self.clock.now, target - timedelta(microseconds=1 if early else 0)
        )

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def seats_match_live_seated_tokens(self) -> None:
        """seats() counts exactly the live troop tokens attached somewhere."""
        pool = self.auth.seats(self.account)
        assert pool.capacity == self.model.capacity
        assert pool.used == self.model.used()
        assert 0 <= pool.used <= pool.capacity
        assert pool.free == pool.capacity - pool.used

    @invariant()
    def listings_match(self) -> None:
        """tokens(troop) lists the attached, unrevoked troop tokens and grants."""
        for troop in self.model.troops:
            listed = {i.token_id: dict(i.grants) for i in self.auth.tokens(troop)}
            expected = {
                t.token_id: {k: g.real() for k, g in t.grants.items()}
                for t in self.model.tokens.values()
                if not t.personal and not t.revoked and troop in t.grants
            }
            assert listed == expected

    @invariant()
    def dead_values_are_invalid(self) -> None:
        """Rotated-out, revoked, expired and replaced values: InvalidToken."""
        troop = self.model.troops[0]
        for tok in self.model.tokens.values():
            values = [*tok.old_values, tok.value]
            for value in (v for v in values if not tok.works(v, self.clock.now)):
                got, _ = outcome(
                    partial(self.auth.verify, value, troop, Permission.VIEW)
                )
                assert got is InvalidToken
                got, _ = outcome(partial(self.auth.authenticate, value))
                assert got is InvalidToken

    @invariant()
    def expiring_soon(self) -> None:
        """expiring(within an hour) lists the live seated troop tokens that
        expire within the hour, soonest first."""
        now, hour = self.model.now, timedelta(hours=1)
        expected = sorted(
            (t.expires_at, t.token_id)
            for t in self.model.tokens.values()
            if t.seated(now)
            and t.expires_at is not None
            and now < t.expires_at <= now + hour
        )
        got = [
            (t.expires_at, t.token_id) for t in self.auth.expiring(self.account, hour)
        ]
        assert got == expected

    @invariant()
    def live_values_verify_as_granted(self) -> None:
        """Each live value verifies exactly as its grants say, nowhere else."""
        for tok in self.model.live():
            grants = self.model.grants_of(tok)
            for troop in self.model.troops:
                for bits, key in probes(grants.get(troop)):
                    expected = expected_verify(self.model, tok, troop, bits, key)
                    principal = agree(
                        expected,
                        partial(
                            self.auth.verify, tok.value, troop, Permission(bits), key
                        ),
                    )
                    if expected is None:
                        assert principal.token_id == tok.token_id
            for troop in (self.foreign_troop, "troop_missing"):
                agree(
                    AccessDenied,
                    partial(self.auth.verify, tok.value, troop, Permission.VIEW),
                )

    @invariant()
    def members_authorized_as_granted(self) -> None:
        """A member principal is authorized exactly as the member's grants say."""
        for member, grants in self.model.members.items():
            principal = Principal(Kind.MEMBER, self.account, member_id=member)
            for troop in self.model.troops:
                grant = grants.get(troop)
                for bits, key in probes(grant):
                    ok = grant is not None and grant.allows(bits, key)
                    agree(
                        None if ok else AccessDenied,
                        partial(
                            self.auth.authorize, principal, troop, Permission(bits), key
                        ),
                    )

    @invariant()
    def audit_logs_intact_and_complete(self) -> None:
        """Every log verifies and holds one event per change, none for refusals."""
        for troop in self.model.troops:
            assert self.auth.check_audit_log(troop) is None
            assert len(self.auth.audit_log(troop)) == self.model.events[troop]
        assert self.auth.check_account_audit_log(self.account) is None
        account_log = self.auth.account_audit_log(self.account)
        assert len(account_log) == self.model.events[None]


class SQLiteTokenLifecycle(TokenLifecycle):
    """The same machine over a SQLite file."""

    def make_store(self) -> MemoryStore | SQLiteStore:
        """A SQLite file in a fresh temporary directory."""
        self.tmpdir = Path(tempfile.mkdtemp(prefix="troopauth-stateful-"))
        return SQLiteStore(self.tmpdir / "troopauth.db")

    def teardown(self) -> None:
        """Close the store and remove its directory."""
        try:
            super().teardown()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


#: One schema for every PostgreSQL example of this run (each example works in
#: accounts of its own), dropped by the module fixture below.
_PG_SCHEMA = f"troopauth_stateful_{secrets.token_hex(4)}"


class PostgresTokenLifecycle(TokenLifecycle):
    """The same machine over PostgreSQL (skips outside CI without a server)."""

    def make_store(self) -> Any:
        """A PostgresStore on this run's schema."""
        from troopauth.postgres import PostgresStore

        return PostgresStore(require_postgres(), schema=_PG_SCHEMA, max_size=2)


@pytest.fixture(scope="module", autouse=True)
def _drop_stateful_schema() -> Iterator[None]:
    """Drop the PostgreSQL machine's schema once the module is done."""
    yield
    if postgres_unreachable() is None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(require_postgres(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(_PG_SCHEMA)
                )
            )


_EXAMPLES = settings().max_examples  # the loaded profile's (settings.default)

TestLifecycleOnMemory = TokenLifecycle.TestCase
TestLifecycleOnMemory.__doc__ = (
    "The token lifecycle agrees with the model on MemoryStore."
)
TestLifecycleOnMemory.settings = settings(
    max_examples=_EXAMPLES, stateful_step_count=40
)

TestLifecycleOnSQLite = SQLiteTokenLifecycle.TestCase
TestLifecycleOnSQLite.__doc__ = (
    "The token lifecycle agrees with the model on SQLiteStore."
)
TestLifecycleOnSQLite.settings = settings(
    max_examples=max(5, _EXAMPLES // 6), stateful_step_count=25
)

TestLifecycleOnPostgres = PostgresTokenLifecycle.TestCase
TestLifecycleOnPostgres.__doc__ = (
    "The token lifecycle agrees with the model on PostgresStore."
)
TestLifecycleOnPostgres.settings = settings(
    max_examples=max(5, _EXAMPLES // 8), stateful_step_count=25
)
