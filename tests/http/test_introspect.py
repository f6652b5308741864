"""POST /introspect (RFC 7662) over plain HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest

from troopauth import Grant, MemoryStore, TroopAuth
from troopauth.http import create_app

from ..helpers import make_account
from .conftest import Live, World, bearer


def _introspect(world: World, value: str, caller: dict[str, str]):
    return world.client.post("/introspect", data={"token": value}, headers={**caller})


class TestActive:
    """A live value of the caller's account: its fields."""

    def test_troop_token(self, world: World):
        """active, token_type, sub/client_id, iat, exp, scope words and grants."""
        when = world.clock.now + timedelta(hours=2)
        token = world.issue(
            permissions=("view", "edit"),
            scope="key:prod/*",
            name="ci",
            expires_at=when.isoformat(),
        )
        world.auth.attach(
            world.owner, token["token_id"], world.tid2, Grant.parse("use")
        )
        response = _introspect(world, token["value"], world.pat)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        troops = sorted([world.tid, world.tid2])
        words = {
            world.tid: ["view", "edit"],
            world.tid2: ["use"],
        }
        assert body == {
            "active": True,
            "token_type": "Bearer",
            "sub": token["token_id"],
            "client_id": token["token_id"],
            "iat": int(world.clock.now.timestamp()),
            "exp": int(when.timestamp()),
            "scope": " ".join(f"{t}:{w}" for t in troops for w in words[t]),
            "troopauth": {
                "kind": "troop",
                "account_id": world.setup.account.id,
                "name": "ci",
                "grants": {
                    world.tid: {"permissions": ["view", "edit"], "scope": "key:prod/*"},
                    world.tid2: {"permissions": ["use"], "scope": "*"},
                },
            },
        }
        assert token["value"] not in response.text

    def test_manager_token_may_introspect(self, world: World):
        """A token with MANAGE on a whole troop of the account is a valid caller."""
        manager = world.issue(permissions=("manage",))
        other = world.issue()
        body = _introspect(world, other["value"], bearer(manager["value"])).json()
        assert body["active"] is True
        assert "exp" not in body

    def test_pat_value(self, world: World):
        """The PAT introspected: kind personal, every troop and permission."""
        body = _introspect(world, world.setup.pat.value, world.pat).json()
        assert body["troopauth"]["kind"] == "personal"
        assert len(body["scope"].split()) == 2 * 4


class TestInactive:
    """Dead, unknown and other-account values: only {"active": false}."""

    @pytest.mark.parametrize("how", ["rotated", "revoked", "expired", "garbage", ""])
    def test_dead(self, world: World, how: str):
        """Each dead value answers exactly {"active": false}."""
        token = world.issue(
            expires_at=(world.clock.now + timedelta(minutes=1)).isoformat()
        )
        value = token["value"]
        if how == "rotated":
            world.auth.rotate(world.owner, token["token_id"])
        elif how == "revoked":
            world.auth.revoke(world.owner, token["token_id"])
        elif how == "expired":
            world.clock.advance(minutes=1)
        else:
            value = how or "x"
        response = _introspect(world, value, world.pat)
        assert response.status_code == 200
        assert response.json() == {"active": False}

    def test_other_account(self, world: World):
        """A live value of another account is inactive to this caller."""
        other = make_account(world.auth)
        foreign = world.auth.issue_token(other.owner, other.tid, Grant.parse("view"))
        response = _introspect(world, foreign.value, world.pat)
        assert response.json() == {"active": False}


class TestCaller:
    """Who may introspect: else 401/403, and nothing about the value is told."""

    def test_no_credentials(self, world: World):
        """No bearer: 401 with the challenge."""
        token = world.issue()
        response = world.client.post("/introspect", data={"token": token["value"]})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    def test_invalid_caller(self, world: World):
        """A dead caller value: 401 invalid_token."""
        response = _introspect(world, "x", bearer("cpt_pat_nope"))
        assert response.status_code == 401

    def test_non_manager(self, world: World):
        """A token without MANAGE on a whole troop: 403 insufficient_scope."""
        scoped = world.issue(permissions=("manage", "view"), scope="key:a")
        token = world.issue()
        response = _introspect(world, token["value"], bearer(scoped["value"]))
        assert response.status_code == 403
        assert response.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope"'
        )
        assert token["token_id"] not in response.text

    @pytest.mark.parametrize(
        ("content", "ctype", "status"),
        [
            ("token=a&token=b", "application/x-www-form-urlencoded", 422),
            ("nothing=1", "application/x-www-form-urlencoded", 422),
            ('{"token": "a"}', "application/json", 415),
        ],
    )
    def test_bad_forms(self, world: World, content: str, ctype: str, status: int):
        """Not exactly one token field, or not a form: a problem, not an answer."""
        response = world.client.post(
            "/introspect",
            content=content,
            headers={**world.pat, "Content-Type": ctype},
        )
        assert response.status_code == status


class TestAuthlibClient:
    """An independent RFC 7662 client (Authlib's OAuth2Client.introspect_token)
    against the app served by uvicorn."""

    def test_authlib_introspects(self, monkeypatch: pytest.MonkeyPatch):
        """Authlib's request is understood: active for a live value, inactive
        after its revocation, and refused without the caller's bearer."""
        from authlib.integrations.httpx_client import OAuth2Client

        # Authlib insists on HTTPS; the test server is plain HTTP on loopback.
        monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")

        def bearer_auth(value: str):
            """An auth callable, as httpx (and Authlib's httpx2) accept."""

            def sign(request):
                request.headers["Authorization"] = f"Bearer {value}"
                return request

            return sign

        with MemoryStore() as store:
            auth = TroopAuth(store)
            setup = make_account(auth)
            token = auth.issue_token(setup.owner, setup.tid, Grant.parse("use"))
            with Live(create_app(auth)) as base, OAuth2Client() as client:
                url = f"{base}/introspect"
                caller = bearer_auth(setup.pat.value)
                live = client.introspect_token(
                    url,
                    token=token.value,
                    token_type_hint="access_token",  # noqa: S106 (a hint, no secret)
                    auth=caller,
                )
                assert live.status_code == 200
                assert live.json()["active"] is True
                assert live.json()["sub"] == token.token_id
                assert live.json()["scope"] == f"{setup.tid}:use"
                auth.revoke(setup.owner, token.token_id)
                dead = client.introspect_token(url, token=token.value, auth=caller)
                assert dead.json() == {"active": False}
                refused = client.introspect_token(
                    url, token=token.value, auth=bearer_auth("cpt_pat_x")
                )
                assert refused.status_code == 401
