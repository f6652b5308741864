"""``report_leak(value)``: whoever holds a value kills its token at once; a
dead, unknown or malformed value changes nothing; bad input is refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from troopauth import (
    AuditAction,
    InvalidArgument,
    InvalidToken,
    Permission,
    TroopAuth,
)

from .conftest import FrozenClock
from .helpers import grant, make_account, snapshot
from .strategies import non_text

EDIT = grant("edit", "key:deploy")


class TestReportLeak:
    """A live value is revoked and audited; the answer says only that."""

    def test_troop_token(self, auth: TroopAuth) -> None:
        """The token dies everywhere, its seat is freed, and each troop it was
        attached to logs a leak report; the chains stay intact."""
        s = make_account(auth, seats=1, troops=2)
        issued = auth.issue_token(s.owner, s.tid, EDIT)
        auth.attach(s.owner, issued.token_id, s.troops[1].id, EDIT)
        assert auth.report_leak(issued.value) is True
        with pytest.raises(InvalidToken):
            auth.verify(issued.value, s.tid, Permission.EDIT, key="deploy")
        assert auth.seats(s.account.id).used == 0
        assert auth.token(issued.token_id).revoked
        for troop_id in s.troop_ids():
            last = auth.audit_log(troop_id)[-1]
            assert (last.action, last.token_id, last.actor) == (
                AuditAction.LEAK_REPORT,
                issued.token_id,
                "leak-report",
            )
            assert auth.check_audit_log(troop_id) is None
        auth.issue_token(s.owner, s.tid, EDIT)  # the seat is really free

    def test_personal_token(self, auth: TroopAuth) -> None:
        """A leaked PAT dies at once; the account's log says so; the account
        has none until a new one is issued, which then works."""
        s = make_account(auth)
        assert auth.report_leak(s.pat.value) is True
        with pytest.raises(InvalidToken):
            auth.authenticate(s.pat.value)
        log = auth.account_audit_log(s.account.id)
        assert [e.action for e in log][-1] == AuditAction.LEAK_REPORT
        assert auth.check_account_audit_log(s.account.id) is None
        auth.create_troop(s.account.id, "later")  # no PAT to extend: fine
        fresh = auth.issue_personal_token(s.account.id)
        owner = auth.authenticate(fresh.value)
        auth.issue_token(owner, s.tid, EDIT)

    def test_token_attached_nowhere(self, auth: TroopAuth) -> None:
        """A token attached to no troop: the report goes to the account log."""
        s = make_account(auth)
        issued = auth.issue_token(s.owner, s.tid, EDIT)
        auth.detach(s.owner, issued.token_id, s.tid)
        assert auth.report_leak(issued.value) is True
        last = auth.account_audit_log(s.account.id)[-1]
        assert (last.action, last.token_id) == (
            AuditAction.LEAK_REPORT,
            issued.token_id,
        )

    def test_surrounding_white_space(self, auth: TroopAuth) -> None:
        """A value pasted with a newline around it is still the value."""
        s = make_account(auth)
        issued = auth.issue_token(s.owner, s.tid, EDIT)
        assert auth.report_leak(f"  {issued.value}\n") is True

    @pytest.mark.parametrize("how", ["revoked", "rotated", "expired", "reported"])
    def test_dead_values_change_nothing(
        self, auth: TroopAuth, clock: FrozenClock, how: str
    ) -> None:
        """A revoked, rotated-away, expired or already reported value: False,
        and nothing changes (seats, listings, logs, verify answers)."""
        s = make_account(auth, seats=3)
        soon = clock.now.replace(year=clock.now.year + 1)
        issued = auth.issue_token(s.owner, s.tid, EDIT, expires_at=soon)
        other = auth.issue_token(s.owner, s.tid, EDIT)
        if how == "revoked":
            auth.revoke(s.owner, issued.token_id)
        elif how == "rotated":
            auth.rotate(s.owner, issued.token_id)
        elif how == "expired":
            clock.now = soon
        else:
            assert auth.report_leak(issued.value)
        before = snapshot(auth, [s], [issued.value, other.value])
        assert auth.report_leak(issued.value) is False
        assert snapshot(auth, [s], [issued.value, other.value]) == before

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "cpt_pat_",
            "cpt_pat_" + "A" * 36,  # the right shape, a wrong checksum
            "not a token at all",
            "cpt_pat_" + "é" * 36,
        ],
    )
    def test_unknown_or_malformed(self, auth: TroopAuth, value: str) -> None:
        """Malformed and unknown values: False, nothing changes."""
        s = make_account(auth)
        live = auth.issue_token(s.owner, s.tid, EDIT)
        before = snapshot(auth, [s], [live.value])
        assert auth.report_leak(value) is False
        assert snapshot(auth, [s], [live.value]) == before

    def test_well_formed_unknown(self, auth: TroopAuth) -> None:
        """A well-formed value no token holds: False."""
        from troopauth.tokens import new_value

        make_account(auth)
        assert auth.report_leak(new_value()) is False


class TestBadInput:
    """Input that cannot be a value is a clear InvalidArgument that echoes
    nothing."""

    @pytest.mark.parametrize("value", [None, 7, b"cpt_pat_", ["x"], object()])
    def test_not_text(self, value: object) -> None:
        """Not a string: InvalidArgument."""
        from troopauth import MemoryStore

        with pytest.raises(InvalidArgument):
            TroopAuth(MemoryStore()).report_leak(value)  # type: ignore[arg-type]

    def test_a_megabyte(self, auth: TroopAuth) -> None:
        """A 1 MB string: InvalidArgument, its text nowhere in the message."""
        s = make_account(auth)
        huge = s.pat.value * 24_000
        with pytest.raises(InvalidArgument) as info:
            auth.report_leak(huge)
        assert "cpt_pat_" not in str(info.value)
        auth.authenticate(s.pat.value)  # nothing was revoked

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(value=non_text | st.text(max_size=80))
    def test_fuzzed(self, auth: TroopAuth, value: object) -> None:
        """Any object or text: a bool or InvalidArgument, and the live value
        stays live unless it was the one reported."""
        s = make_account(auth)
        with contextlib.suppress(InvalidArgument):
            assert auth.report_leak(value) is False  # type: ignore[arg-type]
        auth.authenticate(s.pat.value)
