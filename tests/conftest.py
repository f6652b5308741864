"""Shared fixtures and the Hypothesis profiles.

Profiles: ``ci`` (thorough, chosen when ``CI`` is set), ``dev`` (the default,
quick) and ``debug``. Pick one with ``HYPOTHESIS_PROFILE=...``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Verbosity, settings

from troopauth import MemoryStore, SQLiteStore, TroopAuth

settings.register_profile(
    "ci",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile(
    "debug", max_examples=10, deadline=None, verbosity=Verbosity.verbose
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


class FrozenClock:
    """A clock that stands still until a test moves it: no sleeps for expiry."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen, advanceable clock."""
    return FrozenClock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Each built-in embedded store, fresh per test."""
    if request.param == "memory":
        with MemoryStore() as s:
            yield s
    else:
        with SQLiteStore(tmp_path / "troopauth.db") as s:
            yield s


@pytest.fixture
def auth(store: MemoryStore | SQLiteStore, clock: FrozenClock) -> TroopAuth:
    """A TroopAuth over each store, on the frozen clock."""
    return TroopAuth(store, clock=clock)
