"""``last_used_at``: successful verifies and authentications note a token,
and the notes are written off the hot path, at most once per interval."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from troopauth import (
    AccessDenied,
    InvalidArgument,
    InvalidToken,
    MemoryStore,
    Permission,
    TroopAuth,
)
from troopauth.store import Store

from .conftest import FrozenClock
from .helpers import grant, make_account

EDIT = grant("edit", "key:deploy")


class TestLastUsed:
    """Notes on success only, written by flush (or the background thread)."""

    def test_verify_and_authenticate_are_uses(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """Nothing until used; a verify, then an authentication, stamp the
        clock's time at the write, shown by token() and tokens()."""
        s = make_account(auth)
        ci = auth.issue_token(s.owner, s.tid, EDIT)
        auth.flush_last_used()
        assert auth.token(ci.token_id).last_used_at is None
        auth.verify(ci.value, s.tid, Permission.EDIT, key="deploy")
        clock.advance(seconds=5)
        auth.flush_last_used()
        first = clock.now
        assert auth.token(ci.token_id).last_used_at == first
        clock.advance(minutes=2)
        auth.authenticate(ci.value)
        auth.flush_last_used()
        assert auth.tokens(s.tid)[0].last_used_at == clock.now

    def test_refusals_are_not_uses(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """A denied verify, or a dead value, notes nothing."""
        s = make_account(auth)
        ci = auth.issue_token(s.owner, s.tid, EDIT)
        with pytest.raises(AccessDenied):
            auth.verify(ci.value, s.tid, Permission.EDIT, key="other")
        old = ci.value
        again = auth.rotate(s.owner, ci.token_id)
        with pytest.raises(InvalidToken):
            auth.verify(old, s.tid, Permission.EDIT, key="deploy")
        auth.flush_last_used()
        assert auth.token(again.token_id).last_used_at is None

    def test_changes_keep_the_stamp(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """Rotating, attaching and detaching leave the written stamp alone,
        and a stamp never moves back."""
        s = make_account(auth, troops=2)
        ci = auth.issue_token(s.owner, s.tid, EDIT)
        auth.verify(ci.value, s.tid, Permission.EDIT, key="deploy")
        auth.flush_last_used()
        stamped = clock.now
        clock.advance(hours=1)
        auth.rotate(s.owner, ci.token_id)
        auth.attach(s.owner, ci.token_id, s.troops[1].id, EDIT)
        auth.detach(s.owner, ci.token_id, s.troops[1].id)
        assert auth.token(ci.token_id).last_used_at == stamped
        # a write with an earlier time does not move it back
        auth.store.record_last_used({ci.token_id: stamped - timedelta(days=1)})  # type: ignore[attr-defined]
        assert auth.token(ci.token_id).last_used_at == stamped

    def test_many_uses_one_write(self, store: Store, clock: FrozenClock) -> None:
        """A thousand verifies of one token between writes make one write of
        one stamp."""
        writes: list[dict[str, object]] = []
        real = store.record_last_used  # type: ignore[attr-defined]

        def counting(stamps: dict[str, object]) -> None:
            writes.append(dict(stamps))
            real(stamps)

        store.record_last_used = counting  # type: ignore[attr-defined]
        auth = TroopAuth(store, clock=clock)
        s = make_account(auth)
        ci = auth.issue_token(s.owner, s.tid, EDIT)
        auth.flush_last_used()  # the owner's authentication in make_account
        writes.clear()
        for _ in range(1000):
            auth.verify(ci.value, s.tid, Permission.EDIT, key="deploy")
        auth.flush_last_used()
        assert writes == [{ci.token_id: clock.now}]

    def test_off(self, store: Store, clock: FrozenClock) -> None:
        """last_used_interval=None records nothing."""
        auth = TroopAuth(store, clock=clock, last_used_interval=None)
        s = make_account(auth)
        ci = auth.issue_token(s.owner, s.tid, EDIT)
        auth.verify(ci.value, s.tid, Permission.EDIT, key="deploy")
        auth.flush_last_used()
        assert auth.token(ci.token_id).last_used_at is None

    @pytest.mark.parametrize("bad", [timedelta(0), timedelta(seconds=-1), 60, "1m"])
    def test_bad_interval(self, bad: object) -> None:
        """The interval is a positive timedelta or None."""
        with pytest.raises(InvalidArgument):
            TroopAuth(MemoryStore(), last_used_interval=bad)  # type: ignore[arg-type]


def test_the_background_thread_writes() -> None:
    """With a short interval and no flush call, the stamp appears by itself
    (the thread wakes every second; this waits for it, up to 30 s)."""
    auth = TroopAuth(MemoryStore(), last_used_interval=timedelta(milliseconds=10))
    s = make_account(auth)
    ci = auth.issue_token(s.owner, s.tid, EDIT)
    auth.verify(ci.value, s.tid, Permission.EDIT, key="deploy")
    deadline = time.monotonic() + 30
    while auth.token(ci.token_id).last_used_at is None:
        assert time.monotonic() < deadline, "no stamp was written"
        time.sleep(0.05)


def test_a_store_without_stamps_is_fine() -> None:
    """A store with no record_last_used: verifies work, nothing is noted."""

    class Plain(MemoryStore):
        record_last_used = None  # type: ignore[assignment]

    auth = TroopAuth(Plain())
    s = make_account(auth)
    ci = auth.issue_token(s.owner, s.tid, EDIT)
    auth.verify(ci.value, s.tid, Permission.EDIT, key="deploy")
    auth.flush_last_used()
    assert auth.token(ci.token_id).last_used_at is None
