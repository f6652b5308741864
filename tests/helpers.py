"""Builders shared by the rule tests: an account with troops and its PAT,
tokens with their principals, and a snapshot of everything a refused call
must leave alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from troopauth import (
    Account,
    Grant,
    IssuedToken,
    Permission,
    Principal,
    Troop,
    TroopAuth,
    TroopAuthError,
)


def grant(permission: str, scope: str = "*") -> Grant:
    """A grant from text: ``grant("view,edit", "key:deploy")``."""
    return Grant.parse(permission, scope)


@dataclass(frozen=True)
class Setup:
    """An account, its troops, its PAT and the PAT's principal."""

    auth: TroopAuth
    account: Account
    troops: tuple[Troop, ...]
    pat: IssuedToken
    owner: Principal

    @property
    def tid(self) -> str:
        """The first troop's id."""
        return self.troops[0].id

    def troop_ids(self) -> list[str]:
        """Every troop's id, in creation order."""
        return [t.id for t in self.troops]


def make_account(
    auth: TroopAuth, *, seats: int = 5, audit_log: bool = True, troops: int = 1
) -> Setup:
    """A fresh account with *troops* troops and a personal access token."""
    account = auth.create_account(seats=seats, audit_log=audit_log)
    made = tuple(auth.create_troop(account.id, f"troop-{i}") for i in range(troops))
    pat = auth.issue_personal_token(account.id)
    return Setup(auth, account, made, pat, auth.authenticate(pat.value))


def issue(
    auth: TroopAuth, actor: Principal, troop_id: str, given: Grant, **kwargs: Any
) -> tuple[IssuedToken, Principal]:
    """Issue a troop token and authenticate it."""
    issued = auth.issue_token(actor, troop_id, given, **kwargs)
    return issued, auth.authenticate(issued.value)


def member(
    auth: TroopAuth, actor: Principal, troop_id: str, member_id: str, given: Grant
) -> Principal:
    """Add a member with *given* in a troop and return the member's principal."""
    auth.add_member(actor, troop_id, member_id, given)
    return auth.member(actor.account_id, member_id)


def outcome(call: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """``"ok"`` if the call returns, else the name of the troopauth error."""
    try:
        call(*args, **kwargs)
    except TroopAuthError as exc:
        return type(exc).__name__
    return "ok"


#: (permission, key) pairs probed by :func:`snapshot` for each value and troop.
PROBES: tuple[tuple[Permission, str | None], ...] = (
    (Permission.VIEW, None),
    (Permission.VIEW, "deploy"),
    (Permission.EDIT, "deploy"),
    (Permission.MANAGE, None),
)


def snapshot(
    auth: TroopAuth,
    setups: Iterable[Setup],
    values: Iterable[str] = (),
    members: Iterable[str] = (),
) -> dict[str, object]:
    """Everything a refused call must leave unchanged, in comparable form."""
    setups = list(setups)
    values = list(values)
    troop_ids = [t for s in setups for t in s.troop_ids()]
    state: dict[str, object] = {}
    for s in setups:
        acct = s.account.id
        state[f"seats:{acct}"] = auth.seats(acct)
        state[f"account-log:{acct}"] = auth.account_audit_log(acct)
        state[f"members:{acct}"] = [outcome(auth.member, acct, m) for m in members]
    for tid in troop_ids:
        state[f"tokens:{tid}"] = auth.tokens(tid)
        state[f"log:{tid}"] = auth.audit_log(tid)
    state["verify"] = [
        outcome(auth.verify, v, tid, p, key)
        for v in values
        for tid in troop_ids
        for p, key in PROBES
    ]
    return state
