"""Hash-chained audit logs.

Each event's ``hash`` is SHA-256 over the previous event's hash and a
canonical JSON encoding of this event's fields. The log's head (last ``seq``
and ``hash``) is kept on the troop (or account) record, so a dropped tail is
caught as well as an edited, dropped or reordered event.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime

from .grant import Grant
from .models import AuditAction, AuditEvent
from .store import GENESIS

__all__ = ["event_hash", "first_broken", "seal"]


def event_hash(
    prev: str,
    *,
    seq: int,
    at: datetime,
    account_id: str,
    troop_id: str | None,
    action: str,
    actor: str,
    token_id: str | None,
    member_id: str | None,
    grant: Grant | None,
) -> str:
    """The chain hash of one event (hex)."""
    payload = [
        prev,
        seq,
        at.isoformat(),
        account_id,
        troop_id,
        str(action),
        actor,
        token_id,
        member_id,
        None if grant is None else [list(grant.permission.names()), str(grant.scope)],
    ]
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(data.encode("ascii")).hexdigest()


def _hash_of(prev: str, event: AuditEvent) -> str:
    return event_hash(
        prev,
        seq=event.seq,
        at=event.at,
        account_id=event.account_id,
        troop_id=event.troop_id,
        action=event.action,
        actor=event.actor,
        token_id=event.token_id,
        member_id=event.member_id,
        grant=event.grant,
    )


def seal(
    prev: str,
    seq: int,
    at: datetime,
    *,
    account_id: str,
    troop_id: str | None,
    action: AuditAction,
    actor: str,
    token_id: str | None = None,
    member_id: str | None = None,
    grant: Grant | None = None,
) -> AuditEvent:
    """A new event chained onto *prev* (its time normalised to UTC)."""
    at = at.astimezone(UTC)
    digest = event_hash(
        prev,
        seq=seq,
        at=at,
        account_id=account_id,
        troop_id=troop_id,
        action=action,
        actor=actor,
        token_id=token_id,
        member_id=member_id,
        grant=grant,
    )
    return AuditEvent(
        seq=seq,
        at=at,
        troop_id=troop_id,
        action=action,
        actor=actor,
        token_id=token_id,
        grant=grant,
        hash=digest,
        account_id=account_id,
        member_id=member_id,
    )


def first_broken(
    events: Sequence[AuditEvent],
    head_seq: int,
    head_hash: str,
    *,
    log: tuple[str, str | None] | None = None,
) -> int | None:
    """``None`` if *events* is the intact chain ending at the head, else the
    ``seq`` of the first event that is edited, missing or out of place.

    *log* is the ``(account_id, troop_id)`` the events must belong to (``None``
    for the troop: the account's own log), so that an event spliced in from
    another log is caught where it stands.
    """
    prev = GENESIS
    expected = 1
    for event in events:
        foreign = log is not None and (event.account_id, event.troop_id) != log
        if foreign or event.seq != expected or _hash_of(prev, event) != event.hash:
            return expected
        prev = event.hash
        expected += 1
    if expected - 1 < head_seq:  # a dropped tail: the first missing event
        return expected
    if expected - 1 > head_seq:  # events past the head: the first extra one
        return head_seq + 1
    if prev != head_hash:
        return head_seq
    return None
