"""Who is asking: the bearer token (RFC 6750 answers) or the host's hook."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.requests import Request

from troopauth import Grant, MemoryStore, Principal, TroopAuth
from troopauth.http import create_app

from ..helpers import make_account
from .conftest import World, bearer, checked_client


class TestBearer:
    """401 and 403 carry the RFC 6750 challenge; the value is never echoed."""

    def test_missing(self, world: World):
        """No credentials: 401 with a bare Bearer challenge."""
        response = world.client.get(f"/troops/{world.tid}/tokens")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["type"] == "urn:troopauth:problem:missing-token"

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer cpt_pat_unknown",
            "Bearer",
            "Bearer a b",
            "Bearer cpt_pat_" + "A" * 36,
        ],
    )
    def test_invalid(self, world: World, header: str):
        """Malformed or unknown bearer values: 401 invalid_token, nothing echoed."""
        response = world.client.get("/me", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert "cpt_pat_" not in response.text

    def test_two_authorization_headers(self, world: World):
        """Two Authorization headers are refused as invalid, not guessed at."""
        response = world.client.get(
            "/me",
            headers=[
                ("Authorization", f"Bearer {world.setup.pat.value}"),
                ("Authorization", f"Bearer {world.setup.pat.value}"),
            ],
        )
        assert response.status_code == 401

    def test_expired_bearer(self, world: World):
        """A manager token past its expiry: 401, as if unknown."""
        manager = world.issue(
            permissions=("manage",),
            expires_at=(world.clock.now + timedelta(minutes=5)).isoformat(),
        )
        assert world.client.get("/me", headers=bearer(manager["value"])).is_success
        world.clock.advance(minutes=5)
        response = world.client.get(
            f"/troops/{world.tid}/tokens", headers=bearer(manager["value"])
        )
        assert response.status_code == 401

    def test_revoked_pat_replaced(self, world: World):
        """A replaced PAT stops working at once: 401."""
        old = world.pat
        world.auth.issue_personal_token(world.setup.account.id)
        assert world.client.get("/me", headers=old).status_code == 401

    def test_realm(self, world: World):
        """With realm= the challenges name it."""
        app = create_app(world.auth, realm="tokens")
        with checked_client(app) as client:
            missing = client.get("/me")
            invalid = client.get("/me", headers=bearer("cpt_pat_x"))
        assert missing.headers["www-authenticate"] == 'Bearer realm="tokens"'
        assert invalid.headers["www-authenticate"] == (
            'Bearer realm="tokens", error="invalid_token"'
        )


class TestActorHook:
    """A host-supplied hook gives the actor of requests without a bearer token."""

    def _app(self, world: World, hook):
        return checked_client(create_app(world.auth, actor_hook=hook))

    def test_member_from_the_hook_manages(self, world: World):
        """The hook's member, a manager of the troop, issues a token."""
        world.auth.add_member(world.owner, world.tid, "alice", Grant.full())
        alice = world.auth.member(world.setup.account.id, "alice")

        def hook(request: Request) -> Principal | None:
            return alice if request.headers.get("x-user") == "alice" else None

        with self._app(world, hook) as client:
            response = client.post(
                f"/troops/{world.tid}/tokens",
                json={"grant": {"permissions": ["view"], "scope": "*"}},
                headers={"X-User": "alice"},
            )
            assert response.status_code == 201
            events = world.auth.audit_log(world.tid)
            assert events[-1].actor == "member:alice"
            nobody = client.get(f"/troops/{world.tid}/tokens")
            assert nobody.status_code == 401

    def test_async_hook_and_denial_without_challenge(self, world: World):
        """An async hook works; a hook actor refused gets 403 without a challenge."""
        world.auth.add_member(world.owner, world.tid, "bob", Grant.parse("view"))
        bob = world.auth.member(world.setup.account.id, "bob")

        async def hook(_: Request) -> Principal:
            return bob

        with self._app(world, hook) as client:
            response = client.get(f"/troops/{world.tid}/tokens")
        assert response.status_code == 403
        assert "www-authenticate" not in response.headers

    def test_bearer_wins_over_the_hook(self, world: World):
        """A request with a bearer token is judged by it, not by the hook."""
        called = []

        def hook(_: Request) -> None:
            called.append(True)

        with self._app(world, hook) as client:
            assert client.get("/me", headers=world.pat).json()["kind"] == "personal"
            assert client.get("/me", headers=bearer("cpt_pat_x")).status_code == 401
        assert called == []

    def test_hook_member_lists_the_troops_it_manages(self, world: World):
        """A hook member managing the first troop as a whole (and viewing the
        second) is listed the first troop only, and reads its members."""
        world.auth.add_member(world.owner, world.tid, "alice", Grant.full())
        world.auth.add_member(world.owner, world.tid2, "alice", Grant.parse("view"))
        alice = world.auth.member(world.setup.account.id, "alice")
        with self._app(world, lambda _: alice) as client:
            troops = client.get(f"/accounts/{world.setup.account.id}/troops")
            assert [t["troop_id"] for t in troops.json()["troops"]] == [world.tid]
            members = client.get(f"/troops/{world.tid}/members").json()["members"]
            assert [m["member_id"] for m in members] == ["alice"]
            refused = client.get(f"/troops/{world.tid2}/members")
            assert refused.status_code == 403

    def test_hook_of_another_account_reaches_nothing(self, world: World):
        """A member of another account, from the hook, gets 404 on this troop."""
        other = make_account(world.auth)
        world.auth.add_member(other.owner, other.tid, "eve", Grant.full())
        eve = world.auth.member(other.account.id, "eve")
        with self._app(world, lambda _: eve) as client:
            response = client.get(f"/troops/{world.tid}/tokens")
        assert response.status_code == 404


def test_create_app_refuses_bad_options():
    """create_app checks its arguments instead of failing on the first request."""
    auth = TroopAuth(MemoryStore())
    for kwargs in (
        {"actor_hook": 3},
        {"max_body": 0},
        {"realm": 'a"b'},
        {"seats_writable": 1},
        {"secret_scanning_keys": "a key"},
    ):
        with pytest.raises(ValueError, match=r"."):
            create_app(auth, **kwargs)
    with pytest.raises(ValueError, match="TroopAuth"):
        create_app(object())  # type: ignore[arg-type]


class TestCrossSite:
    """Changes for a hook's actor (a cookie session) refuse cross-site requests."""

    def _client(self, world: World):
        world.auth.add_member(world.owner, world.tid, "alice", Grant.full())
        alice = world.auth.member(world.setup.account.id, "alice")
        return checked_client(create_app(world.auth, actor_hook=lambda _: alice))

    @pytest.mark.parametrize(
        ("headers", "allowed"),
        [
            ({}, True),
            ({"Sec-Fetch-Site": "same-origin"}, True),
            ({"Sec-Fetch-Site": "none"}, True),
            ({"Sec-Fetch-Site": "cross-site"}, False),
            ({"Sec-Fetch-Site": "same-site"}, False),
            ({"Origin": "http://testserver"}, True),
            ({"Origin": "https://evil.example"}, False),
        ],
    )
    def test_fetch_metadata(self, world: World, headers, allowed):
        """Same-origin or non-browser: allowed; cross-site: 403, nothing changes."""
        with self._client(world) as client:
            before = world.auth.tokens(world.tid)
            response = client.post(
                f"/troops/{world.tid}/tokens",
                json={"grant": {"permissions": ["view"], "scope": "*"}},
                headers=headers,
            )
            if allowed:
                assert response.status_code == 201
            else:
                assert response.status_code == 403
                assert world.auth.tokens(world.tid) == before
            reads = client.get(f"/troops/{world.tid}/tokens", headers=headers)
            assert reads.status_code == 200

    def test_bearer_is_not_ambient(self, world: World):
        """A bearer request marked cross-site is judged by its token alone."""
        with self._client(world) as client:
            response = client.post(
                f"/troops/{world.tid}/tokens",
                json={"grant": {"permissions": ["view"], "scope": "*"}},
                headers={**world.pat, "Sec-Fetch-Site": "cross-site"},
            )
        assert response.status_code == 201
