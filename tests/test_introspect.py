"""TroopAuth.introspect: what a live value holds now, in one lookup."""

from __future__ import annotations

from datetime import timedelta

import pytest

from troopauth import Grant, InvalidToken, Kind, TokenInfo

from .helpers import make_account


class TestIntrospect:
    """introspect(value) answers like authenticate, with the token's grants."""

    def test_live_value(self, auth, clock):
        """A live value gives its TokenInfo: grants by troop, expiry, no secret."""
        world = make_account(auth, troops=2)
        when = clock.now + timedelta(hours=1)
        grant = Grant.parse("edit", "key:deploy")
        issued = auth.issue_token(
            world.owner, world.tid, grant, name="ci", expires_at=when
        )
        auth.attach(world.owner, issued.token_id, world.troops[1].id, Grant.full())
        info = auth.introspect(issued.value)
        assert isinstance(info, TokenInfo)
        assert info.token_id == issued.token_id
        assert dict(info.grants) == {world.tid: grant, world.troops[1].id: Grant.full()}
        assert info.expires_at == when
        assert info.kind is Kind.TROOP
        assert issued.value not in repr(info)

    def test_personal_token(self, auth):
        """The PAT's info holds the full grant on every troop of its account."""
        world = make_account(auth, troops=2)
        info = auth.introspect(world.pat.value)
        assert info.kind is Kind.PERSONAL
        assert dict(info.grants) == {t: Grant.full() for t in world.troop_ids()}

    @pytest.mark.parametrize("how", ["rotated", "revoked", "expired", "garbage"])
    def test_dead_values(self, auth, clock, how):
        """Rotated, revoked, expired and malformed values: InvalidToken."""
        world = make_account(auth)
        issued = auth.issue_token(
            world.owner,
            world.tid,
            Grant.parse("view"),
            expires_at=clock.now + timedelta(seconds=5),
        )
        value = issued.value
        if how == "rotated":
            auth.rotate(world.owner, issued.token_id)
        elif how == "revoked":
            auth.revoke(world.owner, issued.token_id)
        elif how == "expired":
            clock.advance(seconds=5)
        else:
            value = value[:-1]
        with pytest.raises(InvalidToken):
            auth.introspect(value)
