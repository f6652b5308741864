"""Rotation overlap: ``rotate(..., overlap=timedelta)`` keeps the old value
working for a while, on every store; never past its cap, never after a
revoke, never three live values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troopauth import (
    AccessDenied,
    InvalidArgument,
    InvalidToken,
    Permission,
    TroopAuth,
)

from .conftest import FrozenClock
from .helpers import grant, make_account, snapshot

EDIT = grant("edit", "key:deploy")
HOUR = timedelta(hours=1)


def _works(auth: TroopAuth, value: str, troop_id: str) -> bool:
    try:
        auth.verify(value, troop_id, Permission.EDIT, key="deploy")
    except InvalidToken:
        return False
    return True


class TestOverlap:
    """The old value works until now + overlap (exclusive), then dies."""

    def test_both_values_work_until_the_end(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """During the overlap both values verify (to the same token); at its
        end the old one is refused and the new one goes on."""
        s = make_account(auth)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        new = auth.rotate(s.owner, old.token_id, overlap=HOUR)
        assert new.token_id == old.token_id
        assert auth.authenticate(old.value).token_id == old.token_id
        assert _works(auth, old.value, s.tid)
        assert _works(auth, new.value, s.tid)
        clock.advance(minutes=59, seconds=59)
        assert _works(auth, old.value, s.tid)
        clock.advance(seconds=1)  # exactly now + overlap: refused, like expiry
        assert not _works(auth, old.value, s.tid)
        assert _works(auth, new.value, s.tid)
        assert auth.seats(s.account.id).used == 1

    def test_zero_means_none(self, auth: TroopAuth) -> None:
        """overlap=0 is a plain rotation: the old value dies at once."""
        s = make_account(auth)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        auth.rotate(s.owner, old.token_id, overlap=timedelta(0))
        assert not _works(auth, old.value, s.tid)

    def test_rotating_again_ends_it(self, auth: TroopAuth) -> None:
        """A second rotation ends the first overlap at once: the oldest value
        dies, and with a new overlap only the previous one is kept."""
        s = make_account(auth)
        first = auth.issue_token(s.owner, s.tid, EDIT)
        second = auth.rotate(s.owner, first.token_id, overlap=HOUR)
        third = auth.rotate(s.owner, first.token_id, overlap=HOUR)
        live = [_works(auth, v.value, s.tid) for v in (first, second, third)]
        assert live == [False, True, True]
        auth.rotate(s.owner, first.token_id)
        live = [_works(auth, v.value, s.tid) for v in (first, second, third)]
        assert live == [False, False, False]

    def test_revoke_ends_it(self, auth: TroopAuth) -> None:
        """Revoking kills both values at once."""
        s = make_account(auth)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        new = auth.rotate(s.owner, old.token_id, overlap=HOUR)
        auth.revoke(s.owner, old.token_id)
        assert not _works(auth, old.value, s.tid)
        assert not _works(auth, new.value, s.tid)
        assert auth.seats(s.account.id).used == 0

    def test_leak_report_of_the_old_value_kills_both(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """Reporting the kept value revokes the token: both values die; after
        the overlap the old value is dead and its report changes nothing."""
        s = make_account(auth)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        new = auth.rotate(s.owner, old.token_id, overlap=HOUR)
        assert auth.report_leak(old.value) is True
        assert not _works(auth, new.value, s.tid)
        other = auth.issue_token(s.owner, s.tid, EDIT)
        auth.rotate(s.owner, other.token_id, overlap=HOUR)
        clock.advance(hours=1)
        assert auth.report_leak(other.value) is False

    def test_the_old_value_acts_as_the_token(self, auth: TroopAuth) -> None:
        """During the overlap the old value's principal manages like the new
        one (it is the same token, its grants as they are now)."""
        s = make_account(auth)
        boss = auth.issue_token(s.owner, s.tid, grant("view,edit,manage"))
        auth.rotate(s.owner, boss.token_id, overlap=HOUR)
        actor = auth.authenticate(boss.value)
        auth.issue_token(actor, s.tid, EDIT)
        auth.rotate(s.owner, boss.token_id)  # the overlap ends
        with pytest.raises(AccessDenied):
            auth.issue_token(actor, s.tid, EDIT)


class TestBadOverlap:
    """Overlaps outside 0 to 7 days are refused and change nothing."""

    @pytest.mark.parametrize(
        "bad",
        [timedelta(seconds=-1), timedelta(days=7, microseconds=1), 3600, "1h", None],
    )
    def test_refused(self, auth: TroopAuth, bad: object) -> None:
        """InvalidArgument; the old value still works, the new one never
        existed."""
        s = make_account(auth)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        before = snapshot(auth, [s], [old.value])
        with pytest.raises(InvalidArgument, match="overlap"):
            auth.rotate(s.owner, old.token_id, overlap=bad)  # type: ignore[arg-type]
        assert snapshot(auth, [s], [old.value]) == before

    def test_seven_days_is_the_cap(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """Exactly 7 days is accepted, and the old value dies then."""
        s = make_account(auth)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        auth.rotate(s.owner, old.token_id, overlap=timedelta(days=7))
        clock.advance(days=7)
        assert not _works(auth, old.value, s.tid)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("rotate"), st.integers(0, 7 * 24 * 3600)),
            st.tuples(st.just("advance"), st.integers(0, 8 * 24 * 3600)),
            st.tuples(st.just("revoke"), st.just(0)),
        ),
        max_size=12,
    )
)
def test_overlap_laws(auth: TroopAuth, clock: FrozenClock, steps: list) -> None:  # type: ignore[type-arg]
    """Whatever the rotations, overlaps, time and revokes: at most two values
    work at once; a value works only while its overlap (at most 7 days) runs
    or while it is the current one; nothing works after a revoke."""
    s = make_account(auth)
    first = auth.issue_token(s.owner, s.tid, EDIT)
    values = [first.value]
    kept_until = {first.value: None}  # None: current (works while the token lives)
    revoked = False
    for kind, n in steps:
        if kind == "rotate" and not revoked:
            now = clock.now
            new = auth.rotate(s.owner, first.token_id, overlap=timedelta(seconds=n))
            kept_until = {
                values[-1]: now + timedelta(seconds=n) if n else now,
                new.value: None,
            }
            values.append(new.value)
        elif kind == "advance":
            clock.advance(seconds=n)
        elif kind == "revoke":
            auth.revoke(s.owner, first.token_id)
            revoked = True
        working = [v for v in values if _works(auth, v, s.tid)]
        assert len(working) <= 2
        if revoked:
            assert working == []
            continue
        for value in values:
            until = kept_until.get(value, clock.now)
            expected = until is None or clock.now < until
            assert (value in working) is expected
