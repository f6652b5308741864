"""Deliberately broken storage adapters: each breaks one promise of the Store
protocol, and the conformance kit must catch it (tests/test_kit_bites.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from troopauth import MemoryStore, SQLiteStore
from troopauth.memory import _MemoryTransaction
from troopauth.store import TokenRecord


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
