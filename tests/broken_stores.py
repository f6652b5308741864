"""Deliberately broken storage adapters: each breaks one promise of the Store
protocol, and the conformance kit must catch it (tests/test_kit_bites.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import attrs

from troopauth import MemoryStore, SQLiteStore, StoreError
from troopauth.memory import _MemoryTransaction
from troopauth.models import AuditEvent, Kind
from troopauth.store import AccountRecord, MemberRecord, TokenRecord


class RotationKeepsOldDigest(MemoryStore):
    """Rotation adds the new digest but leaves the old one working."""

    def _commit_token(self, token: TokenRecord) -> None:
        old = self._tokens.get(token.id)
        super()._commit_token(token)
        if old is not None and not token.revoked and old.digest != token.digest:
            self._by_digest[old.digest] = old  # a stale entry left behind


class NonAtomicMemoryStore(MemoryStore):
    """A transaction's writes land even when its body raises."""

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_MemoryTransaction]:
        with self._lock:
            tx = _MemoryTransaction(self, account_id)
            try:
                yield tx
            finally:
                if write:
                    self._commit(tx)


class UnisolatedMemoryStore(MemoryStore):
    """Transactions run without the lock: a read-modify-write of the seat
    counter can interleave with another's."""

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_MemoryTransaction]:
        tx = _MemoryTransaction(self, account_id)
        yield tx
        time.sleep(0.002)  # a slow commit, as over a network
        if write:
            with self._lock:
                self._commit(tx)


class _ForgetfulTransaction:
    """Writes a revoked token as live and remembers the revocation in memory."""

    def __init__(self, inner: Any, revoked: set[bytes]) -> None:
        self._inner = inner
        self._revoked = revoked

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def put_token(self, record: TokenRecord) -> None:
        if record.revoked:
            self._revoked.add(record.digest)
            record = attrs.evolve(record, revoked=False)
        self._inner.put_token(record)


class RevokeNotPersisted(SQLiteStore):
    """Revocations live in this process's memory, not in the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._revoked: set[bytes] = set()

    def lookup(self, digest: bytes) -> TokenRecord | None:
        if digest in self._revoked:
            return None
        return super().lookup(digest)

    @contextmanager
    def transaction(self, account_id: str, *, write: bool = True) -> Iterator[Any]:
        with super().transaction(account_id, write=write) as tx:
            yield _ForgetfulTransaction(tx, self._revoked)


# -- the kinds of broken adapter of issue 9 -----------------------------------------


class _CustomTransactionStore(MemoryStore):
    """A MemoryStore whose transactions are of the class ``transaction_class``."""

    transaction_class: type[_MemoryTransaction] = _MemoryTransaction

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_MemoryTransaction]:
        with self._lock:
            if self._is_closed:
                raise StoreError("the store is closed")
            tx = self.transaction_class(self, account_id)
            yield tx
            if write:
                self._commit(tx)


class PersonalTokenKeptAfterReplacement(MemoryStore):
    """Takes a revoked token out of the digest index only if it is a troop
    token (there is no revoke call for personal tokens, its author reasoned),
    so a replaced personal token's old value keeps working."""

    def _commit_token(self, token: TokenRecord) -> None:
        old = self._tokens.get(token.id)
        super()._commit_token(token)
        if old is not None and old.kind is Kind.PERSONAL and not old.revoked:
            self._by_digest[old.digest] = old


class AccountLockedSnapshotStore(MemoryStore):
    """The copy-on-write store of docs/storage.md with one lock per account,
    so that accounts never wait for each other. Each transaction still copies
    the whole state and installs its copy at commit: a commit undoes whatever
    another account committed in the meantime."""

    def __init__(self) -> None:
        super().__init__()
        self._account_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[_MemoryTransaction]:
        with self._locks_guard:
            lock = self._account_locks.setdefault(account_id, threading.Lock())
        with lock:
            if self._is_closed:
                raise StoreError("the store is closed")
            draft = self._copy()
            tx = _MemoryTransaction(draft, account_id)
            yield tx
            if write:
                draft._commit(tx)
                self._install(draft)

    def _copy(self) -> MemoryStore:
        draft = MemoryStore()
        draft._accounts.update(self._accounts)
        draft._troops.update(self._troops)
        draft._account_troops.update(
            {k: list(v) for k, v in self._account_troops.items()}
        )
        draft._tokens.update(self._tokens)
        draft._by_digest.update(self._by_digest)
        draft._by_troop.update({k: set(v) for k, v in self._by_troop.items()})
        draft._members.update(self._members)
        draft._expiry.update({k: list(v) for k, v in self._expiry.items()})
        draft._audit.update({k: list(v) for k, v in self._audit.items()})
        return draft

    def _install(self, draft: MemoryStore) -> None:
        for name in (
            "_accounts",
            "_troops",
            "_account_troops",
            "_tokens",
            "_by_digest",
            "_by_troop",
            "_members",
            "_expiry",
            "_audit",
        ):
            mine, theirs = getattr(self, name), getattr(draft, name)
            mine.clear()
            mine.update(theirs)


class _AccountCachingTransaction:
    """Reads the account from the store object's cache when it has it."""

    def __init__(self, inner: Any, cache: dict[str, AccountRecord]) -> None:
        self._inner = inner
        self._cache = cache
        self.written: dict[str, AccountRecord] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def get_account(self) -> AccountRecord | None:
        account_id = self._inner.account_id
        if account_id in self.written:
            return self.written[account_id]
        cached = self._cache.get(account_id)
        if cached is not None:
            return cached
        found: AccountRecord | None = self._inner.get_account()
        if found is not None:
            self._cache[account_id] = found
        return found

    def put_account(self, record: AccountRecord) -> None:
        self._inner.put_account(record)
        self.written[record.id] = record


class AccountCachingSQLiteStore(SQLiteStore):
    """Caches account rows in the store object (every change reads one, and
    they rarely change): a second store object on the same file keeps the seat
    count it saw and sells seats another one has filled since."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._account_cache: dict[str, AccountRecord] = {}

    @contextmanager
    def transaction(self, account_id: str, *, write: bool = True) -> Iterator[Any]:
        with super().transaction(account_id, write=write) as tx:
            caching = _AccountCachingTransaction(tx, self._account_cache)
            yield caching
        self._account_cache.update(caching.written)


class _LogsByTroopTransaction(_MemoryTransaction):
    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        store: Any = self._s
        events = list(store._logs.get(troop_id, ()))
        return events + [e for e in self.events if e.troop_id == troop_id]


class AccountLogSharedByAllAccounts(_CustomTransactionStore):
    """Keeps audit logs by troop id alone (troop ids are unique), so the
    accounts' own logs, whose troop id is None, are one log shared by all."""

    transaction_class = _LogsByTroopTransaction

    def __init__(self) -> None:
        super().__init__()
        self._logs: dict[str | None, list[AuditEvent]] = {}

    def _commit(self, tx: _MemoryTransaction) -> None:
        super()._commit(tx)
        for event in tx.events:
            self._logs.setdefault(event.troop_id, []).append(event)


class _MembersByIdTransaction(_MemoryTransaction):
    def get_member(self, member_id: str) -> MemberRecord | None:
        store: Any = self._s
        found = self.members.get(member_id) or store._members_by_id.get(member_id)
        return found if found and found.account_id == self.account_id else None


class MembersKeyedByIdAlone(_CustomTransactionStore):
    """Keeps members by member id alone, checking the account on read: the
    same person in two accounts is one row, and each account's change
    overwrites (or deletes) the other's."""

    transaction_class = _MembersByIdTransaction

    def __init__(self) -> None:
        super().__init__()
        self._members_by_id: dict[str, MemberRecord] = {}

    def _commit(self, tx: _MemoryTransaction) -> None:
        members = list(tx.members.values())
        tx.members.clear()
        super()._commit(tx)
        for member in members:
            if member.grants:
                self._members_by_id[member.id] = member
            else:
                self._members_by_id.pop(member.id, None)


class _SharedListsTransaction(_MemoryTransaction):
    def audit_events(self, troop_id: str | None) -> list[AuditEvent]:
        if not self.events:  # nothing of our own: spare the copy
            return self._s._audit.get((self.account_id, troop_id), [])
        return super().audit_events(troop_id)


class AuditLogAliased(_CustomTransactionStore):
    """Returns its own list of audit events when the transaction added none
    (to spare a copy): a caller that edits what it got edits the log."""

    transaction_class = _SharedListsTransaction


class CloseKeepsLookups(MemoryStore):
    """close() stops transactions but leaves the verify path serving tokens."""

    def close(self) -> None:
        with self._lock:
            self._is_closed = True


class RotationKeepsOldHint(MemoryStore):
    """Updates a token field by field on rotation and forgets the hint: the
    new digest and generation land, listings show the old value's hint."""

    def _commit_token(self, token: TokenRecord) -> None:
        old = self._tokens.get(token.id)
        if old is not None and old.digest != token.digest:
            token = attrs.evolve(token, hint=old.hint)
        super()._commit_token(token)


class MemberGrantsMerged(MemoryStore):
    """Upserts a member's grants troop by troop and deletes only when none are
    left: grants grow and change, but never shrink to a smaller set."""

    def _commit(self, tx: _MemoryTransaction) -> None:
        for member_id, member in list(tx.members.items()):
            stored = self._members.get((member.account_id, member.id))
            if member.grants and stored is not None:
                merged = {**stored.grants, **member.grants}
                tx.members[member_id] = attrs.evolve(member, grants=merged)
        super()._commit(tx)


class _ExpiryScanTransaction(_MemoryTransaction):
    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        now_ts = now.timestamp()
        found = {t.id: t for t in self._s._tokens.values()}
        found.update(self.tokens)
        return [
            t
            for t in found.values()
            if t.seated and t.expires_ts is not None and t.expires_ts <= now_ts
        ]


class ExpiryScanAcrossAccounts(_CustomTransactionStore):
    """Finds expired seated tokens by a scan that forgets the account: one
    account's transaction sees, and unseats, another account's tokens."""

    transaction_class = _ExpiryScanTransaction
