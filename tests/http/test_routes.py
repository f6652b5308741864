"""The JSON API over httpx: every facade call, its statuses and its bodies.

Every answer here also passes the OpenAPI checks of the ``client`` fixture.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from troopauth import AuditAction, Grant, InvalidToken, Permission

from ..helpers import make_account, snapshot
from .conftest import World, bearer


def _state(world: World, values: tuple[str, ...] = ()) -> dict[str, object]:
    return snapshot(world.auth, [world.setup], values, members=["alice"])


class TestIssue:
    """POST /troops/{troop_id}/tokens."""

    def test_issue_returns_the_value_once(self, world):
        """201, no-store, a live value that verifies with the grant asked for."""
        response = world.client.post(
            f"/troops/{world.tid}/tokens",
            json={
                "name": "ci",
                "grant": {"permissions": ["view", "EDIT"], "scope": "key:prod/*"},
            },
            headers=world.pat,
        )
        assert response.status_code == 201
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        principal = world.auth.verify(
            body["value"], world.tid, Permission.EDIT, key="prod/db"
        )
        assert principal.token_id == body["token_id"]
        listed = world.client.get(f"/troops/{world.tid}/tokens", headers=world.pat)
        (token,) = listed.json()["tokens"]
        assert token["name"] == "ci"
        assert token["hint"] == body["hint"]
        assert token["grants"][world.tid] == {
            "permissions": ["view", "edit"],
            "scope": "key:prod/*",
        }
        assert body["value"] not in listed.text

    def test_expiry(self, world):
        """expires_at is kept and the token dies at that time."""
        when = world.clock.now + timedelta(hours=1)
        body = world.issue(expires_at=when.isoformat())
        (token,) = world.client.get(
            f"/troops/{world.tid}/tokens", headers=world.pat
        ).json()["tokens"]
        assert token["expires_at"] == when.isoformat()
        world.clock.advance(hours=1)
        assert world.client.get("/me", headers=bearer(body["value"])).status_code == 401

    def test_seats_exhausted_is_409_and_changes_nothing(self, world):
        """With no free seat: 409 seats-exhausted, the state unchanged."""
        for _ in range(3):
            world.issue()
        before = _state(world)
        response = world.client.post(
            f"/troops/{world.tid}/tokens",
            json={"grant": {"permissions": ["view"], "scope": "*"}},
            headers=world.pat,
        )
        assert response.status_code == 409
        assert response.json()["type"] == "urn:troopauth:problem:seats-exhausted"
        assert _state(world) == before

    def test_escalation_is_403_with_challenge(self, world):
        """A VIEW|MANAGE manager may not grant EDIT: 403 insufficient_scope."""
        manager = world.issue(permissions=("view", "manage"))
        response = world.client.post(
            f"/troops/{world.tid}/tokens",
            json={"grant": {"permissions": ["edit"], "scope": "*"}},
            headers=bearer(manager["value"]),
        )
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope"'
        )

    def test_troop_of_another_account_is_404(self, world):
        """An id of another account's troop: 404, nothing issued anywhere."""
        other = make_account(world.auth)
        before = snapshot(world.auth, [world.setup, other])
        response = world.client.post(
            f"/troops/{other.tid}/tokens",
            json={"grant": {"permissions": ["view"], "scope": "*"}},
            headers=world.pat,
        )
        assert response.status_code == 404
        assert snapshot(world.auth, [world.setup, other]) == before


class TestAttachDetach:
    """PUT and DELETE /troops/{troop_id}/tokens/{token_id}: idempotent."""

    def test_put_twice_leaves_one_attachment(self, world):
        """Attaching twice with one grant gives the same token state, one seat."""
        token = world.issue()
        url = f"/troops/{world.tid2}/tokens/{token['token_id']}"
        body = {"grant": {"permissions": ["use"], "scope": "key:deploy"}}
        first = world.client.put(url, json=body, headers=world.pat)
        second = world.client.put(url, json=body, headers=world.pat)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert first.json()["grants"][world.tid2] == {
            "permissions": ["use"],
            "scope": "key:deploy",
        }
        assert world.auth.seats(world.setup.account.id).used == 1
        world.auth.verify(token["value"], world.tid2, Permission.USE, key="deploy")

    def test_put_replaces_the_grant(self, world):
        """Re-attaching to a troop replaces the grant held there."""
        token = world.issue(permissions=("view", "edit"))
        url = f"/troops/{world.tid}/tokens/{token['token_id']}"
        body = {"grant": {"permissions": ["view"], "scope": "*"}}
        assert world.client.put(url, json=body, headers=world.pat).status_code == 200
        assert world.auth.introspect(token["value"]).grants[world.tid] == Grant.parse(
            "view"
        )

    def test_delete_twice_is_204_both_times_with_no_change(self, world):
        """DELETE detaches (204); again, 204 too and nothing changes."""
        token = world.issue()
        url = f"/troops/{world.tid}/tokens/{token['token_id']}"
        assert world.client.delete(url, headers=world.pat).status_code == 204
        assert world.auth.seats(world.setup.account.id).used == 0
        before = _state(world, (token["value"],))
        again = world.client.delete(url, headers=world.pat)
        assert again.status_code == 204
        assert _state(world, (token["value"],)) == before

    def test_delete_of_no_token_is_404(self, world):
        """Detaching a token id that does not exist, or is another account's,
        is 404; a troop of another account is 404 too."""
        other = make_account(world.auth)
        theirs = world.auth.issue_token(other.owner, other.tid, Grant.parse("view"))
        mine = world.issue()
        before = snapshot(world.auth, [world.setup, other])
        for url in (
            f"/troops/{world.tid}/tokens/tok_nope",
            f"/troops/{world.tid}/tokens/{theirs.token_id}",
            f"/troops/{other.tid}/tokens/{theirs.token_id}",
            f"/troops/{other.tid}/tokens/{mine['token_id']}",
        ):
            response = world.client.delete(url, headers=world.pat)
            assert response.status_code == 404, url
        assert snapshot(world.auth, [world.setup, other]) == before

    def test_delete_of_a_revoked_token_is_204(self, world):
        """A revoked token is detached from everything: DELETE answers 204."""
        token = world.issue()
        world.client.post(f"/tokens/{token['token_id']}/revoke", headers=world.pat)
        url = f"/troops/{world.tid}/tokens/{token['token_id']}"
        assert world.client.delete(url, headers=world.pat).status_code == 204

    def test_delete_of_an_expired_attached_token_is_404(self, world):
        """An expired token still attached to the troop is not detached by a
        refused DELETE: 404, and it is still listed there."""
        when = world.clock.now + timedelta(minutes=5)
        token = world.issue(expires_at=when.isoformat())
        world.clock.advance(minutes=5)
        url = f"/troops/{world.tid}/tokens/{token['token_id']}"
        assert world.client.delete(url, headers=world.pat).status_code == 404
        listed = world.client.get(f"/troops/{world.tid}/tokens", headers=world.pat)
        assert token["token_id"] in {t["token_id"] for t in listed.json()["tokens"]}

    def test_second_delete_still_needs_manage(self, world):
        """Detaching again with a token that cannot manage the troop: 403."""
        token = world.issue()
        url = f"/troops/{world.tid}/tokens/{token['token_id']}"
        assert world.client.delete(url, headers=world.pat).status_code == 204
        viewer = world.issue(permissions=("view",))
        response = world.client.delete(url, headers=bearer(viewer["value"]))
        assert response.status_code == 403


class TestRotateRevoke:
    """POST /tokens/{token_id}/rotate and /revoke."""

    def test_rotate_kills_the_old_value(self, world):
        """Rotate: same id, a new value once; the old value is refused at once."""
        token = world.issue()
        response = world.client.post(
            f"/tokens/{token['token_id']}/rotate", headers=world.pat
        )
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        new = response.json()
        assert new["token_id"] == token["token_id"]
        assert new["value"] != token["value"]
        with pytest.raises(InvalidToken):
            world.auth.authenticate(token["value"])
        world.auth.verify(new["value"], world.tid, Permission.VIEW)

    def test_rotated_bearer_is_401(self, world):
        """A manager token rotated away can no longer act: 401 invalid_token."""
        manager = world.issue(permissions=("view", "manage"))
        world.client.post(f"/tokens/{manager['token_id']}/rotate", headers=world.pat)
        response = world.client.get(
            f"/troops/{world.tid}/tokens", headers=bearer(manager["value"])
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'

    def test_revoke_frees_the_seat_and_repeats(self, world):
        """Revoke: 204, the seat freed; again: 204 and nothing changes."""
        token = world.issue()
        url = f"/tokens/{token['token_id']}/revoke"
        assert world.client.post(url, headers=world.pat).status_code == 204
        seats = world.client.get(
            f"/accounts/{world.setup.account.id}/seats", headers=world.pat
        ).json()
        assert seats == {"capacity": 3, "used": 0, "free": 3}
        before = _state(world, (token["value"],))
        assert world.client.post(url, headers=world.pat).status_code == 204
        assert _state(world, (token["value"],)) == before

    def test_unknown_token_is_404(self, world):
        """Rotating a token id that does not exist: 404 problem."""
        response = world.client.post("/tokens/tok_nope/rotate", headers=world.pat)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


class TestMembers:
    """PUT and DELETE /troops/{troop_id}/members/{member_id}."""

    def test_add_and_remove(self, world):
        """A member added gets the grant; removed, loses it; removing again: 404."""
        url = f"/troops/{world.tid}/members/alice"
        body = {"grant": {"permissions": ["view"], "scope": "key:docs"}}
        assert world.client.put(url, json=body, headers=world.pat).status_code == 204
        alice = world.auth.member(world.setup.account.id, "alice")
        world.auth.authorize(alice, world.tid, Permission.VIEW, key="docs")
        assert world.client.delete(url, headers=world.pat).status_code == 204
        assert world.client.delete(url, headers=world.pat).status_code == 404

    def test_bad_member_id_is_422(self, world):
        """A member id the facade refuses (too long) is 422, nothing changes."""
        before = _state(world)
        response = world.client.put(
            f"/troops/{world.tid}/members/{'m' * 300}",
            json={"grant": {"permissions": ["view"], "scope": "*"}},
            headers=world.pat,
        )
        assert response.status_code == 422
        assert _state(world) == before


class TestReads:
    """Seats, the audit logs and their checks; who may read them."""

    def test_audit_log_and_check(self, world):
        """The troop log lists issue and rotate, oldest first; the chain is intact."""
        token = world.issue()
        world.client.post(f"/tokens/{token['token_id']}/rotate", headers=world.pat)
        events = world.client.get(
            f"/troops/{world.tid}/audit", headers=world.pat
        ).json()["events"]
        assert [e["action"] for e in events] == [
            AuditAction.ISSUE.value,
            AuditAction.ROTATE.value,
        ]
        assert all(token["value"] not in str(e) for e in events)
        check = world.client.get(f"/troops/{world.tid}/audit/check", headers=world.pat)
        assert check.json() == {"intact": True, "first_broken": None}

    def test_account_log_needs_the_pat(self, world):
        """The account log: the PAT reads it; a manager token gets 403."""
        acct = world.setup.account.id
        events = world.client.get(f"/accounts/{acct}/audit", headers=world.pat)
        assert [e["action"] for e in events.json()["events"]] == ["pat.issue"]
        check = world.client.get(f"/accounts/{acct}/audit/check", headers=world.pat)
        assert check.json() == {"intact": True, "first_broken": None}
        manager = world.issue(permissions=("manage",))
        refused = world.client.get(
            f"/accounts/{acct}/audit", headers=bearer(manager["value"])
        )
        assert refused.status_code == 403

    def test_other_accounts_reads_are_404(self, world):
        """Seats, tokens and logs of another account: 404 for each."""
        other = make_account(world.auth)
        for url in (
            f"/accounts/{other.account.id}/seats",
            f"/accounts/{other.account.id}/audit",
            f"/troops/{other.tid}/tokens",
            f"/troops/{other.tid}/audit",
            f"/troops/{other.tid}/audit/check",
            "/troops/troop_unknown/tokens",
        ):
            assert world.client.get(url, headers=world.pat).status_code == 404, url

    def test_listing_needs_manage_on_the_whole_troop(self, world):
        """A token with VIEW only may not list the troop's tokens: 403."""
        viewer = world.issue(permissions=("view", "edit", "use"))
        response = world.client.get(
            f"/troops/{world.tid}/tokens", headers=bearer(viewer["value"])
        )
        assert response.status_code == 403
        scoped = world.issue(permissions=("manage",), scope="key:a")
        response = world.client.get(
            f"/troops/{world.tid}/audit", headers=bearer(scoped["value"])
        )
        assert response.status_code == 403

    def test_me(self, world):
        """GET /me names the caller's principal."""
        body = world.client.get("/me", headers=world.pat).json()
        assert body == {
            "kind": "personal",
            "account_id": world.setup.account.id,
            "token_id": world.owner.token_id,
            "member_id": None,
        }
