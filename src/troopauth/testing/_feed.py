"""The change feed (`troopauth.store.ChangeFeed`), for an adapter that offers
one: a replaced token's digests are published at commit, never for a
rolled-back transaction, and a heartbeat promises what was delivered."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterator
from typing import Any

import attrs
import pytest

from ..store import Store
from ._helpers import T0, BoomError, KitBase, Opener, token

#: How long the kit waits for a feed to deliver before it fails the test.
PATIENCE = 30.0
#: The heartbeat the kit asks for (seconds).
HEARTBEAT = 0.05


class Recording:
    """A `troopauth.store.FeedListener` that remembers what it was told."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: ("changed", digests) and ("reset", empty) in the order delivered.
        self.events: list[tuple[str, frozenset[bytes]]] = []
        self.alive_since = float("-inf")

    def changed(self, digests: Collection[bytes]) -> None:
        """Note the digests."""
        with self._lock:
            self.events.append(("changed", frozenset(digests)))

    def reset(self) -> None:
        """Note a reset."""
        with self._lock:
            self.events.append(("reset", frozenset()))

    def alive(self, since: float) -> None:
        """Note the heartbeat."""
        self.alive_since = max(self.alive_since, since)

    def mark(self) -> int:
        """Where the events delivered from now on start."""
        with self._lock:
            return len(self.events)

    def caught_up(self) -> None:
        """Wait for a heartbeat that started after now: by then every change
        committed before this call has been delivered."""
        now = time.monotonic()
        deadline = now + PATIENCE
        while self.alive_since <= now:
            if time.monotonic() > deadline:
                pytest.fail(f"the feed sent no heartbeat for {PATIENCE} s")
            time.sleep(0.002)

    def since(self, mark: int) -> list[tuple[str, frozenset[bytes]]]:
        """The events delivered after *mark*."""
        with self._lock:
            return self.events[mark:]


class FeedTests(KitBase):
    """The change feed, for an adapter with ``subscribe`` (others skip)."""

    @pytest.fixture
    def feed(self, opener: Opener, s: Store) -> Iterator[Recording]:
        """A recording listener subscribed to the seeded store's feed."""
        subscribe: Any = getattr(s, "subscribe", None)
        if not callable(subscribe):
            pytest.skip("the adapter offers no change feed (subscribe)")
        listener = Recording()
        subscription = subscribe(listener, heartbeat=HEARTBEAT)
        try:
            listener.caught_up()
            yield listener
        finally:
            subscription.close()

    def test_feed_publishes_a_replaced_token_at_commit(
        self, s: Store, feed: Recording
    ) -> None:
        """Replacing a stored token publishes the digest its old record
        answered to; by the next heartbeat it has been delivered."""
        record = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        mark = feed.mark()
        with s.transaction("acct_a") as tx:
            tx.put_token(attrs.evolve(record, revoked=True, seated=False, grants={}))
        feed.caught_up()
        assert _told(feed.since(mark), record.digest), (
            "a committed revoke was not published"
        )

    def test_feed_publishes_both_digests_of_an_overlap(
        self, s: Store, feed: Recording
    ) -> None:
        """A token kept answering to a previous digest (a rotation overlap)
        publishes both when it is replaced."""
        record = token("tok_1", prev_digest=token("tok_x").digest, prev_expires_at=T0)
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        mark = feed.mark()
        with s.transaction("acct_a") as tx:
            tx.put_token(attrs.evolve(record, prev_digest=None, prev_expires_at=None))
        feed.caught_up()
        events = feed.since(mark)
        assert _told(events, record.digest)
        assert record.prev_digest is not None
        assert _told(events, record.prev_digest)

    def test_feed_publishes_nothing_for_a_rollback(
        self, s: Store, feed: Recording
    ) -> None:
        """A transaction that raises publishes nothing, even after its writes."""
        record = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        feed.caught_up()
        mark = feed.mark()
        with pytest.raises(BoomError), s.transaction("acct_a") as tx:  # noqa: PT012
            tx.put_token(attrs.evolve(record, revoked=True, seated=False, grants={}))
            raise BoomError
        feed.caught_up()
        told = [d for kind, d in feed.since(mark) if kind == "changed"]
        assert not any(record.digest in d for d in told), (
            "a rolled-back change was published"
        )
        assert s.lookup(record.digest) is not None

    def test_feed_delivers_another_store_objects_change(
        self, opener: Opener, s: Store, feed: Recording
    ) -> None:
        """A change committed through another store object on the same backing
        store reaches this store's feed (shared adapters only)."""
        self._need(opener, "shared")
        record = token("tok_1")
        with s.transaction("acct_a") as tx:
            tx.put_token(record)
        other = opener.open()
        mark = feed.mark()
        with other.transaction("acct_a") as tx:
            tx.put_token(attrs.evolve(record, revoked=True, seated=False, grants={}))
        feed.caught_up()
        assert _told(feed.since(mark), record.digest)


def _told(events: list[tuple[str, frozenset[bytes]]], digest: bytes) -> bool:
    """Whether *events* tell a reader to forget *digest* (by name or a reset)."""
    return any(kind == "reset" or digest in found for kind, found in events)
