"""A Hypothesis property of two CachedStores over one SQLite file: whatever the
interleaving, a verify never accepts a value whose revoke or rotation returned
more than max_staleness earlier (or at all, through the same cache)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from troopauth import (
    AccessDenied,
    InvalidToken,
    NotFound,
    Permission,
    SQLiteStore,
    TroopAuth,
)
from troopauth.cache import CachedStore

from .helpers import grant, make_account

STALENESS = timedelta(milliseconds=40)
TOKENS = 3

#: (which cache, what, which token, how long to wait first in ms)
Step = tuple[int, str, int, int]
steps = st.lists(
    st.tuples(
        st.integers(0, 1),
        st.sampled_from(["verify", "verify", "verify", "revoke", "rotate"]),
        st.integers(0, TOKENS - 1),
        st.sampled_from([0, 0, 0, 1, 20, 50]),
    ),
    min_size=1,
    max_size=25,
)


def test_no_verify_accepts_a_value_dead_longer_than_the_bound(tmp_path: Path) -> None:
    """Any interleaving of verifies, revokes and rotations across two caches:
    an accepted verify's value was never killed more than max_staleness
    before the verify started, nor killed through the same cache at all."""
    path = tmp_path / "fleet.db"
    caches = [CachedStore(SQLiteStore(path), max_staleness=STALENESS) for _ in "ab"]
    try:
        auths = [TroopAuth(c) for c in caches]
        deadline = time.monotonic() + 20
        while not all(c.healthy for c in caches):
            assert time.monotonic() < deadline, "the feeds never became healthy"
            time.sleep(0.005)

        @settings(deadline=None, max_examples=40)
        @given(steps)
        @example([(0, "verify", 0, 0), (0, "revoke", 0, 0), (0, "verify", 0, 0)])
        @example([(1, "verify", 1, 0), (1, "rotate", 1, 0), (1, "verify", 1, 0)])
        @example([(0, "verify", 2, 0), (1, "revoke", 2, 0), (0, "verify", 2, 50)])
        def check(plan: list[Step]) -> None:
            setup = make_account(auths[0], seats=TOKENS + 1)
            tokens = [
                auths[0].issue_token(setup.owner, setup.tid, grant("view"))
                for _ in range(TOKENS)
            ]
            values = [t.value for t in tokens]
            # value -> (when its death returned, through which cache)
            dead: dict[str, tuple[float, int]] = {}
            for which, action, n, wait_ms in plan:
                if wait_ms:
                    time.sleep(wait_ms / 1000)
                auth = auths[which]
                if action == "verify":
                    value = values[n]
                    started = time.monotonic()
                    try:
                        auth.verify(value, setup.tid, Permission.VIEW)
                    except (InvalidToken, AccessDenied):
                        continue
                    if value in dead:
                        at, by = dead[value]
                        assert by != which, "read-your-writes broken"
                        assert started - at <= STALENESS.total_seconds(), (
                            "a value dead for longer than max_staleness was accepted"
                        )
                elif action == "revoke":
                    auth.revoke(setup.owner, tokens[n].token_id)
                    dead.setdefault(values[n], (time.monotonic(), which))
                else:
                    try:
                        fresh = auth.rotate(setup.owner, tokens[n].token_id)
                    except NotFound:  # revoked already
                        continue
                    dead.setdefault(values[n], (time.monotonic(), which))
                    values[n] = fresh.value

        check()
    finally:
        for cache in caches:
            cache.close()
