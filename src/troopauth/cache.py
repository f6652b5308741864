"""``CachedStore``: verify at memory speed over a shared store, and still see a
change within a stated bound.

``TroopAuth(CachedStore(SQLiteStore(path)))`` (or over a ``PostgresStore``)
keeps, in this process, the records that verify found, by digest, and forgets
them when the inner store's change feed (`troopauth.store.ChangeFeed`) says
they changed. It fails safe: it answers from memory only while the feed has
proved itself healthy within ``max_staleness``; otherwise it empties itself
and reads through to the inner store until the feed is back. See
``docs/fleet.md``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidArgument, StoreError
from .store import ClosingStore, Store, Subscription, TokenRecord, Transaction

__all__ = ["DEFAULT_MAX_ENTRIES", "CachedStore"]

log = logging.getLogger("troopauth")

#: The default bound on cached records: room for a million live tokens.
DEFAULT_MAX_ENTRIES = 1_000_000

#: Never healthy: the deadline of a cache whose feed has not proved itself.
_NEVER = float("-inf")

#: Open caches of this process, so that a fork can make the child forget the
#: parent's feed.
_OPEN: weakref.WeakSet[CachedStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_OPEN):
        cache._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class CachedStore(ClosingStore):
    """A `Store` that answers verify's lookups from memory, evicted by the
    inner store's change feed.

    * Filled on a successful lookup; a miss is never kept (garbage values
      cannot fill memory). At most ``max_entries`` records; past that the
      oldest filled is dropped.
    * A change made through this object is evicted here before the call
      returns (read-your-writes); a change made anywhere else is evicted when
      the feed delivers it.
    * It answers from memory only while the feed proved, within
      ``max_staleness``, that every change committed before then was
      delivered. Otherwise it empties itself and reads through, never
      filling, until the feed is back. So a change that returned is seen
      here no later than ``max_staleness`` afterwards, whatever the feed does.
    * Expiry is still checked on every verify (by the facade, on the record).

    The inner store must offer a feed (``subscribe``); one without is refused
    with `InvalidArgument`. ``close()`` closes the inner store too.
    ``cheap_lookup`` is False: a miss goes to the inner store, so the facade
    checks a value's checksum before that. ``peek`` answers from memory only;
    the facade's verify asks it first and checks the checksum only when it
    finds nothing (a hit needs no check: only live values' records are here).
    """

    cheap_lookup = False
    #: The verify path (bound per instance, so the facade's verify binds it once).
    lookup: Callable[[bytes], TokenRecord | None]
    #: Memory only: the record while the feed is healthy, else None.
    peek: Callable[[bytes], TokenRecord | None]

    def __init__(
        self,
        store: Store,
        *,
        max_staleness: timedelta = timedelta(seconds=1),
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        subscribe = getattr(store, "subscribe", None)
        if not callable(subscribe):
            raise InvalidArgument(
                f"{type(store).__name__} offers no change feed (subscribe): "
                "a CachedStore needs one"
            )
        staleness: object = max_staleness
        if not isinstance(staleness, timedelta) or staleness <= timedelta(0):
            raise InvalidArgument("max_staleness must be a positive timedelta")
        entries: object = max_entries
        if not isinstance(entries, int) or isinstance(entries, bool) or entries < 1:
            raise InvalidArgument("max_entries must be a whole number, 1 or more")
        self._inner = store
        self._staleness = max_staleness.total_seconds()
        self._max_entries = entries
        self._entries: dict[bytes, TokenRecord] = {}
        # The feed's thread moves the deadline; lookups read it (one float).
        self._fresh_until = _NEVER
        # Bumped by every eviction: a fill that raced with one is not kept.
        self._evictions = 0
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._sub: Subscription | None = None
        self.lookup = self._make_lookup()
        self.peek = self._make_peek()
        record = getattr(store, "record_last_used", None)
        if callable(record):
            self.record_last_used: Callable[[Mapping[str, datetime]], None] = record
        _OPEN.add(self)
        self._subscribe()

    # -- the feed ------------------------------------------------------------

    def _subscribe(self) -> None:
        subscribe: Any = getattr(self._inner, "subscribe")  # noqa: B009 (checked)
        self._sub = subscribe(self, heartbeat=self._staleness / 4)

    def changed(self, digests: Collection[bytes]) -> None:
        """Feed: forget these digests' records."""
        with self._lock:
            self._evictions += 1
            pop = self._entries.pop
            for d in digests:
                pop(d, None)

    def reset(self) -> None:
        """Feed: forget everything."""
        with self._lock:
            self._evictions += 1
            self._entries.clear()

    def alive(self, since: float) -> None:
        """Feed: every change committed before *since* was delivered."""
        self._fresh_until = max(self._fresh_until, since + self._staleness)

    @property
    def healthy(self) -> bool:
        """Whether the cache may answer from memory now."""
        return time.monotonic() < self._fresh_until

    def __len__(self) -> int:
        """How many records are cached now."""
        return len(self._entries)

    # -- the verify path ---------------------------------------------------------

    def _make_lookup(self) -> Callable[[bytes], TokenRecord | None]:
        get = self._entries.get
        now = time.monotonic
        slow = self._read_through

        def lookup(digest: bytes) -> TokenRecord | None:
            record = get(digest)
            if record is not None and now() < self._fresh_until:
                return record
            return slow(digest)

        return lookup

    def _make_peek(self) -> Callable[[bytes], TokenRecord | None]:
        get = self._entries.get
        now = time.monotonic

        def peek(digest: bytes) -> TokenRecord | None:
            """The record in memory, while the feed is healthy; else None
            (never the inner store): the facade's verify asks this first and
            checks a value's checksum only when it finds nothing here."""
            record = get(digest)
            if record is not None and now() < self._fresh_until:
                return record
            return None

        return peek

    def _read_through(self, digest: bytes) -> TokenRecord | None:
        """A miss, or a stale feed: ask the inner store; keep a hit if the
        feed is healthy and no eviction ran meanwhile."""
        if time.monotonic() >= self._fresh_until:
            if self._entries:
                self.reset()
            if self._sub is None and not self._closed:
                self._resubscribe()
            return self._inner.lookup(digest)
        evictions = self._evictions
        record = self._inner.lookup(digest)
        if record is not None and not record.revoked:
            with self._lock:
                if (
                    evictions == self._evictions
                    and time.monotonic() < self._fresh_until
                ):
                    entries = self._entries
                    if len(entries) >= self._max_entries and digest not in entries:
                        del entries[next(iter(entries))]
                    entries[digest] = record
        return record

    def _resubscribe(self) -> None:
        """In a forked child: a feed of its own (if the inner store allows)."""
        with self._lock:
            if self._sub is not None or self._closed:
                return
            try:
                self._subscribe()
            except StoreError as exc:
                log.debug("the change feed cannot start here: %s", exc)

    def _forked(self) -> None:
        """In a forked child: the parent's feed is not ours (its thread is
        gone, its connection the parent's); forget it and everything cached."""
        self._lock = threading.Lock()
        self._fresh_until = _NEVER
        self._evictions += 1
        self._entries.clear()
        self._sub = None
        self._pid = os.getpid()

    # -- the rest of the Store protocol ---------------------------------------------

    @contextmanager
    def transaction(
        self, account_id: str, *, write: bool = True
    ) -> Iterator[Transaction]:
        """The inner store's transaction; the tokens it changed are evicted
        here once it committed, before this returns."""
        if not write:
            with self._inner.transaction(account_id, write=False) as tx:
                yield tx
            return
        with self._inner.transaction(account_id, write=True) as tx:
            published = getattr(tx, "changed", None)
            if isinstance(published, list):
                # The adapter says what it published: no extra read.
                yield tx
                digests: list[bytes] = published
            else:
                watched = _Watched(tx)
                yield watched  # type: ignore[misc]  # a Transaction by delegation
                digests = watched.digests
        if digests:
            self.changed(digests)

    def troop_account(self, troop_id: str) -> str | None:
        """The inner store's answer."""
        return self._inner.troop_account(troop_id)

    def token_account(self, token_id: str) -> str | None:
        """The inner store's answer."""
        return self._inner.token_account(token_id)

    @property
    def inner(self) -> Store:
        """The store this cache reads through to."""
        return self._inner

    def close(self) -> None:
        """Stop the feed, forget everything, and close the inner store."""
        with self._lock:
            self._closed = True
            sub, self._sub = self._sub, None
            self._fresh_until = _NEVER
            self._evictions += 1
            self._entries.clear()
        if sub is not None and self._pid == os.getpid():
            sub.close()
        self._inner.close()

    def __repr__(self) -> str:
        return f"CachedStore({self._inner!r})"


class _Watched:
    """A write transaction that notes the digests of every token it replaces
    (for an adapter whose transaction does not list them in ``changed``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.digests: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def account_id(self) -> str:
        """The inner transaction's account."""
        return str(self.inner.account_id)

    def put_token(self, record: TokenRecord) -> None:
        """Note the digests the stored record answers to, then write."""
        old = self.inner.get_token(record.id)
        if old is not None:
            self.digests.append(old.digest)
            if old.prev_digest is not None:
                self.digests.append(old.prev_digest)
        self.inner.put_token(record)
