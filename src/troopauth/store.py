"""The storage protocol and the records adapters keep.

An adapter stores and fetches; every rule lives in :mod:`troopauth.core`.
Implementing :class:`Store` takes five methods, and :class:`Transaction` a
dozen small reads and writes. ``troopauth.testing`` (the conformance kit)
checks an adapter against the rules.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Protocol, Self

import attrs

from .grant import Grant
from .models import Account, AuditEvent, Kind, Principal, TokenInfo, Troop

__all__ = [
    "GENESIS",
    "MICROSECOND",
    "NO_GRANTS",
    "AccountRecord",
    "ChangeFeed",
    "ClosingStore",
    "FeedListener",
    "MemberRecord",
    "RecordsLastUse",
    "Store",
    "Subscription",
    "TokenRecord",
    "Transaction",
    "TroopRecord",
    "epoch_micros",
    "from_epoch_micros",
]

#: The ``prev`` hash of the first event of every audit log.
GENESIS = "0" * 64

#: One microsecond: stores keep durations (a policy's lifetime) as whole
#: microseconds.
MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(at: datetime) -> int:
    """*at* as whole microseconds since the epoch: exact, unlike a float
    timestamp, so stores order a troop's tokens by age and compare last-use
    stamps with it."""
    return (at - _EPOCH) // MICROSECOND


def from_epoch_micros(micros: int) -> datetime:
    """The UTC datetime :func:`epoch_micros` made *micros* from."""
    return _EPOCH + micros * MICROSECOND


#: The grants of a token or member that holds none.
NO_GRANTS: Mapping[str, Grant] = MappingProxyType({})


@attrs.frozen
class AccountRecord:
    """An account as stored, with its seat counter and account-log head."""

    id: str
    seats: int
    audit_log: bool
    created_at: datetime
    #: Live seated troop tokens, maintained by the core (never counted by a scan).
    seats_used: int = 0
    personal_token_id: str | None = None
    audit_seq: int = 0
    audit_head: str = GENESIS
    #: The account's token policy (see `Account`).
    max_token_lifetime: timedelta | None = None
    require_expiry: bool = False

    def public(self) -> Account:
        """The public view."""
        return Account(
            self.id,
            self.seats,
            self.audit_log,
            self.created_at,
            self.max_token_lifetime,
            self.require_expiry,
        )


@attrs.frozen
class TroopRecord:
    """A troop as stored, with the head of its audit log."""

    id: str
    account_id: str
    name: str
    created_at: datetime
    audit_seq: int = 0
    audit_head: str = GENESIS

    def public(self) -> Troop:
        """The public view."""
        return Troop(self.id, self.account_id, self.name, self.created_at)


@attrs.frozen(kw_only=True)
class TokenRecord:
    """A token as stored: its digest, never its value.

    ``grants`` maps troop id to grant. A personal token's grants hold the full
    grant on every troop of its account (the core keeps them current), so the
    verify path treats both kinds alike. The fields after ``grants`` are
    derived once here, so that verify allocates nothing and, for the common
    token attached to one troop, touches no object but this one and its
    principal. (The verify path's fields come first: one cache line.)
    """

    digest: bytes
    revoked: bool = False
    expires_ts: float | None = attrs.field(init=False, eq=False, repr=False)
    #: The troop and grant of a token attached to exactly one troop, else None.
    sole_troop: str | None = attrs.field(init=False, eq=False, repr=False)
    sole_grant: Grant | None = attrs.field(init=False, eq=False, repr=False)
    principal: Principal = attrs.field(init=False, eq=False, repr=False)
    grants: Mapping[str, Grant] = NO_GRANTS
    id: str
    account_id: str
    kind: Kind
    hint: str
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    #: Whether this token holds one of the account's seats (core-maintained).
    seated: bool = False
    #: Bumped by every rotation; principals of an older generation are dead.
    generation: int = 0
    #: During a rotation overlap: the previous value's digest, which keeps
    #: working until ``prev_expires_at`` (exclusive, like expiry); else None.
    #: The digest index holds it too, so a lookup by it finds this record.
    prev_digest: bytes | None = None
    prev_expires_at: datetime | None = None
    prev_expires_ts: float | None = attrs.field(init=False, eq=False, repr=False)
    #: When a verify or authentication last succeeded, to within the facade's
    #: ``last_used_interval`` (written by `Store.record_last_used`, never by a
    #: transaction: ``put_token`` leaves the stored stamp as it is).
    last_used_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        # Runs for every record a database store reads on the verify path:
        # kept lean (one call for the principal, no iterator objects).
        setattr_ = object.__setattr__
        setattr_(
            self,
            "principal",
            Principal(self.kind, self.account_id, self.id, None, self.generation),
        )
        expires_at = self.expires_at
        setattr_(
            self, "expires_ts", None if expires_at is None else expires_at.timestamp()
        )
        prev = self.prev_expires_at
        setattr_(self, "prev_expires_ts", None if prev is None else prev.timestamp())
        grants = self.grants
        if len(grants) == 1:
            ((troop_id, grant),) = grants.items()
            setattr_(self, "sole_troop", troop_id)
            setattr_(self, "sole_grant", grant)
        else:
            setattr_(self, "sole_troop", None)
            setattr_(self, "sole_grant", None)

    def info(self) -> TokenInfo:
        """The public view: no secret, no digest."""
        return TokenInfo(
            token_id=self.id,
            name=self.name,
            hint=self.hint,
            grants=self.grants,
            created_at=self.created_at,
            expires_at=self.expires_at,
            kind=self.kind,
            account_id=self.account_id,
            revoked=self.revoked,
            last_used_at=self.last_used_at,
        )


@attrs.frozen
class MemberRecord:
    """A member (a person of the host application) and their grants by troop."""

    id: str
    account_id: str
    grants: Mapping[str, Grant] = NO_GRANTS


class Transaction(Protocol):
    """**Protocol:** one account's changes, committed whole or not at all.

    Reads see the transaction's own writes. Every ``get_*`` returns ``None``
    for a record that is missing *or belongs to another account*.
    """

    account_id: str

    def get_account(self) -> AccountRecord | None:
        """This transaction's account."""

    def get_troop(self, troop_id: str) -> TroopRecord | None:
        """A troop of this account."""

    def get_token(self, token_id: str) -> TokenRecord | None:
        """A token of this account, in any state."""

    def get_member(self, member_id: str) -> MemberRecord | None:
        """A member of this account."""

    def troops(self) -> list[TroopRecord]:
        """Every troop of this account."""

    def attached_tokens(
        self,
        troop_id: str,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        """The tokens whose ``grants`` name *troop_id*, oldest first.

        Ordered by ``(created_at, id)``; only those strictly after *after*
        (a ``(created_at, id)`` pair) and at most *limit* of them (``None``:
        all). An index by troop and age, not a scan and a sort: a page of a
        troop with 100,000 tokens costs what a page of a small one does.
        """

    def members(self, troop_id: str) -> list[MemberRecord]:
        """The members whose ``grants`` name *troop_id* (from an index by troop)."""

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        """Seated tokens with ``expires_at <= now``: from an index, not a scan."""

    def expiring_seated(self, after: datetime, until: datetime) -> list[TokenRecord]:
        """Seated tokens with ``after < expires_at <= until``, soonest first
        (then by id): from the same expiry index."""

    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        """A troop's audit log (``None``: the account's), oldest first."""

    def put_account(self, record: AccountRecord) -> None:
        """Insert or replace the account."""

    def put_troop(self, record: TroopRecord) -> None:
        """Insert or replace a troop."""

    def put_token(self, record: TokenRecord) -> None:
        """Insert or replace a token; its digest index follows the record (a
        revoked record leaves the index)."""

    def put_member(self, record: MemberRecord) -> None:
        """Insert or replace a member (empty ``grants``: the adapter may delete it)."""

    def append_audit(self, event: AuditEvent) -> None:
        """Append to the log of ``event.troop_id`` (``None``: the account's)."""


class Store(Protocol):
    """**Protocol:** where troopauth keeps its records.

    * :meth:`lookup` is the verify hot path: a read by digest, no transaction.
    * :meth:`transaction` opens one account's transaction: serializable per
      account, so that two processes racing for the last seat cannot both win.
    """

    #: True when :meth:`lookup` is a local in-memory read, cheaper than checking
    #: a value's checksum; verify then skips the checksum (same result).
    cheap_lookup: bool

    def lookup(self, digest: bytes) -> TokenRecord | None:
        """The live token with this digest (not revoked), or ``None``."""

    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> AbstractContextManager[Transaction]:
        """A transaction on one account; ``write=False`` for reads only."""

    def troop_account(self, troop_id: str) -> str | None:
        """The account a troop belongs to, or ``None``."""

    def token_account(self, token_id: str) -> str | None:
        """The account a token (in any state) belongs to, or ``None``."""

    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""


class RecordsLastUse(Protocol):
    """**Protocol:** a store that can keep when each token was last used (an
    optional part of :class:`Store`; without it ``last_used_at`` stays
    ``None``)."""

    def record_last_used(self, stamps: Mapping[str, datetime]) -> None:
        """Set ``last_used_at`` of these token ids to their stamps, never moving
        a stamp back; ids that are gone are skipped. Outside any account
        transaction, no audit event: a stamp is not a change of the token.
        The facade calls it from a background thread, at most once per token
        per interval."""


class FeedListener(Protocol):
    """**Protocol:** what a :class:`ChangeFeed` delivers to, from its own
    background thread. The three calls may come in any order but never at
    once (one thread delivers)."""

    def changed(self, digests: Collection[bytes]) -> None:
        """These digests' records changed (or are gone): forget them."""

    def reset(self) -> None:
        """Something changed that cannot be narrowed to digests (a reconnect,
        a gap, a message that cannot be parsed): forget everything."""

    def alive(self, since: float) -> None:
        """Every change committed before ``time.monotonic()`` was *since* has
        been delivered (by `changed` or `reset`) before this call."""


class Subscription(Protocol):
    """**Protocol:** a running feed; :meth:`close` stops its thread."""

    def close(self) -> None:
        """Stop delivering and release the feed's thread and connection."""


class ChangeFeed(Protocol):
    """**Protocol:** a store that publishes its committed token changes (an
    optional part of :class:`Store`; `troopauth.cache.CachedStore` needs it).

    The contract an adapter keeps:

    * every ``put_token`` that replaces a stored token publishes the digests
      the old record answered to (``digest`` and any ``prev_digest``) **in
      the same transaction**: a committed change is always published, a
      rolled-back one never;
    * where a change cannot be narrowed to digests, the feed sends `reset`;
    * a subscriber's thread calls `FeedListener.alive` at least every
      *heartbeat* seconds while the feed is healthy, and never while it is
      not (a lost connection, an error): silence is how a subscriber learns
      that the feed is down;
    * after (re)connecting, the feed sends `reset` before its first `alive`.

    A write transaction may list what it published in a ``changed``
    attribute (a list of digests, filled by ``put_token``); the cache then
    evicts those at commit without reading each replaced token first.
    """

    def subscribe(self, listener: FeedListener, *, heartbeat: float) -> Subscription:
        """Start a background thread delivering this store's changes to
        *listener*; `Subscription.close` stops it."""


class ClosingStore:
    """Mix-in: ``with store:`` returns the store and closes it on the way out."""

    def close(self) -> None:
        """Release what the store holds; the subclass says what."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
