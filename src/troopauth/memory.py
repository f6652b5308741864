"""``MemoryStore``: dicts and a lock. The fastest verify; the test default."""

from __future__ import annotations

import threading
from bisect import bisect_right, insort
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime

import attrs

from .errors import StoreError
from .models import AuditEvent
from .store import (
    AccountRecord,
    ClosingStore,
    MemberRecord,
    TokenRecord,
    TroopRecord,
    epoch_micros,
)

__all__ = ["MemoryStore"]


def _closed(_: bytes) -> TokenRecord | None:
    raise StoreError("the store is closed")


#: A token's place in a troop's listing: its age in whole microseconds (exact,
#: unlike a float timestamp), then its id.
_AgeKey = tuple[int, str]


def _digests(token: TokenRecord) -> tuple[bytes, ...]:
    """The digests a token answers to: its value's, and a kept previous one."""
    if token.prev_digest is None:
        return (token.digest,)
    return (token.digest, token.prev_digest)


def age_key(created_at: datetime, token_id: str) -> _AgeKey:
    """The ``(created_at, id)`` order as a key that compares fast and exactly."""
    return epoch_micros(created_at), token_id


class MemoryStore(ClosingStore):
    """Keeps everything in this process's memory; lost when the process ends.

    Writes take one lock and are applied at commit, all at once; the verify
    path reads a dict without the lock (one ``dict.get``), so it never waits
    for a writer and never sees half a change.
    """

    cheap_lookup = True
    #: The verify path: the live token with this digest, or None.
    lookup: Callable[[bytes], TokenRecord | None]

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._by_digest: dict[bytes, TokenRecord] = {}
        self.lookup = self._by_digest.get
        self._accounts: dict[str, AccountRecord] = {}
        self._troops: dict[str, TroopRecord] = {}
        self._account_troops: dict[str, list[str]] = {}
        self._tokens: dict[str, TokenRecord] = {}
        # Per troop: the attached tokens' age keys, kept sorted (new tokens
        # land at the end, so keeping it sorted costs a bisection).
        self._by_troop: dict[str, list[_AgeKey]] = {}
        self._members: dict[tuple[str, str], MemberRecord] = {}
        self._members_by_troop: dict[str, set[str]] = {}
        # Per account: (expires_ts, token id) of the seated tokens that
        # expire, kept sorted (the expiry index: reaping and `expiring`).
        self._expiry: dict[str, list[tuple[float, str]]] = {}
        self._audit: dict[tuple[str, str | None], list[AuditEvent]] = {}
        self._is_closed = False

    # -- Store protocol ------------------------------------------------------

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_MemoryTransaction]:
        """One transaction at a time; its writes land together at commit."""
        with self._lock:
            if self._is_closed:
                raise StoreError("the store is closed")
            tx = _MemoryTransaction(self, account_id)
            yield tx
            if write:
                self._commit(tx)

    def troop_account(self, troop_id: str) -> str | None:
        """The account a troop belongs to."""
        troop = self._troops.get(troop_id)
        return None if troop is None else troop.account_id

    def token_account(self, token_id: str) -> str | None:
        """The account a token belongs to."""
        token = self._tokens.get(token_id)
        return None if token is None else token.account_id

    def record_last_used(self, stamps: Mapping[str, datetime]) -> None:
        """Stamp tokens' ``last_used_at`` (never backwards), under the lock."""
        with self._lock:
            if self._is_closed:
                raise StoreError("the store is closed")
            for token_id, stamp in stamps.items():
                token = self._tokens.get(token_id)
                if token is None or (
                    token.last_used_at is not None and token.last_used_at >= stamp
                ):
                    continue
                stamped = attrs.evolve(token, last_used_at=stamp)
                self._tokens[token_id] = stamped
                if not stamped.revoked:
                    for d in _digests(stamped):
                        self._by_digest[d] = stamped

    def close(self) -> None:
        """Drop everything; later calls raise `StoreError`."""
        with self._lock:
            self._is_closed = True
            self.lookup = _closed
            self._by_digest.clear()

    def __len__(self) -> int:
        """How many tokens are stored (any state)."""
        return len(self._tokens)

    # -- commit ----------------------------------------------------------------

    def _commit(self, tx: _MemoryTransaction) -> None:
        self._accounts.update(tx.accounts)
        for troop in tx.troop_writes.values():
            if troop.id not in self._troops:
                self._account_troops.setdefault(troop.account_id, []).append(troop.id)
            self._troops[troop.id] = troop
        for token in tx.tokens.values():
            self._commit_token(token)
        for member in tx.members_written.values():
            key = (member.account_id, member.id)
            old_member = self._members.get(key)
            if member.grants:
                self._members[key] = member
            else:
                self._members.pop(key, None)
            before = old_member.grants.keys() if old_member is not None else set()
            for troop_id in before - member.grants.keys():
                self._members_by_troop[troop_id].discard(member.id)
            for troop_id in member.grants.keys() - before:
                self._members_by_troop.setdefault(troop_id, set()).add(member.id)
        for event in tx.events:
            self._audit.setdefault((event.account_id, event.troop_id), []).append(event)

    def _commit_token(self, token: TokenRecord) -> None:
        old = self._tokens.get(token.id)
        self._tokens[token.id] = token
        # The digest index: the current value's digest and, during a rotation
        # overlap, the previous one's; both leave when revoked.
        keep = _digests(token) if not token.revoked else ()
        for d in keep:
            self._by_digest[d] = token
        if old is not None:
            for d in _digests(old):
                if d not in keep:
                    self._by_digest.pop(d, None)
        old_troops = old.grants.keys() if old is not None else frozenset()
        key = age_key(token.created_at, token.id)
        for troop_id in old_troops - token.grants.keys():
            keys = self._by_troop[troop_id]
            i = bisect_right(keys, key) - 1
            if i >= 0 and keys[i] == key:
                del keys[i]
        for troop_id in token.grants.keys() - old_troops:
            keys = self._by_troop.setdefault(troop_id, [])
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                insort(keys, key)
        was = (
            (old.expires_ts, old.id)
            if old is not None and old.seated and old.expires_ts is not None
            else None
        )
        now_key = (
            (token.expires_ts, token.id)
            if token.seated and token.expires_ts is not None
            else None
        )
        if was != now_key:
            index = self._expiry.setdefault(token.account_id, [])
            if was is not None:
                i = bisect_right(index, was) - 1
                if i >= 0 and index[i] == was:
                    del index[i]
            if now_key is not None:
                insort(index, now_key)

    # -- reads used by transactions ---------------------------------------------

    def _expiring(
        self, account_id: str, after_ts: float | None, until_ts: float
    ) -> list[TokenRecord]:
        """Seated tokens with ``after_ts < expires_ts <= until_ts``, soonest
        first, from the expiry index."""
        index = self._expiry.get(account_id)
        if not index:
            return []
        start = 0 if after_ts is None else bisect_right(index, (after_ts, "\U0010ffff"))
        end = bisect_right(index, (until_ts, "\U0010ffff"))
        found = (self._tokens.get(token_id) for _, token_id in index[start:end])
        return [t for t in found if t is not None and t.seated]


class _MemoryTransaction:
    """Buffers one transaction's writes; reads see them first."""

    def __init__(self, store: MemoryStore, account_id: str) -> None:
        self.account_id = account_id
        self._s = store
        self.accounts: dict[str, AccountRecord] = {}
        self.troop_writes: dict[str, TroopRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.members_written: dict[str, MemberRecord] = {}
        self.events: list[AuditEvent] = []

    def get_account(self) -> AccountRecord | None:
        found = self.accounts.get(self.account_id)
        return found if found is not None else self._s._accounts.get(self.account_id)

    def get_troop(self, troop_id: str) -> TroopRecord | None:
        troop = self.troop_writes.get(troop_id) or self._s._troops.get(troop_id)
        return (
            troop if troop is not None and troop.account_id == self.account_id else None
        )

    def get_token(self, token_id: str) -> TokenRecord | None:
        token = self.tokens.get(token_id) or self._s._tokens.get(token_id)
        return (
            token if token is not None and token.account_id == self.account_id else None
        )

    def get_member(self, member_id: str) -> MemberRecord | None:
        found = self.members_written.get(member_id)
        if found is not None:
            return found
        return self._s._members.get((self.account_id, member_id))

    def troops(self) -> list[TroopRecord]:
        ids = list(self._s._account_troops.get(self.account_id, ()))
        ids += [t for t in self.troop_writes if t not in self._s._troops]
        return [t for t in map(self.get_troop, ids) if t is not None]

    def attached_tokens(
        self,
        troop_id: str,
        *,
        after: tuple[datetime, str] | None = None,
        limit: int | None = None,
    ) -> list[TokenRecord]:
        committed = self._s._by_troop.get(troop_id, [])
        start = 0 if after is None else bisect_right(committed, age_key(*after))
        if self.tokens:
            # This transaction wrote tokens: merge them in (rare; reads and
            # listings write nothing).
            keys = set(committed[start:])
            keys.update(
                age_key(t.created_at, t.id)
                for t in self.tokens.values()
                if troop_id in t.grants
            )
            if after is not None:
                lowest = age_key(*after)
                keys = {k for k in keys if k > lowest}
            candidates: list[_AgeKey] = sorted(keys)
            start = 0
        else:
            candidates = committed
        found: list[TokenRecord] = []
        for i in range(start, len(candidates)):
            if limit is not None and len(found) >= limit:
                break
            token = self.get_token(candidates[i][1])
            if token is not None and troop_id in token.grants:
                found.append(token)
        return found

    def members(self, troop_id: str) -> list[MemberRecord]:
        ids = set(self._s._members_by_troop.get(troop_id, ()))
        ids.update(self.members_written)
        found = (self.get_member(i) for i in ids)
        return [m for m in found if m is not None and troop_id in m.grants]

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        return self._seated_expiring(None, now)

    def expiring_seated(self, after: datetime, until: datetime) -> list[TokenRecord]:
        return self._seated_expiring(after, until)

    def _seated_expiring(
        self, after: datetime | None, until: datetime
    ) -> list[TokenRecord]:
        after_ts = None if after is None else after.timestamp()
        until_ts = until.timestamp()
        found = {
            t.id: t
            for t in self._s._expiring(self.account_id, after_ts, until_ts)
            if t.id not in self.tokens
        }
        for token in self.tokens.values():
            ts = token.expires_ts
            if (
                token.seated
                and ts is not None
                and (after_ts is None or ts > after_ts)
                and ts <= until_ts
            ):
                found[token.id] = token
        return sorted(found.values(), key=lambda t: (t.expires_ts or 0.0, t.id))

    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        events = list(self._s._audit.get((self.account_id, troop_id), ()))
        events += [e for e in self.events if e.troop_id == troop_id]
        return events

    def put_account(self, record: AccountRecord) -> None:
        self.accounts[record.id] = record

    def put_troop(self, record: TroopRecord) -> None:
        self.troop_writes[record.id] = record

    def put_token(self, record: TokenRecord) -> None:
        for d in _digests(record):
            holder = self._s._by_digest.get(d)
            if holder is not None and holder.id != record.id:
                raise StoreError("another token has this digest")
        self.tokens[record.id] = record

    def put_member(self, record: MemberRecord) -> None:
        self.members_written[record.id] = record

    def append_audit(self, event: AuditEvent) -> None:
        self.events.append(event)
