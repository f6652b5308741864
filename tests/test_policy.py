"""The account's token policy: ``max_token_lifetime`` and ``require_expiry``,
set by ``create_account`` and ``set_policy``, obeyed by issue and attach."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troopauth import InvalidArgument, InvalidToken, Permission, TroopAuth

from .conftest import FrozenClock
from .helpers import Setup, grant, make_account, snapshot

EDIT = grant("edit", "key:deploy")
DAY = timedelta(days=1)


def _account_with(auth: TroopAuth, **policy: Any) -> Setup:
    """An account with ten seats and the given token policy."""
    s = make_account(auth, seats=10)
    auth.set_policy(s.account.id, **policy)
    return s


class TestMaxLifetime:
    """Every token issued under a maximum expires within it."""

    def test_no_expiry_means_the_maximum(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """Issued without expires_at: it expires at now + the maximum, and is
        refused from then on."""
        s = _account_with(auth, max_token_lifetime=DAY)
        issued = auth.issue_token(s.owner, s.tid, EDIT)
        assert auth.token(issued.token_id).expires_at == clock.now + DAY
        clock.advance(days=1)
        assert auth.seats(s.account.id).used == 0

    def test_within_is_kept_beyond_is_refused(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """An expiry within the maximum is kept as asked; one past it is
        InvalidArgument (never clamped) and changes nothing."""
        s = _account_with(auth, max_token_lifetime=DAY)
        soon = clock.now + timedelta(hours=3)
        assert (
            auth.token(
                auth.issue_token(s.owner, s.tid, EDIT, expires_at=soon).token_id
            ).expires_at
            == soon
        )
        edge = clock.now + DAY
        auth.issue_token(s.owner, s.tid, EDIT, expires_at=edge)
        before = snapshot(auth, [s])
        with pytest.raises(InvalidArgument, match="max_token_lifetime"):
            auth.issue_token(
                s.owner, s.tid, EDIT, expires_at=edge + timedelta(microseconds=1)
            )
        assert snapshot(auth, [s]) == before

    def test_personal_token_is_exempt(self, auth: TroopAuth) -> None:
        """The PAT never expires, whatever the policy."""
        s = _account_with(auth, max_token_lifetime=DAY, require_expiry=True)
        fresh = auth.issue_personal_token(s.account.id)
        assert auth.token(fresh.token_id).expires_at is None


class TestRequireExpiry:
    """``require_expiry`` without a maximum: every token names its expiry."""

    def test_refused_without(self, auth: TroopAuth, clock: FrozenClock) -> None:
        """No expires_at: InvalidArgument and nothing changes; with one: fine."""
        s = _account_with(auth, require_expiry=True)
        before = snapshot(auth, [s])
        with pytest.raises(InvalidArgument, match="requires an expires_at"):
            auth.issue_token(s.owner, s.tid, EDIT)
        assert snapshot(auth, [s]) == before
        auth.issue_token(s.owner, s.tid, EDIT, expires_at=clock.now + DAY * 400)


class TestSetPolicy:
    """``set_policy`` changes what it is given and applies from now on."""

    def test_left_out_keeps_its_value(self, auth: TroopAuth) -> None:
        """Each keyword changes its part only; the account reads back both."""
        s = make_account(auth)
        acct = s.account.id
        account = auth.set_policy(acct, max_token_lifetime=DAY)
        assert (account.max_token_lifetime, account.require_expiry) == (DAY, False)
        account = auth.set_policy(acct, require_expiry=True)
        assert (account.max_token_lifetime, account.require_expiry) == (DAY, True)
        account = auth.set_policy(acct, max_token_lifetime=None)
        assert (account.max_token_lifetime, account.require_expiry) == (None, True)
        assert auth.set_policy(acct) == account

    def test_create_account_sets_it(self, auth: TroopAuth) -> None:
        """create_account takes the same keywords, and they are stored."""
        account = auth.create_account(
            seats=1, max_token_lifetime=timedelta(hours=5), require_expiry=True
        )
        again = auth.set_policy(account.id)  # re-reads the stored record
        assert again.max_token_lifetime == timedelta(hours=5)
        assert again.require_expiry

    def test_existing_tokens_keep_their_expiry(
        self, auth: TroopAuth, clock: FrozenClock
    ) -> None:
        """A token issued before the policy keeps working and keeps its expiry,
        but reaches no new troop: attaching it is InvalidArgument."""
        s = make_account(auth, troops=2)
        old = auth.issue_token(s.owner, s.tid, EDIT)
        auth.set_policy(s.account.id, max_token_lifetime=DAY)
        clock.advance(days=30)
        auth.verify(old.value, s.tid, Permission.EDIT, key="deploy")
        assert auth.token(old.token_id).expires_at is None
        with pytest.raises(InvalidArgument, match="issue a new token"):
            auth.attach(s.owner, old.token_id, s.troops[1].id, EDIT)
        fresh = auth.issue_token(s.owner, s.tid, EDIT)
        auth.attach(s.owner, fresh.token_id, s.troops[1].id, EDIT)

    @pytest.mark.parametrize(
        "bad",
        [
            timedelta(0),
            timedelta(seconds=-1),
            timedelta(days=36_526),
            3600,
            "1d",
            True,
        ],
    )
    def test_bad_lifetime(self, auth: TroopAuth, bad: object) -> None:
        """Not a positive timedelta of at most 100 years: InvalidArgument, and
        the policy is unchanged."""
        s = make_account(auth)
        with pytest.raises(InvalidArgument):
            auth.set_policy(s.account.id, max_token_lifetime=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument):
            auth.create_account(seats=1, max_token_lifetime=bad)  # type: ignore[arg-type]
        assert auth.set_policy(s.account.id).max_token_lifetime is None

    @pytest.mark.parametrize("bad", [None, 1, "yes"])
    def test_bad_flag(self, auth: TroopAuth, bad: object) -> None:
        """require_expiry is True or False."""
        s = make_account(auth)
        with pytest.raises(InvalidArgument):
            auth.set_policy(s.account.id, require_expiry=bad)  # type: ignore[arg-type]

    def test_naive_expiry_still_refused(self, auth: TroopAuth) -> None:
        """A naive expires_at is InvalidArgument under a policy as without."""
        s = _account_with(auth, max_token_lifetime=DAY)
        with pytest.raises(InvalidArgument, match="timezone-aware"):
            auth.issue_token(
                s.owner,
                s.tid,
                EDIT,
                expires_at=datetime(2030, 1, 1),
            )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("policy"), st.none() | st.integers(1, 10_000)),
            st.tuples(st.just("issue"), st.none() | st.integers(1, 20_000)),
            st.tuples(st.just("advance"), st.integers(0, 20_000)),
        ),
        max_size=20,
    )
)
def test_no_token_outlives_the_maximum(
    auth: TroopAuth, clock: FrozenClock, steps: list[tuple[str, int | None]]
) -> None:
    """On every store, whatever the order of policy changes, issues and time:
    every token issued under a maximum expires no later than its issue time
    plus that maximum, and is refused by verify from then on."""
    s = make_account(auth, seats=100)
    maximum: timedelta | None = None
    issued: list[tuple[str, str, datetime, timedelta]] = []
    for kind, n in steps:
        if kind == "policy":
            maximum = None if n is None else timedelta(seconds=n)
            auth.set_policy(s.account.id, max_token_lifetime=maximum)
        elif kind == "issue":
            asked = None if n is None else clock.now + timedelta(seconds=n)
            try:
                token = auth.issue_token(s.owner, s.tid, EDIT, expires_at=asked)
            except InvalidArgument:
                assert maximum is not None
                assert asked is not None
                assert asked > clock.now + maximum
                continue
            if maximum is not None:
                issued.append((token.token_id, token.value, clock.now, maximum))
        else:
            clock.advance(seconds=n or 0)
    for token_id, value, at, most in issued:
        expires_at = auth.token(token_id).expires_at
        assert expires_at is not None
        assert expires_at <= at + most
        clock.now = max(clock.now, at + most)
        with pytest.raises(InvalidToken):
            auth.verify(value, s.tid, Permission.EDIT, key="deploy")
