"""The rules: every decision troopauth makes, written once, over a
:class:`~troopauth.store.Transaction`.

These functions take the current time and fresh identifiers as arguments and
hold no state of their own; adapters only store and fetch. A function either
returns after all its writes (and audit events) or raises a
:class:`~troopauth.errors.TroopAuthError` subclass, and the caller's
transaction then commits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from hmac import compare_digest
from typing import Any

import attrs

from .audit import seal
from .errors import AccessDenied, InvalidArgument, NotFound, SeatsExhausted
from .grant import Grant, interned
from .models import (
    AuditAction,
    Kind,
    Member,
    Principal,
    SeatPool,
    TokenInfo,
    Troop,
)
from .permission import Permission
from .store import (
    NO_GRANTS as _NO_GRANTS,
)
from .store import (
    AccountRecord,
    MemberRecord,
    TokenRecord,
    Transaction,
    TroopRecord,
)

__all__ = [
    "add_member",
    "attach",
    "authorize",
    "create_account",
    "create_troop",
    "detach",
    "expiring",
    "issue_personal_token",
    "issue_token",
    "list_members",
    "list_tokens",
    "list_troops",
    "member_principal",
    "remove_member",
    "report_leak",
    "revoke",
    "rotate",
    "seat_pool",
    "set_policy",
    "set_seats",
    "token_info",
]

#: How an account-level call (no actor) is named in the audit log.
OWNER = "owner"
#: How a leak report (no actor: whoever holds the value) is named in the log.
LEAK_REPORTER = "leak-report"
_MAX_NAME = 200
_MAX_MEMBER_ID = 256
_MAX_ID = 256


# -- validation ----------------------------------------------------------


def check_text(value: object, what: str, *, max_len: int, allow_empty: bool) -> str:
    """A printable name of at most *max_len* characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidArgument(f"{what} must be at most {max_len} characters")
    if not value.isprintable():
        raise InvalidArgument(f"{what} must hold printable characters only")
    return value


def check_member_id(value: object) -> str:
    """Member ids: 1 to 256 printable characters, no whitespace."""
    text = check_text(value, "member id", max_len=_MAX_MEMBER_ID, allow_empty=False)
    if any(ch.isspace() for ch in text):
        raise InvalidArgument("member id must not hold whitespace")
    return text


#: The datetimes troopauth accepts, in UTC: what every store can hold (years
#: 1 to 9999), less a margin for the arithmetic a policy does on them (a
#: lifetime or an overlap added to the clock's time).
EARLIEST = datetime(1, 1, 1, tzinfo=UTC) + timedelta(days=366)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - timedelta(days=366)


def check_aware(value: object, what: str) -> datetime:
    """A timezone-aware datetime within the range every store can hold."""
    if not isinstance(value, datetime):
        raise InvalidArgument(f"{what} must be a datetime, not {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what} has an unusable time zone: {exc}") from None
    if offset is None:
        raise InvalidArgument(f"{what} must be timezone-aware")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc <= LATEST:
        raise InvalidArgument(
            f"{what} must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d} in UTC"
        )
    return value


def _check_grant(grant: object) -> Grant:
    if not isinstance(grant, Grant):
        raise InvalidArgument(f"grant must be a Grant, not {type(grant).__name__}")
    return grant


def check_id(value: object, what: str) -> str:
    """An identifier: 1 to 256 printable characters.

    troopauth makes ids like ``tok_`` + 22 base62 characters; anything that
    could not be one is refused before a store sees it (a store may not hold
    a NUL character, for one).
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > _MAX_ID or not value.isprintable():
        raise InvalidArgument(f"{what} must be at most {_MAX_ID} printable characters")
    return value


def check_principal(actor: object) -> Principal:
    """A `Principal` whose fields are what troopauth itself would put there."""
    if not isinstance(actor, Principal):
        raise InvalidArgument(f"actor must be a Principal, not {type(actor).__name__}")
    if not isinstance(actor.kind, Kind):
        raise InvalidArgument("a principal's kind must be a Kind")
    check_id(actor.account_id, "a principal's account id")
    if actor.kind is Kind.MEMBER:
        check_member_id(actor.member_id)
    else:
        check_id(actor.token_id, "a principal's token id")
    generation: object = actor.generation
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise InvalidArgument("a principal's generation must be a whole number")
    return actor


# -- reading -------------------------------------------------------------


def _account(tx: Transaction) -> AccountRecord:
    account = tx.get_account()
    if account is None:
        raise NotFound(f"no account {tx.account_id!r}")
    return account


def _troop(tx: Transaction, troop_id: object) -> TroopRecord:
    troop = tx.get_troop(check_id(troop_id, "troop id"))
    if troop is None or troop.account_id != tx.account_id:
        raise NotFound(f"no troop {troop_id!r} in this account")
    return troop


def _token(tx: Transaction, token_id: object) -> TokenRecord:
    token = tx.get_token(check_id(token_id, "token id"))
    if token is None or token.account_id != tx.account_id:
        raise NotFound(f"no token {token_id!r} in this account")
    return token


def is_expired(token: TokenRecord, now: datetime) -> bool:
    """Expiry rule: a token is refused once ``now >= expires_at``."""
    return token.expires_at is not None and now >= token.expires_at


def _live_troop_token(tx: Transaction, token_id: object, now: datetime) -> TokenRecord:
    token = _token(tx, token_id)
    if token.kind is not Kind.TROOP:
        raise AccessDenied(
            "the personal access token can only be replaced, by issuing a new one"
        )
    if token.revoked or is_expired(token, now):
        raise NotFound(f"token {token.id!r} is revoked or expired")
    return token


def _actor_grants(tx: Transaction, actor: object, now: datetime) -> Mapping[str, Grant]:
    """What *actor* holds now, re-read inside the transaction."""
    actor = check_principal(actor)
    if actor.account_id != tx.account_id:
        raise AccessDenied("the actor belongs to another account")
    if actor.kind is Kind.MEMBER:
        member = tx.get_member(actor.member_id)  # type: ignore[arg-type]  # checked
        if member is None or member.account_id != tx.account_id:
            return _NO_GRANTS
        return member.grants
    token = tx.get_token(actor.token_id)  # type: ignore[arg-type]  # checked
    if (
        token is None
        or token.account_id != tx.account_id
        or token.kind is not actor.kind
        or token.revoked
        or token.generation != actor.generation
        or is_expired(token, now)
    ):
        raise AccessDenied("the acting credential is no longer valid")
    return token.grants


def _is_manager(grants: Mapping[str, Grant], troop_id: str) -> bool:
    grant = grants.get(troop_id)
    return (
        grant is not None
        and Permission.MANAGE in grant.permission
        and grant.scope.whole
    )


def _manager_grant(grants: Mapping[str, Grant], troop_id: str) -> Grant:
    if not _is_manager(grants, troop_id):
        raise AccessDenied(f"this needs MANAGE on the whole troop {troop_id!r}")
    return grants[troop_id]


def _no_escalation(held: Grant, given: Grant, troop_id: str) -> None:
    if not held.contains(given):
        raise AccessDenied(
            f"cannot grant {given} in troop {troop_id!r}: the actor holds {held}"
        )


# -- seats ---------------------------------------------------------------


def _reap_expired(tx: Transaction, now: datetime) -> None:
    """Free the seats of tokens that expired since the last change."""
    expired = [t for t in tx.expired_seated(now) if t.seated and is_expired(t, now)]
    if not expired:
        return
    for token in expired:
        tx.put_token(attrs.evolve(token, seated=False))
    account = _account(tx)
    tx.put_account(attrs.evolve(account, seats_used=account.seats_used - len(expired)))


def _take_seat(tx: Transaction, now: datetime) -> None:
    _reap_expired(tx, now)
    account = _account(tx)
    if account.seats_used >= account.seats:
        raise SeatsExhausted(
            f"all {account.seats} seats of account {account.id!r} are taken"
        )
    tx.put_account(attrs.evolve(account, seats_used=account.seats_used + 1))


def _free_seat(tx: Transaction) -> None:
    account = _account(tx)
    tx.put_account(attrs.evolve(account, seats_used=account.seats_used - 1))


def seat_pool(tx: Transaction, now: datetime) -> SeatPool:
    """Capacity and use, counting tokens that expired since the last change."""
    account = _account(tx)
    lapsed = sum(1 for t in tx.expired_seated(now) if t.seated and is_expired(t, now))
    return SeatPool(account.seats, account.seats_used - lapsed)


# -- audit ---------------------------------------------------------------


def _audit(
    tx: Transaction,
    grants: Mapping[str, Grant | None],
    action: AuditAction,
    actor: str,
    now: datetime,
    *,
    token_id: str | None = None,
    member_id: str | None = None,
) -> None:
    """One event in the log of each troop in *grants*, if the account keeps
    its audit log."""
    if not _account(tx).audit_log:
        return
    for troop_id in sorted(grants):
        troop = _troop(tx, troop_id)
        event = seal(
            troop.audit_head,
            troop.audit_seq + 1,
            now,
            account_id=tx.account_id,
            troop_id=troop_id,
            action=action,
            actor=actor,
            token_id=token_id,
            member_id=member_id,
            grant=grants[troop_id],
        )
        tx.append_audit(event)
        tx.put_troop(attrs.evolve(troop, audit_seq=event.seq, audit_head=event.hash))


def _audit_account(
    tx: Transaction,
    action: AuditAction,
    now: datetime,
    *,
    token_id: str,
    actor: str = OWNER,
) -> None:
    account = _account(tx)
    if not account.audit_log:
        return
    event = seal(
        account.audit_head,
        account.audit_seq + 1,
        now,
        account_id=account.id,
        troop_id=None,
        action=action,
        actor=actor,
        token_id=token_id,
    )
    tx.append_audit(event)
    tx.put_account(attrs.evolve(account, audit_seq=event.seq, audit_head=event.hash))


def _audit_change(
    tx: Transaction,
    token: TokenRecord,
    action: AuditAction,
    actor: Principal,
    now: datetime,
) -> None:
    """A rotate or revoke: one event per attached troop; for a token attached
    nowhere, one event in the account's log (so it still leaves a trace)."""
    if token.grants:
        _audit(tx, token.grants, action, actor.describe(), now, token_id=token.id)
    else:
        _audit_account(tx, action, now, token_id=token.id, actor=actor.describe())


# -- account-level calls (no actor) ---------------------------------------


#: The longest ``max_token_lifetime`` an account may set (100 years).
MAX_LIFETIME = timedelta(days=36_525)


def check_lifetime(value: object) -> timedelta | None:
    """A maximum token lifetime: ``None``, or a positive timedelta of at most
    `MAX_LIFETIME`."""
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise InvalidArgument(
            "max_token_lifetime must be a timedelta or None, "
            f"not {type(value).__name__}"
        )
    if value <= timedelta(0):
        raise InvalidArgument("max_token_lifetime must be positive")
    if value > MAX_LIFETIME:
        raise InvalidArgument("max_token_lifetime is at most 36,525 days (100 years)")
    return value


def _check_flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{what} must be True or False")
    return value


def create_account(
    tx: Transaction,
    *,
    seats: object,
    audit_log: object,
    now: datetime,
    max_token_lifetime: object = None,
    require_expiry: object = False,
) -> AccountRecord:
    """A new account with *seats* seats and its token policy."""
    if not isinstance(seats, int) or isinstance(seats, bool) or seats < 0:
        raise InvalidArgument("seats must be a whole number, 0 or more")
    audit = _check_flag(audit_log, "audit_log")
    lifetime = check_lifetime(max_token_lifetime)
    required = _check_flag(require_expiry, "require_expiry")
    if tx.get_account() is not None:
        raise InvalidArgument(f"account {tx.account_id!r} exists already")
    account = AccountRecord(
        tx.account_id,
        seats,
        audit,
        now,
        max_token_lifetime=lifetime,
        require_expiry=required,
    )
    tx.put_account(account)
    return account


#: ``set_policy``'s default for a keyword left out: keep the current value.
KEEP: Any = object()


def set_policy(
    tx: Transaction, *, max_token_lifetime: object, require_expiry: object
) -> AccountRecord:
    """Change the account's token policy; a keyword given as `KEEP` keeps its
    value. Tokens issued before keep their expiry."""
    account = _account(tx)
    lifetime = (
        account.max_token_lifetime
        if max_token_lifetime is KEEP
        else check_lifetime(max_token_lifetime)
    )
    required = (
        account.require_expiry
        if require_expiry is KEEP
        else _check_flag(require_expiry, "require_expiry")
    )
    account = attrs.evolve(
        account, max_token_lifetime=lifetime, require_expiry=required
    )
    tx.put_account(account)
    return account


def _policy_expiry(
    account: AccountRecord, expires_at: datetime | None, now: datetime
) -> datetime | None:
    """The expiry a token issued now gets under the account's policy: the one
    asked for (refused past the maximum, never clamped), else now + the
    maximum; with no maximum, ``require_expiry`` insists on one."""
    lifetime = account.max_token_lifetime
    if lifetime is not None:
        latest = now + lifetime
        if expires_at is None:
            return check_aware(latest, "now + the account's max_token_lifetime")
        if expires_at > latest:
            raise InvalidArgument(
                "expires_at lies past the account's max_token_lifetime "
                f"({lifetime}): at most {latest.isoformat(timespec='seconds')}"
            )
    elif expires_at is None and account.require_expiry:
        raise InvalidArgument("this account requires an expires_at on every token")
    return expires_at


def _within_policy(account: AccountRecord, token: TokenRecord, now: datetime) -> None:
    """Attach: a token that outlives the account's current policy (issued
    before it was set) reaches no new troop; issue a new one instead."""
    lifetime = account.max_token_lifetime
    if token.expires_at is None:
        if lifetime is not None or account.require_expiry:
            raise InvalidArgument(
                "this token never expires, and the account's policy now "
                "requires an expiry: issue a new token rather than attach this one"
            )
    elif lifetime is not None and token.expires_at > now + lifetime:
        raise InvalidArgument(
            "this token outlives the account's max_token_lifetime: issue a new "
            "token rather than attach this one"
        )


def create_troop(
    tx: Transaction, troop_id: str, name: object, now: datetime
) -> TroopRecord:
    """A new troop; the account's personal token reaches it at once."""
    account = _account(tx)
    text = check_text(name, "troop name", max_len=_MAX_NAME, allow_empty=False)
    troop = TroopRecord(troop_id, account.id, text, now)
    tx.put_troop(troop)
    if account.personal_token_id is not None:
        pat = tx.get_token(account.personal_token_id)
        if pat is not None and not pat.revoked:
            tx.put_token(attrs.evolve(pat, grants=_with(pat.grants, troop_id, _FULL)))
    return troop


def issue_personal_token(
    tx: Transaction, token_id: str, digest: bytes, hint: str, now: datetime
) -> TokenRecord:
    """The account's one personal token; an older one stops working at once."""
    account = _account(tx)
    old = (
        tx.get_token(account.personal_token_id)
        if account.personal_token_id is not None
        else None
    )
    if old is not None and not old.revoked:
        tx.put_token(_revoked(old))
    token = TokenRecord(
        id=token_id,
        account_id=account.id,
        kind=Kind.PERSONAL,
        digest=digest,
        hint=hint,
        name="personal access token",
        created_at=now,
        grants=_freeze({t.id: _FULL for t in tx.troops()}),
    )
    tx.put_token(token)
    tx.put_account(attrs.evolve(account, personal_token_id=token_id))
    action = AuditAction.PAT_ISSUE if old is None else AuditAction.PAT_REPLACE
    _audit_account(tx, action, now, token_id=token_id)
    return token


def member_principal(tx: Transaction, member_id: object) -> Principal:
    """The principal of a member who holds a grant in some troop."""
    account = _account(tx)
    member = tx.get_member(check_member_id(member_id))
    if member is None or member.account_id != account.id or not member.grants:
        raise NotFound(f"no member {member_id!r} in account {account.id!r}")
    return Principal(Kind.MEMBER, account.id, None, member.id)


# -- management calls (an actor) ------------------------------------------


def issue_token(
    tx: Transaction,
    actor: Principal,
    troop_id: str,
    grant: Grant,
    *,
    token_id: str,
    digest: bytes,
    hint: str,
    name: object,
    expires_at: object,
    now: datetime,
) -> TokenRecord:
    """A new troop token attached to *troop_id*, taking one seat."""
    grant = _check_grant(grant)
    text = check_text(name, "token name", max_len=_MAX_NAME, allow_empty=True)
    if expires_at is not None:
        expires_at = check_aware(expires_at, "expires_at")
        if expires_at <= now:
            raise InvalidArgument("expires_at must lie in the future")
    held = _actor_grants(tx, actor, now)
    troop = _troop(tx, troop_id)
    _no_escalation(_manager_grant(held, troop.id), grant, troop.id)
    expires_at = _policy_expiry(_account(tx), expires_at, now)
    _take_seat(tx, now)
    token = TokenRecord(
        id=token_id,
        account_id=tx.account_id,
        kind=Kind.TROOP,
        digest=digest,
        hint=hint,
        name=text,
        created_at=now,
        expires_at=expires_at,
        grants=_freeze({troop.id: interned(grant)}),
        seated=True,
    )
    tx.put_token(token)
    _audit(
        tx,
        {troop.id: grant},
        AuditAction.ISSUE,
        actor.describe(),
        now,
        token_id=token.id,
    )
    return token


def attach(
    tx: Transaction,
    actor: Principal,
    token_id: str,
    troop_id: str,
    grant: Grant,
    now: datetime,
) -> TokenRecord:
    """Attach a token to a troop (replacing the grant it held there)."""
    grant = _check_grant(grant)
    held = _actor_grants(tx, actor, now)
    troop = _troop(tx, troop_id)
    _no_escalation(_manager_grant(held, troop.id), grant, troop.id)
    token = _live_troop_token(tx, token_id, now)
    _within_policy(_account(tx), token, now)
    if not token.seated:
        _take_seat(tx, now)
    token = attrs.evolve(
        token, grants=_with(token.grants, troop.id, grant), seated=True
    )
    tx.put_token(token)
    _audit(
        tx,
        {troop.id: grant},
        AuditAction.ATTACH,
        actor.describe(),
        now,
        token_id=token.id,
    )
    return token


def detach(
    tx: Transaction, actor: Principal, token_id: str, troop_id: str, now: datetime
) -> TokenRecord:
    """Detach a token from a troop; the last detach frees its seat."""
    held = _actor_grants(tx, actor, now)
    troop = _troop(tx, troop_id)
    _manager_grant(held, troop.id)
    token = _live_troop_token(tx, token_id, now)
    if troop.id not in token.grants:
        raise NotFound(f"token {token.id!r} is not attached to troop {troop.id!r}")
    removed = token.grants[troop.id]
    remaining = _without(token.grants, troop.id)
    if token.seated and not remaining:
        _free_seat(tx)
    token = attrs.evolve(
        token, grants=remaining, seated=token.seated and bool(remaining)
    )
    tx.put_token(token)
    _audit(
        tx,
        {troop.id: removed},
        AuditAction.DETACH,
        actor.describe(),
        now,
        token_id=token.id,
    )
    return token


#: The longest rotation overlap: the old value may work at most this long.
MAX_OVERLAP = timedelta(days=7)


def check_overlap(value: object) -> timedelta:
    """A rotation overlap: a timedelta from zero (none) to `MAX_OVERLAP`."""
    if not isinstance(value, timedelta):
        raise InvalidArgument(
            f"overlap must be a timedelta, not {type(value).__name__}"
        )
    if value < timedelta(0):
        raise InvalidArgument("overlap must not be negative")
    if value > MAX_OVERLAP:
        raise InvalidArgument("overlap is at most 7 days")
    return value


def rotate(
    tx: Transaction,
    actor: Principal,
    token_id: str,
    digest: bytes,
    hint: str,
    now: datetime,
    overlap: object = timedelta(0),
) -> TokenRecord:
    """Swap a token's secret in place: same id, attachments, name and seat.

    With an *overlap*, the value being replaced keeps working until
    ``now + overlap`` (exclusive); a value kept from an earlier rotation dies
    now, so a token never has more than two live values.
    """
    window = check_overlap(overlap)
    held = _actor_grants(tx, actor, now)
    token = _live_troop_token(tx, token_id, now)
    if not token.grants and actor.kind is not Kind.PERSONAL:
        raise AccessDenied(
            "only the personal token can rotate a token attached nowhere"
        )
    for troop_id, grant in token.grants.items():
        _no_escalation(_manager_grant(held, troop_id), grant, troop_id)
    keep = window > timedelta(0)
    until = check_aware(now + window, "now + overlap") if keep else None
    token = attrs.evolve(
        token,
        digest=digest,
        hint=hint,
        generation=token.generation + 1,
        prev_digest=token.digest if keep else None,
        prev_expires_at=until,
    )
    tx.put_token(token)
    _audit_change(tx, token, AuditAction.ROTATE, actor, now)
    return token


def holds_value(token: TokenRecord, digest: bytes, now: datetime) -> bool:
    """Whether *digest* is the token's value now: its current one, or the one
    a rotation overlap keeps alive until ``prev_expires_at`` (exclusive)."""
    if compare_digest(token.digest, digest):
        return True
    return (
        token.prev_digest is not None
        and token.prev_expires_at is not None
        and now < token.prev_expires_at
        and compare_digest(token.prev_digest, digest)
    )


def revoke(tx: Transaction, actor: Principal, token_id: str, now: datetime) -> None:
    """Disable a token for good and free its seat; revoking twice is a no-op."""
    held = _actor_grants(tx, actor, now)
    token = _token(tx, token_id)
    if token.kind is not Kind.TROOP:
        raise AccessDenied(
            "the personal access token can only be replaced, by issuing a new one"
        )
    if token.revoked:
        return
    if token.grants:
        # Every troop: a manager of one small troop could otherwise attach any
        # token of the account and then kill it everywhere. A manager of some
        # of its troops ends its reach there by detaching it.
        if not all(_is_manager(held, troop_id) for troop_id in token.grants):
            raise AccessDenied(
                "revoking needs MANAGE on the whole troop in every troop the "
                "token is attached to (detach it from yours instead)"
            )
    elif actor.kind is not Kind.PERSONAL:
        raise AccessDenied(
            "only the personal token can revoke a token attached nowhere"
        )
    if token.seated:
        _free_seat(tx)
    tx.put_token(_revoked(token))
    _audit_change(tx, token, AuditAction.REVOKE, actor, now)


def report_leak(tx: Transaction, token_id: str, digest: bytes, now: datetime) -> bool:
    """Revoke the live token of this account whose value has *digest*.

    Whether it was live and is now revoked; a token since revoked, rotated
    away or expired changes nothing. The seat is freed, and the event (a
    leak report) goes to each troop it was attached to, or, for a personal
    token or a token attached nowhere, to the account's log.
    """
    token = tx.get_token(token_id)
    if (
        token is None
        or token.account_id != tx.account_id
        or token.revoked
        or not holds_value(token, digest, now)
        or is_expired(token, now)
    ):
        return False
    if token.seated:
        _free_seat(tx)
    tx.put_token(_revoked(token))
    if token.kind is Kind.TROOP and token.grants:
        _audit(
            tx,
            token.grants,
            AuditAction.LEAK_REPORT,
            LEAK_REPORTER,
            now,
            token_id=token.id,
        )
    else:
        _audit_account(
            tx, AuditAction.LEAK_REPORT, now, token_id=token.id, actor=LEAK_REPORTER
        )
    return True


def add_member(
    tx: Transaction,
    actor: Principal,
    troop_id: str,
    member_id: object,
    grant: Grant,
    now: datetime,
) -> None:
    """Give a member a grant in a troop (replacing the one they held there)."""
    grant = _check_grant(grant)
    mid = check_member_id(member_id)
    held = _actor_grants(tx, actor, now)
    troop = _troop(tx, troop_id)
    _no_escalation(_manager_grant(held, troop.id), grant, troop.id)
    member = tx.get_member(mid) or MemberRecord(mid, tx.account_id)
    tx.put_member(attrs.evolve(member, grants=_with(member.grants, troop.id, grant)))
    _audit(
        tx,
        {troop.id: grant},
        AuditAction.MEMBER_ADD,
        actor.describe(),
        now,
        member_id=mid,
    )


def remove_member(
    tx: Transaction, actor: Principal, troop_id: str, member_id: object, now: datetime
) -> None:
    """Take a member's grant in a troop away."""
    mid = check_member_id(member_id)
    held = _actor_grants(tx, actor, now)
    troop = _troop(tx, troop_id)
    _manager_grant(held, troop.id)
    member = tx.get_member(mid)
    if member is None or troop.id not in member.grants:
        raise NotFound(f"member {mid!r} holds no grant in troop {troop.id!r}")
    removed = member.grants[troop.id]
    tx.put_member(attrs.evolve(member, grants=_without(member.grants, troop.id)))
    _audit(
        tx,
        {troop.id: removed},
        AuditAction.MEMBER_REMOVE,
        actor.describe(),
        now,
        member_id=mid,
    )


def authorize(
    tx: Transaction,
    principal: Principal,
    troop_id: object,
    permission: object,
    key: object,
    now: datetime,
) -> None:
    """Allow, or raise `AccessDenied`: the principal's grant as it is now."""
    if not isinstance(permission, Permission):
        raise InvalidArgument(
            f"permission must be a Permission, not {type(permission).__name__}"
        )
    if key is not None and not isinstance(key, str):
        raise InvalidArgument(f"key must be a string or None, not {type(key).__name__}")
    tid = check_id(troop_id, "troop id")
    try:
        held = _actor_grants(tx, principal, now)
    except AccessDenied:
        raise AccessDenied("access denied") from None
    grant = held.get(tid)
    if grant is None or not grant.allows(permission, key):
        raise AccessDenied("access denied")


def list_tokens(
    tx: Transaction, troop_id: str, *, limit: object = None, after: object = None
) -> list[TokenInfo]:
    """The troop tokens attached to a troop now (expired ones included), oldest
    first; at most *limit*, and only those after the token *after*."""
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
    ):
        raise InvalidArgument("limit must be a whole number, 1 or more, or None")
    troop = _troop(tx, troop_id)
    start: tuple[datetime, str] | None = None
    if after is not None:
        mark = _token(tx, check_id(after, "after"))
        start = (mark.created_at, mark.id)
    # The personal token is attached to every troop but is not listed: ask for
    # one more, so that a full page stays full.
    wanted = None if limit is None else limit + 1
    tokens = [
        t.info()
        for t in tx.attached_tokens(troop.id, after=start, limit=wanted)
        if t.kind is Kind.TROOP and not t.revoked and troop.id in t.grants
    ]
    return tokens if limit is None else tokens[:limit]


def list_troops(tx: Transaction) -> list[Troop]:
    """Every troop of the account, oldest first."""
    _account(tx)
    troops = sorted(tx.troops(), key=lambda t: (t.created_at, t.id))
    return [t.public() for t in troops]


def list_members(tx: Transaction, troop_id: str) -> list[Member]:
    """The members holding a grant in a troop, by member id."""
    troop = _troop(tx, troop_id)
    members = sorted(tx.members(troop.id), key=lambda m: m.id)
    return [
        Member(troop.id, m.id, m.grants[troop.id])
        for m in members
        if troop.id in m.grants
    ]


def expiring(tx: Transaction, within: object, now: datetime) -> list[TokenInfo]:
    """The live seated tokens with ``now < expires_at <= now + within``,
    soonest first, from the expiry index."""
    if not isinstance(within, timedelta):
        raise InvalidArgument(
            f"within must be a timedelta, not {type(within).__name__}"
        )
    if within < timedelta(0):
        raise InvalidArgument("within must not be negative")
    _account(tx)
    until = now + within if within <= LATEST - now else LATEST
    return [
        t.info()
        for t in tx.expiring_seated(now, until)
        if t.kind is Kind.TROOP and not t.revoked
    ]


def token_info(tx: Transaction, token_id: str) -> TokenInfo:
    """One token of the account, in any state."""
    return _token(tx, token_id).info()


def set_seats(tx: Transaction, seats: object, now: datetime) -> SeatPool:
    """Resize the account's seat pool; never below the seats in use."""
    if not isinstance(seats, int) or isinstance(seats, bool) or seats < 0:
        raise InvalidArgument("seats must be a whole number, 0 or more")
    _reap_expired(tx, now)
    account = _account(tx)
    if seats < account.seats_used:
        raise SeatsExhausted(
            f"account {account.id!r} uses {account.seats_used} seats; "
            f"it cannot shrink to {seats}"
        )
    tx.put_account(attrs.evolve(account, seats=seats))
    return SeatPool(seats, account.seats_used)


# -- small helpers ---------------------------------------------------------

_FULL = Grant.full()


def _revoked(token: TokenRecord) -> TokenRecord:
    """Revoked for good: no grants, no seat, and no value left working (a
    rotation overlap ends with it)."""
    return attrs.evolve(
        token,
        revoked=True,
        seated=False,
        grants=_NO_GRANTS,
        prev_digest=None,
        prev_expires_at=None,
    )


def _freeze(grants: dict[str, Grant]) -> Mapping[str, Grant]:
    # A plain dict typed read-only: records are never mutated in place, and
    # ``dict.get`` is what the verify path calls (a proxy would add a lookup).
    return grants


def _with(
    grants: Mapping[str, Grant], troop_id: str, grant: Grant
) -> Mapping[str, Grant]:
    return _freeze({**grants, troop_id: interned(grant)})


def _without(grants: Mapping[str, Grant], troop_id: str) -> Mapping[str, Grant]:
    return _freeze({k: v for k, v in grants.items() if k != troop_id})
