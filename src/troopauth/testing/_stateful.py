"""The differential state machine: the adapter and a MemoryStore, driven with
the same random operations, must agree on everything observable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar

import attrs
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from ..auth import TroopAuth
from ..errors import TroopAuthError
from ..grant import Grant
from ..memory import MemoryStore
from ..models import Principal
from ..permission import Permission
from ..scope import Scope
from ..store import Store
from ._helpers import FrozenClock, KitBase, Opener, Recorder, check_records

#: The steps of one example when the class does not say otherwise.
DEFAULT_STEPS = 30


class StatefulTests(KitBase):
    """The adapter against MemoryStore, by Hypothesis."""

    #: How many examples the state machine runs; ``None``: a tenth of the
    #: Hypothesis profile's ``max_examples``, at least 5.
    state_machine_examples: ClassVar[int | None] = None
    #: How many steps (operations) each example runs at most.
    state_machine_steps: ClassVar[int] = DEFAULT_STEPS
    #: ``False`` skips Hypothesis's shrink (and explain) phases: a failure is
    #: reported as found, long, at once, instead of after minutes spent
    #: shrinking it to the shortest program. The examples run are the same.
    state_machine_shrink: ClassVar[bool] = True

    def test_matches_memory_store(self, opener: Opener) -> None:
        """Random operations on the adapter and on MemoryStore give the same
        observable results (outcomes, verify and authorize answers, members,
        listings, seats, logs), and every record written reads back whole."""
        base = settings()
        examples = self.state_machine_examples or max(5, base.max_examples // 10)
        phases = base.phases
        if not self.state_machine_shrink:
            phases = tuple(p for p in phases if p not in (Phase.shrink, Phase.explain))
        # Every example works in fresh accounts, so one store serves them all.
        machine = type("Differential", (Differential,), {"store": opener.main})
        run_state_machine_as_test(
            machine,
            settings=settings(
                base,
                max_examples=examples,
                stateful_step_count=self.state_machine_steps,
                deadline=None,
                phases=phases,
            ),
        )


_KEYS = ("deploy", "prod/db", "prod/api", "other")
_MEMBERS = ("alice", "bob")
_SCOPES = [
    Scope.whole_troop(),
    Scope.parse("key:deploy"),
    Scope.parse("key:prod/*"),
    Scope.parse("key:deploy,key:prod/*"),
]
_GRANTS = st.builds(Grant, st.integers(1, 15).map(Permission), st.sampled_from(_SCOPES))
#: What the invariants ask of every member: (permission, key).
_ASKS = [
    (Permission.VIEW, None),
    (Permission.MANAGE, None),
    (Permission.EDIT, "deploy"),
    (Permission.VIEW, "prod/db"),
]


@attrs.define
class _Twin:
    """One token as known to both sides: ids and current values."""

    ids: tuple[str, str]
    values: tuple[str, str]
    old: list[tuple[str, str]] = attrs.Factory(list)


class Differential(RuleBasedStateMachine):
    """The adapter and a MemoryStore, driven in lockstep."""

    tokens = Bundle("tokens")
    #: Set on a subclass made per test: the adapter's store.
    store: ClassVar[Store]

    def __init__(self) -> None:
        super().__init__()
        self.recorder = Recorder(self.store)
        self.clock = FrozenClock()
        self.sides = (
            TroopAuth(self.recorder, clock=self.clock),
            TroopAuth(MemoryStore(), clock=self.clock),
        )
        accounts = [a.create_account(seats=3, audit_log=True) for a in self.sides]
        self.accounts = tuple(a.id for a in accounts)
        self.troops: list[tuple[str, str]] = []
        for name in ("one", "two"):
            pair = [
                a.create_troop(acct, name).id
                for a, acct in zip(self.sides, self.accounts, strict=True)
            ]
            self.troops.append((pair[0], pair[1]))
        pats = [
            a.issue_personal_token(acct)
            for a, acct in zip(self.sides, self.accounts, strict=True)
        ]
        self.owners = tuple(
            a.authenticate(p.value) for a, p in zip(self.sides, pats, strict=True)
        )
        self.twins: list[_Twin] = []

    def _both(self, call: Callable[[TroopAuth, int], Any]) -> tuple[str, Any, Any]:
        """Run *call* on both sides; both must succeed or fail alike."""
        got: list[tuple[str, Any]] = []
        for i, auth in enumerate(self.sides):
            try:
                got.append(("ok", call(auth, i)))
            except TroopAuthError as exc:
                got.append((type(exc).__name__, None))
        assert got[0][0] == got[1][0], f"adapter: {got[0][0]}, MemoryStore: {got[1][0]}"
        return got[0][0], got[0][1], got[1][1]

    def _member(self, auth: TroopAuth, i: int, member: str) -> Principal:
        return auth.member(self.accounts[i], member)

    # -- tokens, managed by the owner -------------------------------------------

    @rule(
        target=tokens,
        t=st.integers(0, 1),
        grant=_GRANTS,
        expires=st.sampled_from([None, 30, 90]),
    )
    def issue(self, t: int, grant: Grant, expires: int | None) -> Any:
        when = None if expires is None else self.clock.now + timedelta(seconds=expires)
        kind, a, b = self._both(
            lambda auth, i: auth.issue_token(
                self.owners[i], self.troops[t][i], grant, name="t", expires_at=when
            )
        )
        if kind != "ok":
            return multiple()
        twin = _Twin((a.token_id, b.token_id), (a.value, b.value))
        self.twins.append(twin)
        return twin

    @rule(twin=tokens, t=st.integers(0, 1), grant=_GRANTS)
    def attach(self, twin: _Twin, t: int, grant: Grant) -> None:
        self._both(
            lambda auth, i: auth.attach(
                self.owners[i], twin.ids[i], self.troops[t][i], grant
            ).grants[self.troops[t][i]]
        )

    @rule(twin=tokens, t=st.integers(0, 1))
    def detach(self, twin: _Twin, t: int) -> None:
        self._both(
            lambda auth, i: auth.detach(self.owners[i], twin.ids[i], self.troops[t][i])
        )

    @rule(twin=tokens, overlap=st.sampled_from([0, 0, 30, 90]))
    def rotate(self, twin: _Twin, overlap: int) -> None:
        window = timedelta(seconds=overlap)
        kind, a, b = self._both(
            lambda auth, i: auth.rotate(self.owners[i], twin.ids[i], overlap=window)
        )
        if kind == "ok":
            twin.old.append(twin.values)
            twin.values = (a.value, b.value)

    @rule(twin=tokens, old=st.booleans())
    def report_leak(self, twin: _Twin, old: bool) -> None:
        """Both sides answer a leak report (of the current or the last old
        value) alike, and agree afterwards (the invariants)."""
        values = twin.old[-1] if old and twin.old else twin.values
        _, a, b = self._both(lambda auth, i: auth.report_leak(values[i]))
        assert a == b, f"adapter: {a}, MemoryStore: {b}"

    @rule(twin=tokens)
    def revoke(self, twin: _Twin) -> None:
        self._both(lambda auth, i: auth.revoke(self.owners[i], twin.ids[i]))

    @rule(seconds=st.sampled_from([1, 29, 30, 60]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # -- members ------------------------------------------------------------------

    @rule(member=st.sampled_from(_MEMBERS), t=st.integers(0, 1), grant=_GRANTS)
    def add_member(self, member: str, t: int, grant: Grant) -> None:
        self._both(
            lambda auth, i: auth.add_member(
                self.owners[i], self.troops[t][i], member, grant
            )
        )

    @rule(member=st.sampled_from(_MEMBERS), t=st.integers(0, 1))
    def remove_member(self, member: str, t: int) -> None:
        self._both(
            lambda auth, i: auth.remove_member(
                self.owners[i], self.troops[t][i], member
            )
        )

    @rule(
        actor=st.sampled_from(_MEMBERS),
        member=st.sampled_from(_MEMBERS),
        t=st.integers(0, 1),
        grant=_GRANTS,
    )
    def member_adds_member(self, actor: str, member: str, t: int, grant: Grant) -> None:
        self._both(
            lambda auth, i: auth.add_member(
                self._member(auth, i, actor), self.troops[t][i], member, grant
            )
        )

    @rule(
        target=tokens,
        actor=st.sampled_from(_MEMBERS),
        t=st.integers(0, 1),
        grant=_GRANTS,
    )
    def member_issues(self, actor: str, t: int, grant: Grant) -> Any:
        kind, a, b = self._both(
            lambda auth, i: auth.issue_token(
                self._member(auth, i, actor), self.troops[t][i], grant, name="m"
            )
        )
        if kind != "ok":
            return multiple()
        twin = _Twin((a.token_id, b.token_id), (a.value, b.value))
        self.twins.append(twin)
        return twin

    @rule(actor=st.sampled_from(_MEMBERS), twin=tokens, revoke=st.booleans())
    def member_manages(self, actor: str, twin: _Twin, revoke: bool) -> None:
        def call(auth: TroopAuth, i: int) -> Any:
            who = self._member(auth, i, actor)
            if revoke:
                return auth.revoke(who, twin.ids[i])
            return auth.rotate(who, twin.ids[i])

        kind, a, b = self._both(call)
        if kind == "ok" and not revoke:
            twin.old.append(twin.values)
            twin.values = (a.value, b.value)

    # -- what must agree after every step --------------------------------------------

    @invariant()
    def verify_answers_agree(self) -> None:
        for twin in self.twins:
            for values in [twin.values, *twin.old[-1:]]:
                for t in range(2):
                    for key in (None, *_KEYS[:3]):
                        self._both(self._verifier(values, self.troops[t], key))

    @staticmethod
    def _verifier(
        values: tuple[str, str], troops: tuple[str, str], key: str | None
    ) -> Callable[[TroopAuth, int], Any]:
        def verify(auth: TroopAuth, i: int) -> Any:
            return auth.verify(values[i], troops[i], Permission.EDIT, key=key)

        return verify

    @invariant()
    def members_agree(self) -> None:
        for member in _MEMBERS:
            kind, _, _ = self._both(self._member_principal(member))
            if kind != "ok":
                continue
            for t in range(2):
                for permission, key in _ASKS:
                    self._both(
                        self._authorizer(member, self.troops[t], permission, key)
                    )

    def _member_principal(self, member: str) -> Callable[[TroopAuth, int], Any]:
        def principal(auth: TroopAuth, i: int) -> Any:
            return self._member(auth, i, member)

        return principal

    def _authorizer(
        self,
        member: str,
        troops: tuple[str, str],
        permission: Permission,
        key: str | None,
    ) -> Callable[[TroopAuth, int], Any]:
        def authorize(auth: TroopAuth, i: int) -> Any:
            principal = self._member(auth, i, member)
            return auth.authorize(principal, troops[i], permission, key=key)

        return authorize

    @invariant()
    def listings_seats_and_logs_agree(self) -> None:
        a, b = self.sides
        assert a.seats(self.accounts[0]) == b.seats(self.accounts[1])
        index = {tw.ids[1]: tw.ids[0] for tw in self.twins}
        for pair in self.troops:
            listed_a = {
                (
                    t.token_id,
                    tuple(sorted((k == pair[0], str(g)) for k, g in t.grants.items())),
                )
                for t in a.tokens(pair[0])
            }
            listed_b = {
                (
                    index[t.token_id],
                    tuple(sorted((k == pair[1], str(g)) for k, g in t.grants.items())),
                )
                for t in b.tokens(pair[1])
            }
            assert listed_a == listed_b
            log_a = [(e.action, e.grant, e.member_id) for e in a.audit_log(pair[0])]
            log_b = [(e.action, e.grant, e.member_id) for e in b.audit_log(pair[1])]
            assert log_a == log_b
            assert a.check_audit_log(pair[0]) is None

    @invariant()
    def records_read_back_whole(self) -> None:
        check_records(self.recorder)
