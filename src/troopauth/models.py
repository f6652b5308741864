"""The public value types that troopauth returns."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import attrs

from .grant import Grant

__all__ = [
    "Account",
    "AuditAction",
    "AuditEvent",
    "IssuedToken",
    "Kind",
    "Member",
    "Principal",
    "SeatPool",
    "TokenInfo",
    "Troop",
]


class Kind(enum.StrEnum):
    """What a principal authenticated as."""

    PERSONAL = "personal"
    TROOP = "troop"
    MEMBER = "member"


class AuditAction(enum.StrEnum):
    """What an audit event records."""

    ISSUE = "token.issue"
    ATTACH = "token.attach"
    DETACH = "token.detach"
    ROTATE = "token.rotate"
    REVOKE = "token.revoke"
    MEMBER_ADD = "member.add"
    MEMBER_REMOVE = "member.remove"
    PAT_ISSUE = "pat.issue"
    PAT_REPLACE = "pat.replace"
    #: A value reported leaked (``report_leak``): its token revoked for good.
    LEAK_REPORT = "token.leak_report"


@attrs.frozen
class Account:
    """An account: owns troops, one seat pool and one personal access token."""

    id: str
    seats: int
    audit_log: bool
    created_at: datetime
    #: Every troop token issued from now on expires within this (``None``: no
    #: maximum); the personal token is exempt.
    max_token_lifetime: timedelta | None = None
    #: Whether a troop token must be issued with an ``expires_at``.
    require_expiry: bool = False


@attrs.frozen
class Troop:
    """A group of keys, members and attached tokens inside one account."""

    id: str
    account_id: str
    name: str
    created_at: datetime


@attrs.frozen
class Principal:
    """Who is acting: a personal token, a troop token or a member.

    A principal stands for its credential as it is *now*: troopauth re-reads
    the credential's state on every management call and every
    :meth:`~troopauth.TroopAuth.authorize`. It is not itself a credential;
    never build one from untrusted input.
    """

    kind: Kind
    account_id: str
    token_id: str | None = None
    member_id: str | None = None
    #: Which secret of the token this principal authenticated with; rotation
    #: moves the token to the next generation and leaves this principal dead.
    generation: int = 0

    def describe(self) -> str:
        """A short non-secret label, as audit events name actors."""
        if self.kind is Kind.MEMBER:
            return f"member:{self.member_id}"
        return f"{self.kind.value}:{self.token_id}"


@attrs.frozen
class IssuedToken:
    """A newly issued (or rotated) token. ``value`` is shown this once only.

    ``value`` is the only place the plaintext ever exists: it is left out of
    ``repr()`` and ``str()``, and troopauth stores only its SHA-256 digest.
    """

    token_id: str
    value: str = attrs.field(repr=lambda _: "'<redacted>'")
    hint: str = ""
    kind: Kind = Kind.TROOP

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Pretty printers (IPython's, Hypothesis's) show the redacted
        ``repr``; left alone they print an attrs class field by field, the
        value included."""
        printer.text(repr(self))


def _frozen_grants(value: Mapping[str, Grant]) -> Mapping[str, Grant]:
    return MappingProxyType(dict(value))


@attrs.frozen
class TokenInfo:
    """What can be shown about a token: never its value."""

    token_id: str
    name: str
    hint: str
    #: troop id -> the grant the token holds there (read-only mapping).
    grants: Mapping[str, Grant] = attrs.field(converter=_frozen_grants, hash=False)
    created_at: datetime
    expires_at: datetime | None = None
    kind: Kind = Kind.TROOP
    account_id: str = ""
    #: Revoked for good (a listing of a troop never shows these; ``token()``
    #: does, since it reads a token in any state).
    revoked: bool = False
    #: When a verify or authentication with it last succeeded (to within the
    #: facade's ``last_used_interval``; ``None``: never, or not recorded).
    last_used_at: datetime | None = None


@attrs.frozen
class Member:
    """A member's grant in one troop, as :meth:`~troopauth.TroopAuth.members`
    lists it."""

    troop_id: str
    member_id: str
    grant: Grant


@attrs.frozen
class SeatPool:
    """An account's seats: ``capacity`` in all, ``used`` by live troop tokens."""

    capacity: int
    used: int

    @property
    def free(self) -> int:
        """Seats left for another troop token."""
        return self.capacity - self.used


@attrs.frozen
class AuditEvent:
    """One entry of a hash-chained audit log (a troop's or an account's).

    ``hash`` is the SHA-256 (hex) over the previous event's hash and this
    event's fields; :meth:`~troopauth.TroopAuth.check_audit_log` recomputes the
    chain. An event never holds a secret.
    """

    seq: int
    at: datetime
    troop_id: str | None
    action: AuditAction
    actor: str
    token_id: str | None
    grant: Grant | None
    hash: str
    account_id: str = ""
    member_id: str | None = None
