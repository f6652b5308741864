"""``MemoryStore``: dicts and a lock. The fastest verify; the test default."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from .errors import StoreError
from .models import AuditEvent
from .store import (
    AccountRecord,
    ClosingStore,
    MemberRecord,
    TokenRecord,
    TroopRecord,
)

__all__ = ["MemoryStore"]


def _closed(_: bytes) -> TokenRecord | None:
    raise StoreError("the store is closed")


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
        self._by_troop: dict[str, set[str]] = {}
        self._members: dict[tuple[str, str], MemberRecord] = {}
        # Per account: a heap of (expires_ts, token id) for seated tokens that
        # expire; stale entries are dropped when they surface.
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
        for member in tx.members.values():
            key = (member.account_id, member.id)
            if member.grants:
                self._members[key] = member
            else:
                self._members.pop(key, None)
        for event in tx.events:
            self._audit.setdefault((event.account_id, event.troop_id), []).append(event)

    def _commit_token(self, token: TokenRecord) -> None:
        old = self._tokens.get(token.id)
        self._tokens[token.id] = token
        if not token.revoked:
            self._by_digest[token.digest] = token
        if old is not None and (old.digest != token.digest or token.revoked):
            self._by_digest.pop(old.digest, None)
        old_troops = old.grants.keys() if old is not None else frozenset()
        for troop_id in old_troops - token.grants.keys():
            self._by_troop[troop_id].discard(token.id)
        for troop_id in token.grants.keys() - old_troops:
            self._by_troop.setdefault(troop_id, set()).add(token.id)
        if (
            token.seated
            and token.expires_ts is not None
            and (old is None or not old.seated or old.expires_ts != token.expires_ts)
        ):
            heap = self._expiry.setdefault(token.account_id, [])
            heapq.heappush(heap, (token.expires_ts, token.id))

    # -- reads used by transactions ---------------------------------------------

    def _expired_seated(self, account_id: str, now_ts: float) -> list[TokenRecord]:
        heap = self._expiry.get(account_id)
        if not heap:
            return []
        found: list[TokenRecord] = []
        while heap and heap[0][0] <= now_ts:
            ts, token_id = heapq.heappop(heap)
            token = self._tokens.get(token_id)
            if token is not None and token.seated and token.expires_ts == ts:
                found.append(token)
        # Keep live entries until a commit unseats them (the transaction may
        # still roll back); stale ones are gone for good.
        for token in found:
            heapq.heappush(heap, (token.expires_ts or 0.0, token.id))
        return found


class _MemoryTransaction:
    """Buffers one transaction's writes; reads see them first."""

    def __init__(self, store: MemoryStore, account_id: str) -> None:
        self.account_id = account_id
        self._s = store
        self.accounts: dict[str, AccountRecord] = {}
        self.troop_writes: dict[str, TroopRecord] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.members: dict[str, MemberRecord] = {}
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
        found = self.members.get(member_id)
        if found is not None:
            return found
        return self._s._members.get((self.account_id, member_id))

    def troops(self) -> list[TroopRecord]:
        ids = list(self._s._account_troops.get(self.account_id, ()))
        ids += [t for t in self.troop_writes if t not in self._s._troops]
        return [t for t in map(self.get_troop, ids) if t is not None]

    def attached_tokens(self, troop_id: str) -> list[TokenRecord]:
        ids = set(self._s._by_troop.get(troop_id, ()))
        ids.update(t.id for t in self.tokens.values() if troop_id in t.grants)
        found = (self.get_token(i) for i in ids)
        return [t for t in found if t is not None and troop_id in t.grants]

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        now_ts = now.timestamp()
        found = {
            t.id: t
            for t in self._s._expired_seated(self.account_id, now_ts)
            if t.id not in self.tokens
        }
        for token in self.tokens.values():
            if (
                token.seated
                and token.expires_ts is not None
                and token.expires_ts <= now_ts
            ):
                found[token.id] = token
        return list(found.values())

    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        events = list(self._s._audit.get((self.account_id, troop_id), ()))
        events += [e for e in self.events if e.troop_id == troop_id]
        return events

    def put_account(self, record: AccountRecord) -> None:
        self.accounts[record.id] = record

    def put_troop(self, record: TroopRecord) -> None:
        self.troop_writes[record.id] = record

    def put_token(self, record: TokenRecord) -> None:
        holder = self._s._by_digest.get(record.digest)
        if holder is not None and holder.id != record.id:
            raise StoreError("another token has this digest")
        self.tokens[record.id] = record

    def put_member(self, record: MemberRecord) -> None:
        self.members[record.id] = record

    def append_audit(self, event: AuditEvent) -> None:
        self.events.append(event)
