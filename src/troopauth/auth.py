"""``TroopAuth``: the facade over one store."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from hmac import compare_digest
from typing import Protocol

from . import core
from .audit import first_broken
from .errors import AccessDenied, InvalidArgument, InvalidToken, NotFound
from .grant import Grant
from .last_used import DEFAULT_INTERVAL, LastUse, check_interval
from .models import (
    Account,
    AuditEvent,
    IssuedToken,
    Kind,
    Member,
    Principal,
    SeatPool,
    TokenInfo,
    Troop,
)
from .permission import Permission
from .scope import MAX_KEY_LENGTH
from .store import Store, TokenRecord
from .tokens import (
    PREFIX,
    VALUE_LENGTH,
    base62,
    digest,
    has_valid_checksum,
    hint,
    is_well_formed,
    new_value,
)

__all__ = ["TroopAuth"]

log = logging.getLogger("troopauth")

#: A reported value longer than this cannot be a token value (or one with some
#: white space around it): refused before anything else is done with it.
_MAX_REPORTED = 1024


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{base62(secrets.randbits(128), 22)}"


def _fresh(token_id: str, kind: Kind) -> IssuedToken:
    """A new value, held only by the returned (redacting) object."""
    value = new_value()
    return IssuedToken(token_id, value, hint(value), kind)


class _Verify(Protocol):
    def __call__(
        self, value: str, troop_id: str, permission: Permission, key: str | None = ...
    ) -> Principal: ...


def _bad_call(value: object, troop_id: object, permission: object, key: object) -> None:
    """Name the bad argument of a verify that raised TypeError/AttributeError."""
    if not is_well_formed(value):
        raise InvalidToken from None
    if not isinstance(troop_id, str):
        raise InvalidArgument("troop_id must be a string") from None
    if not isinstance(permission, Permission):
        raise InvalidArgument("permission must be a Permission") from None
    if key is not None and not isinstance(key, str):
        raise InvalidArgument("key must be a string or None") from None


def _make_verify(
    store: Store,
    now_ts: Callable[[], float],
    check_checksum: bool,
    seen: dict[str, None] | None,
) -> _Verify:
    """Build the verify function once, closing over everything it reads.

    Every step costs a few tens of nanoseconds against a floor of about 500
    (SHA-256 + a dict lookup), so the function is one flat block: no calls but
    the hash, the lookup and ``compare_digest``; no Flag arithmetic (a set
    test on the grant's precomputed permission sets); no datetime for tokens
    that never expire; no allocation on success (the principal is stored).
    """
    length, prefix, max_key = VALUE_LENGTH, PREFIX, MAX_KEY_LENGTH
    # A store with a memory-only ``peek`` (CachedStore) is asked that first;
    # the checksum, which costs as much as a whole in-memory verify, is then
    # checked only on a miss, before the store is asked properly.
    peek: Callable[[bytes], TokenRecord | None] | None = getattr(store, "peek", None)
    check_first = check_checksum and peek is None
    check_on_miss = check_checksum and peek is not None
    lookup = store.lookup if peek is None else peek

    def verify(
        value: str, troop_id: str, permission: Permission, key: str | None = None
    ) -> Principal:
        try:
            if len(value) != length or not value.startswith(prefix):
                raise InvalidToken
            if not value.isascii():
                raise InvalidToken
            if check_first and not has_valid_checksum(value):
                raise InvalidToken
            wanted = sha256(value.encode()).digest()
            token = lookup(wanted)
            if token is None:
                if check_on_miss and not has_valid_checksum(value):
                    raise InvalidToken
                # A miss: if the store swapped its lookup since (MemoryStore
                # does on close()), or only peeked, ask the store's lookup,
                # which may raise.
                current = store.lookup
                token = None if current == lookup else current(wanted)
            if token is None or token.revoked:
                raise InvalidToken
            if not compare_digest(token.digest, wanted) and not (
                # the value a rotation overlap keeps working for a while
                token.prev_digest is not None
                and compare_digest(token.prev_digest, wanted)
                and now_ts() < token.prev_expires_ts  # type: ignore[operator]  # set with prev_digest
            ):
                raise InvalidToken
            if token.expires_ts is not None and now_ts() >= token.expires_ts:
                raise InvalidToken
            grant = (
                token.sole_grant
                if troop_id == token.sole_troop
                else token.grants.get(troop_id)
            )
            if grant is None or permission not in grant._allowed:
                raise AccessDenied("access denied")
            scope = grant.scope
            if key is None:
                if not scope.whole:
                    raise AccessDenied("access denied")
            elif key not in scope.keys and not (
                (scope.whole or key.startswith(scope._prefix_tuple))
                # is_key_name(key), inlined: invalid names are never covered
                and 0 < len(key) <= max_key
                and key.isprintable()
                and " " not in key
                and "," not in key
                and "*" not in key
            ):
                raise AccessDenied("access denied")
        except (TypeError, AttributeError):
            _bad_call(value, troop_id, permission, key)
            raise
        if seen is not None:
            seen[token.id] = None  # its last use, written off the hot path
        return token.principal

    return verify


class TroopAuth:
    """Issue, store and check troop access tokens over one :class:`Store`.

    ``clock`` (keyword) is a zero-argument callable returning a timezone-aware
    ``datetime``; it defaults to the system clock in UTC.
    ``last_used_interval`` (keyword, default 60 seconds) is how often, at
    most, a token's ``last_used_at`` is written: successful verifies and
    authentications note the token, and a background thread writes the notes
    (`flush_last_used` writes them now). ``None`` records nothing; so does a
    store without ``record_last_used``.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] | None = None,
        last_used_interval: timedelta | None = DEFAULT_INTERVAL,
    ) -> None:
        self._store = store
        self._check_checksum = not getattr(store, "cheap_lookup", False)
        if clock is None:
            self._clock: Callable[[], datetime] = _utc_now
            self._now_ts: Callable[[], float] = time.time
        else:
            if not callable(clock):
                raise InvalidArgument("clock must be a zero-argument callable")
            self._clock = clock
            self._now_ts = lambda: self._now().timestamp()
        interval = check_interval(last_used_interval)
        record = getattr(store, "record_last_used", None)
        self._last_use = (
            None
            if interval is None or not callable(record)
            else LastUse(record, self._now, interval)
        )
        self._seen = None if self._last_use is None else self._last_use.pending
        self._verify = _make_verify(
            store, self._now_ts, self._check_checksum, self._seen
        )
        # The hot path: calling the closure straight from the instance saves a
        # frame per call (the method above documents it and delegates to it).
        self.verify = self._verify  # type: ignore[method-assign]  # see above

    @property
    def store(self) -> Store:
        """The store this facade works on."""
        return self._store

    def _now(self) -> datetime:
        return core.check_aware(self._clock(), "the clock's time")

    # -- the verify path -----------------------------------------------------

    def verify(
        self,
        value: str,
        troop_id: str,
        permission: Permission,
        key: str | None = None,
    ) -> Principal:
        """Check a token value for *permission* on *key* in *troop_id*.

        Returns the token's `Principal`. Raises `InvalidToken` for a value that
        is not a live token (malformed, unknown, rotated away, revoked,
        expired) and `AccessDenied` for a live token that may not do this.
        ``key=None`` is a troop-level action; *permission* may combine flags,
        all of which are required. Only `TroopAuthError` subclasses escape.
        """
        # The instance attribute set in __init__ shadows this method; this body
        # only runs when called through the class.
        return self._verify(value, troop_id, permission, key)

    def authenticate(self, value: str) -> Principal:
        """The `Principal` a live token value stands for, or `InvalidToken`."""
        return self._live(value).principal

    def introspect(self, value: str) -> TokenInfo:
        """What a live token value holds now (grants by troop, expiry; never a
        secret), or `InvalidToken`. One lookup, like :meth:`authenticate`:
        for callers that map a token's grants themselves (the MCP verifier)."""
        return self._live(value).info()

    def _live(self, value: object) -> TokenRecord:
        if not is_well_formed(value):
            raise InvalidToken
        if self._check_checksum and not has_valid_checksum(value):
            raise InvalidToken
        wanted = digest(value)
        token = self._store.lookup(wanted)
        if token is None or token.revoked:
            raise InvalidToken
        if not compare_digest(token.digest, wanted) and not (
            token.prev_digest is not None
            and compare_digest(token.prev_digest, wanted)
            and token.prev_expires_ts is not None
            and self._now_ts() < token.prev_expires_ts
        ):
            raise InvalidToken
        if token.expires_ts is not None and self._now_ts() >= token.expires_ts:
            raise InvalidToken
        if self._seen is not None:
            self._seen[token.id] = None
        return token

    def flush_last_used(self) -> None:
        """Write the last uses noted since the last write now (a background
        thread does it every ``last_used_interval``; call this before a
        process exits, or in a test). Nothing to do without a store that
        records last use, or with ``last_used_interval=None``."""
        if self._last_use is not None:
            self._last_use.flush()

    def authorize(
        self,
        principal: Principal,
        troop_id: str,
        permission: Permission,
        key: str | None = None,
    ) -> None:
        """Return if *principal*, as it is now, may do this; else `AccessDenied`."""
        core.check_principal(principal)
        now = self._now()
        with self._store.transaction(principal.account_id, write=False) as tx:
            core.authorize(tx, principal, troop_id, permission, key, now)

    # -- account-level calls ---------------------------------------------------

    def create_account(
        self,
        *,
        seats: int,
        audit_log: bool = False,
        max_token_lifetime: timedelta | None = None,
        require_expiry: bool = False,
    ) -> Account:
        """A new account with a pool of *seats* seats; ``audit_log=True`` keeps
        the hash-chained audit log for this account.

        The token policy: with ``max_token_lifetime`` every troop token issued
        expires within it (no ``expires_at`` then means now + the maximum; a
        later one is `InvalidArgument`, never clamped); ``require_expiry``
        refuses a token issued without ``expires_at``. The personal token is
        exempt.
        """
        now = self._now()
        with self._store.transaction(_new_id("acct")) as tx:
            account = core.create_account(
                tx,
                seats=seats,
                audit_log=audit_log,
                now=now,
                max_token_lifetime=max_token_lifetime,
                require_expiry=require_expiry,
            )
        log.debug("created account %s", account.id)
        return account.public()

    def set_policy(
        self,
        account_id: str,
        *,
        max_token_lifetime: timedelta | None = core.KEEP,
        require_expiry: bool = core.KEEP,
    ) -> Account:
        """Change an account's token policy (an account-level call, like
        `create_troop`); a keyword left out keeps its value. The policy
        applies to tokens issued (and attached) from now on; existing tokens
        keep their expiry."""
        with self._store.transaction(_account_id(account_id)) as tx:
            account = core.set_policy(
                tx,
                max_token_lifetime=max_token_lifetime,
                require_expiry=require_expiry,
            )
        log.debug("set the token policy of account %s", account.id)
        return account.public()

    def create_troop(self, account_id: str, name: str) -> Troop:
        """A new troop in an account."""
        now = self._now()
        with self._store.transaction(_account_id(account_id)) as tx:
            troop = core.create_troop(tx, _new_id("troop"), name, now)
        log.debug("created troop %s in account %s", troop.id, troop.account_id)
        return troop.public()

    def issue_personal_token(self, account_id: str) -> IssuedToken:
        """The account's personal access token; the previous one dies at once."""
        now = self._now()
        issued = _fresh(_new_id("tok"), Kind.PERSONAL)
        with self._store.transaction(_account_id(account_id)) as tx:
            core.issue_personal_token(
                tx, issued.token_id, digest(issued.value), issued.hint, now
            )
        log.debug("issued personal token %s", issued.token_id)
        return issued

    def member(self, account_id: str, member_id: str) -> Principal:
        """The principal of a member (after the host application's own login)."""
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            return core.member_principal(tx, member_id)

    # -- management calls --------------------------------------------------------

    def issue_token(
        self,
        actor: Principal,
        troop_id: str,
        grant: Grant,
        *,
        name: str = "",
        expires_at: datetime | None = None,
    ) -> IssuedToken:
        """A new troop token attached to *troop_id* with *grant*; takes a seat."""
        now = self._now()
        issued = _fresh(_new_id("tok"), Kind.TROOP)
        with self._store.transaction(_actor_account(actor)) as tx:
            core.issue_token(
                tx,
                actor,
                troop_id,
                grant,
                token_id=issued.token_id,
                digest=digest(issued.value),
                hint=issued.hint,
                name=name,
                expires_at=expires_at,
                now=now,
            )
        log.debug("issued token %s in troop %s", issued.token_id, troop_id)
        return issued

    def attach(
        self, actor: Principal, token_id: str, troop_id: str, grant: Grant
    ) -> TokenInfo:
        """Attach a token to another troop (re-attaching replaces the grant)."""
        now = self._now()
        with self._store.transaction(_actor_account(actor)) as tx:
            token = core.attach(tx, actor, token_id, troop_id, grant, now)
        log.debug("attached token %s to troop %s", token_id, troop_id)
        return token.info()

    def detach(self, actor: Principal, token_id: str, troop_id: str) -> TokenInfo:
        """Detach a token from a troop; detached from all, it frees its seat."""
        now = self._now()
        with self._store.transaction(_actor_account(actor)) as tx:
            token = core.detach(tx, actor, token_id, troop_id, now)
        log.debug("detached token %s from troop %s", token_id, troop_id)
        return token.info()

    def rotate(
        self, actor: Principal, token_id: str, *, overlap: timedelta = timedelta(0)
    ) -> IssuedToken:
        """A new secret for the same token; the old value stops working now.

        With an *overlap* (at most 7 days) the old value keeps working until
        now + overlap (exclusive), so clients can switch without downtime;
        rotating again or revoking ends the overlap at once, and a token never
        has more than two live values.
        """
        now = self._now()
        issued = _fresh(_id(token_id, "token id"), Kind.TROOP)
        with self._store.transaction(_actor_account(actor)) as tx:
            core.rotate(
                tx,
                actor,
                token_id,
                digest(issued.value),
                issued.hint,
                now,
                overlap=overlap,
            )
        log.debug("rotated token %s", token_id)
        return issued

    def revoke(self, actor: Principal, token_id: str) -> None:
        """Disable a token for good; frees its seat. Revoking twice is a no-op."""
        now = self._now()
        with self._store.transaction(_actor_account(actor)) as tx:
            core.revoke(tx, actor, token_id, now)
        log.debug("revoked token %s", token_id)

    def report_leak(self, value: str) -> bool:
        """Revoke, at once and for good, the token that holds *value*.

        No actor: whoever holds a value may report it leaked (a secret
        scanner, the person who pasted it). The token's seat is freed and the
        report is audited in each troop it was attached to (a personal
        token's, in the account's log: the account then has none until a new
        one is issued). Returns whether a live token was revoked, and nothing
        else about it; an unknown, malformed, rotated-away, revoked or expired
        value changes nothing and returns ``False``. A value that is not text,
        or is longer than any token value could be, is `InvalidArgument`.
        """
        if not isinstance(value, str):
            raise InvalidArgument(
                f"a reported value must be a string, not {type(value).__name__}"
            )
        if len(value) > _MAX_REPORTED:
            raise InvalidArgument(
                f"a reported value is at most {_MAX_REPORTED} characters"
            )
        value = value.strip()
        if not is_well_formed(value) or not has_valid_checksum(value):
            return False
        wanted = digest(value)
        token = self._store.lookup(wanted)
        if token is None:
            return False
        now = self._now()
        with self._store.transaction(token.account_id) as tx:
            revoked = core.report_leak(tx, token.id, wanted, now)
        if revoked:
            log.info("token %s revoked on a leak report", token.id)
        return revoked

    def add_member(
        self, actor: Principal, troop_id: str, member_id: str, grant: Grant
    ) -> None:
        """Give a member *grant* in a troop (replacing what they held there)."""
        now = self._now()
        with self._store.transaction(_actor_account(actor)) as tx:
            core.add_member(tx, actor, troop_id, member_id, grant, now)
        log.debug("member %s added to troop %s", member_id, troop_id)

    def remove_member(self, actor: Principal, troop_id: str, member_id: str) -> None:
        """Take a member's grant in a troop away."""
        now = self._now()
        with self._store.transaction(_actor_account(actor)) as tx:
            core.remove_member(tx, actor, troop_id, member_id, now)
        log.debug("member %s removed from troop %s", member_id, troop_id)

    # -- reads -------------------------------------------------------------------

    def tokens(
        self, troop_id: str, *, limit: int | None = None, after: str | None = None
    ) -> list[TokenInfo]:
        """The troop tokens attached to a troop now, oldest first; no secrets.

        Paginated: at most *limit* of them (``None``: all), starting after the
        token whose id is *after*. A page shorter than *limit* is the last::

            page = auth.tokens(troop_id, limit=100)
            while page:
                ...
                page = auth.tokens(troop_id, limit=100, after=page[-1].token_id)
        """
        with self._store.transaction(self._troop_account(troop_id), write=False) as tx:
            return core.list_tokens(tx, troop_id, limit=limit, after=after)

    def token(self, token_id: str) -> TokenInfo:
        """One token, in any state (revoked and expired ones too); no secret."""
        account_id = self._store.token_account(_id(token_id, "token id"))
        if account_id is None:
            raise NotFound(f"no token {token_id!r}")
        with self._store.transaction(account_id, write=False) as tx:
            return core.token_info(tx, token_id)

    def expiring(self, account_id: str, within: timedelta) -> list[TokenInfo]:
        """The account's live troop tokens that expire within *within* from
        now (``now < expires_at <= now + within``), soonest first; read from
        the expiry index, never a scan of the account's tokens."""
        now = self._now()
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            return core.expiring(tx, within, now)

    def account(self, account_id: str) -> Account:
        """An account as it is now: its seat pool's capacity, whether it keeps
        its audit log, and its token policy (a host read, no actor)."""
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            record = tx.get_account()
            if record is None:
                raise NotFound(f"no account {account_id!r}")
            return record.public()

    def troops(self, account_id: str) -> list[Troop]:
        """Every troop of an account, oldest first."""
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            return core.list_troops(tx)

    def members(self, troop_id: str) -> list[Member]:
        """The members holding a grant in a troop, ordered by member id."""
        with self._store.transaction(self._troop_account(troop_id), write=False) as tx:
            return core.list_members(tx, troop_id)

    def set_seats(self, account_id: str, seats: int) -> SeatPool:
        """Resize an account's seat pool (an account-level call, like
        `create_troop`); never below the seats in use (`SeatsExhausted`)."""
        now = self._now()
        with self._store.transaction(_account_id(account_id)) as tx:
            pool = core.set_seats(tx, seats, now)
        log.debug("account %s now has %d seats", account_id, pool.capacity)
        return pool

    def seats(self, account_id: str) -> SeatPool:
        """The account's seat pool now."""
        now = self._now()
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            return core.seat_pool(tx, now)

    def audit_log(self, troop_id: str) -> list[AuditEvent]:
        """A troop's audit events, oldest first (empty unless the account keeps
        its audit log)."""
        with self._store.transaction(self._troop_account(troop_id), write=False) as tx:
            return tx.audit_events(troop_id)

    def account_audit_log(self, account_id: str) -> list[AuditEvent]:
        """The account's own audit events (personal tokens), oldest first."""
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            if tx.get_account() is None:
                raise NotFound(f"no account {account_id!r}")
            return tx.audit_events(None)

    def check_audit_log(self, troop_id: str) -> int | None:
        """``None`` if the troop's log is intact, else the ``seq`` of the first
        edited, dropped or reordered event."""
        with self._store.transaction(self._troop_account(troop_id), write=False) as tx:
            troop = tx.get_troop(troop_id)
            if troop is None:
                raise NotFound(f"no troop {troop_id!r}")
            return first_broken(
                tx.audit_events(troop_id),
                troop.audit_seq,
                troop.audit_head,
                log=(troop.account_id, troop.id),
            )

    def check_account_audit_log(self, account_id: str) -> int | None:
        """The same check for the account's own log."""
        with self._store.transaction(_account_id(account_id), write=False) as tx:
            account = tx.get_account()
            if account is None:
                raise NotFound(f"no account {account_id!r}")
            return first_broken(
                tx.audit_events(None),
                account.audit_seq,
                account.audit_head,
                log=(account.id, None),
            )

    def _troop_account(self, troop_id: str) -> str:
        account_id = self._store.troop_account(_id(troop_id, "troop id"))
        if account_id is None:
            raise NotFound(f"no troop {troop_id!r}")
        return account_id


_id = core.check_id


def _account_id(value: object) -> str:
    return _id(value, "account id")


def _actor_account(actor: object) -> str:
    return core.check_principal(actor).account_id
