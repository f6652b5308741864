"""DRF: TroopTokenAuthentication and HasTroopPermission with APIClient, and
the plain Django decorator with Django's test client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import attrs
import pytest
from django.test import AsyncClient, Client, override_settings
from rest_framework.test import APIClient

from troopauth import Grant, Permission, Scope, TroopAuth
from troopauth.django import get_auth
from troopauth.tokens import new_value

from ..conftest import FrozenClock
from .conftest import empty, migrated

EDIT_DEPLOY = Grant(Permission.EDIT, Scope.parse("key:deploy"))
VIEW_ALL = Grant(Permission.VIEW, Scope.parse("*"))


@attrs.frozen
class World:
    """Two accounts: a troop with tokens of several grants, and a stranger."""

    auth: TroopAuth
    troop: str
    other_troop: str
    pat: str
    editor: str
    editor_id: str
    viewer: str
    stranger: str


@pytest.fixture
def world() -> World:
    """Fresh tables, and the tokens the tests send."""
    empty(migrated("default"))
    auth = get_auth()
    acct = auth.create_account(seats=5)
    troop = auth.create_troop(acct.id, "payments").id
    other_troop = auth.create_troop(acct.id, "other").id
    pat = auth.issue_personal_token(acct.id).value
    owner = auth.authenticate(pat)
    editor = auth.issue_token(owner, troop, EDIT_DEPLOY, name="ci")
    viewer = auth.issue_token(owner, troop, VIEW_ALL, name="reader")
    elsewhere = auth.create_account(seats=1)
    far = auth.create_troop(elsewhere.id, "far").id
    far_owner = auth.authenticate(auth.issue_personal_token(elsewhere.id).value)
    stranger = auth.issue_token(far_owner, far, Grant.full()).value
    return World(
        auth,
        troop,
        other_troop,
        pat,
        editor.value,
        editor.token_id,
        viewer.value,
        stranger,
    )


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log line of the request, at every level, as formatted text."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def bearer(value: str) -> dict[str, str]:
    """The Authorization header of a bearer value."""
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def never_shown(value: str, response: Any, lines: list[str]) -> None:
    """The value is in no header, body or log line."""
    assert value not in response.content.decode()
    assert all(value not in str(v) for v in response.headers.values())
    assert all(value not in line for line in lines)


class TestTroopTokenAuthentication:
    """A token value authenticates a DRF request: 200, 401 and 403."""

    def test_a_granted_token_gets_200(self, world: World) -> None:
        """EDIT on the key: 200; request.auth is the Principal, request.user
        is authenticated and named after it."""
        response = APIClient().get(
            f"/drf/{world.troop}/keys/deploy/", **bearer(world.editor)
        )
        assert response.status_code == 200
        assert response.json() == {
            "principal": f"troop:{world.editor_id}",
            "user": f"troop:{world.editor_id}",
            "authenticated": True,
        }

    def test_the_personal_token_reaches_everything(self, world: World) -> None:
        """The account's PAT holds every permission on every troop."""
        client = APIClient()
        assert (
            client.get(f"/drf/{world.troop}/keys/x/", **bearer(world.pat)).status_code
            == 200
        )
        assert (
            client.delete(f"/drf/{world.other_troop}/", **bearer(world.pat)).status_code
            == 200
        )

    def test_no_token_gets_401_with_the_challenge(self, world: World) -> None:
        """No Authorization header: 401 with WWW-Authenticate Bearer realm."""
        response = APIClient().get(f"/drf/{world.troop}/keys/deploy/")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="tests"'

    def test_another_scheme_is_not_ours(self, world: World) -> None:
        """Authorization: Basic ...: not authenticated by troopauth, 401."""
        response = APIClient().get(
            f"/drf/{world.troop}/keys/deploy/", HTTP_AUTHORIZATION="Basic Zm9vOmJhcg=="
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="tests"'

    @pytest.mark.parametrize(
        "header",
        ["Bearer", "Bearer a b", "Bearer cpt_pat_short", "Bearer \u00e9t\u00e9"],
    )
    def test_malformed_values_get_401_invalid_token(
        self, world: World, header: str, logged: list[str]
    ) -> None:
        """A bearer header without exactly one well-formed value: 401 with
        error="invalid_token", the value nowhere."""
        response = APIClient().get(
            f"/drf/{world.troop}/keys/deploy/", HTTP_AUTHORIZATION=header
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="tests", error="invalid_token"'
        )
        assert response.json() == {"detail": "invalid_token"}

    def test_dead_values_get_401_invalid_token(
        self, world: World, logged: list[str]
    ) -> None:
        """Unknown, rotated away and revoked values: 401 invalid_token, and
        none is echoed in the answer or the logs."""
        owner = world.auth.authenticate(world.pat)
        rotated = world.auth.issue_token(owner, world.troop, EDIT_DEPLOY)
        world.auth.rotate(owner, rotated.token_id)
        world.auth.revoke(owner, world.editor_id)
        for value in (new_value(), rotated.value, world.editor):
            response = APIClient().get(
                f"/drf/{world.troop}/keys/deploy/", **bearer(value)
            )
            assert response.status_code == 401, value[:8]
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
            never_shown(value, response, logged)
        assert any("Unauthorized" in line for line in logged), "nothing was logged"

    def test_an_expired_token_gets_401(self, world: World) -> None:
        """Past expires_at on the settings' clock: 401 invalid_token."""
        clock = FrozenClock()
        with override_settings(
            TROOPAUTH={"REALM": "tests", "AUTH_OPTIONS": {"clock": clock}}
        ):
            auth = get_auth()
            owner = auth.authenticate(world.pat)
            issued = auth.issue_token(
                owner,
                world.troop,
                EDIT_DEPLOY,
                expires_at=clock.now + timedelta(minutes=5),
            )
            url = f"/drf/{world.troop}/keys/deploy/"
            assert APIClient().get(url, **bearer(issued.value)).status_code == 200
            clock.advance(minutes=5)
            response = APIClient().get(url, **bearer(issued.value))
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]

    def test_denied_gets_403_insufficient_scope(
        self, world: World, logged: list[str]
    ) -> None:
        """A live token without the permission or the key, or on a troop it
        is not attached to: 403 with error="insufficient_scope"."""
        client = APIClient()
        for url, value in (
            (f"/drf/{world.troop}/keys/other/", world.editor),
            (f"/drf/{world.troop}/keys/deploy/", world.viewer),
            (f"/drf/{world.other_troop}/keys/deploy/", world.editor),
            (f"/drf/{world.troop}/", world.editor),
        ):
            response = client.get(url, **bearer(value))
            assert response.status_code == 403, url
            assert response.headers["WWW-Authenticate"] == (
                'Bearer realm="tests", error="insufficient_scope"'
            )
            assert response.json() == {"detail": "insufficient_scope"}
            never_shown(value, response, logged)

    def test_a_token_of_another_account_is_denied(self, world: World) -> None:
        """A live token of another account: 403 (real, but not attached to
        this troop: AccessDenied, as verify and the middleware answer)."""
        response = APIClient().get(
            f"/drf/{world.troop}/keys/deploy/", **bearer(world.stranger)
        )
        assert response.status_code == 403
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]

    def test_permission_per_method(self, world: World) -> None:
        """GET needs VIEW, DELETE needs MANAGE, POST (not mapped) is 403."""
        client = APIClient()
        url = f"/drf/{world.troop}/"
        assert client.get(url, **bearer(world.viewer)).status_code == 200
        assert client.delete(url, **bearer(world.viewer)).status_code == 403
        assert client.post(url, **bearer(world.pat)).status_code == 403

    def test_the_principal_is_judged_as_it_is_now(self, world: World) -> None:
        """A grant narrowed between two requests: the second is refused."""
        client = APIClient()
        url = f"/drf/{world.troop}/"
        owner = world.auth.authenticate(world.pat)
        assert client.get(url, **bearer(world.viewer)).status_code == 200
        viewer_id = world.auth.authenticate(world.viewer).token_id
        assert viewer_id is not None
        world.auth.attach(
            owner, viewer_id, world.troop, Grant(Permission.VIEW, Scope.parse("key:a"))
        )
        assert client.get(url, **bearer(world.viewer)).status_code == 403

    def test_other_keyword_from_the_settings(self, world: World) -> None:
        """TROOPAUTH['KEYWORD'] = "Token": that scheme is read and challenged."""
        with override_settings(TROOPAUTH={"KEYWORD": "Token", "REALM": "kw"}):
            url = f"/drf/{world.troop}/keys/deploy/"
            ok = APIClient().get(url, HTTP_AUTHORIZATION=f"Token {world.editor}")
            assert ok.status_code == 200
            refused = APIClient().get(url, **bearer(world.editor))
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"] == 'Token realm="kw"'


class TestOtherPrincipals:
    """HasTroopPermission judges a principal another class authenticated."""

    def test_a_member_is_authorized_as_they_are_now(self, world: World) -> None:
        """A member with EDIT on the key: 200; without it: 403; once her
        grant is narrowed: 403."""
        owner = world.auth.authenticate(world.pat)
        account_id = owner.account_id
        world.auth.add_member(owner, world.troop, "alice", EDIT_DEPLOY)
        world.auth.add_member(owner, world.troop, "bob", VIEW_ALL)
        client = APIClient()
        url = f"/member/{world.troop}/keys/deploy/"
        alice = client.get(url, HTTP_X_MEMBER=f"{account_id}/alice")
        assert alice.status_code == 200
        assert alice.json()["principal"] == "member:alice"
        assert client.get(url, HTTP_X_MEMBER=f"{account_id}/bob").status_code == 403
        world.auth.add_member(owner, world.troop, "alice", VIEW_ALL)
        assert client.get(url, HTTP_X_MEMBER=f"{account_id}/alice").status_code == 403


class TestRequireToken:
    """The plain Django decorator, with Django's test client."""

    def test_a_granted_token_passes(self, world: World) -> None:
        """EDIT on the key: the view runs with request.troopauth_principal."""
        response = Client().get(
            f"/plain/{world.troop}/keys/deploy/", **bearer(world.editor)
        )
        assert response.status_code == 200
        assert response.json() == {
            "principal": f"troop:{world.editor_id}",
            "key": "deploy",
        }

    def test_troop_level(self, world: World) -> None:
        """No key: a troop-level action; VIEW on the whole troop passes, a
        key-scoped token does not."""
        client = Client()
        assert (
            client.get(f"/plain/{world.troop}/", **bearer(world.viewer)).status_code
            == 200
        )
        assert (
            client.get(f"/plain/{world.troop}/", **bearer(world.editor)).status_code
            == 403
        )

    def test_refusals(self, world: World, logged: list[str]) -> None:
        """Missing: 401 Bearer realm; malformed or dead: 401 invalid_token;
        denied: 403 insufficient_scope; fixed bodies, the value nowhere."""
        client = Client()
        url = f"/plain/{world.troop}/keys/deploy/"
        dead = new_value()
        cases: list[tuple[dict[str, str], int, str, str]] = [
            ({}, 401, 'Bearer realm="tests"', "missing_token"),
            (
                {"HTTP_AUTHORIZATION": "Bearer a b"},
                401,
                'Bearer realm="tests", error="invalid_token"',
                "invalid_token",
            ),
            (
                bearer(dead),
                401,
                'Bearer realm="tests", error="invalid_token"',
                "invalid_token",
            ),
            (
                bearer(world.viewer),
                403,
                'Bearer realm="tests", error="insufficient_scope"',
                "insufficient_scope",
            ),
            (
                bearer(world.stranger),
                403,
                'Bearer realm="tests", error="insufficient_scope"',
                "insufficient_scope",
            ),
        ]
        for headers, status, challenge, detail in cases:
            response = client.get(url, **headers)
            assert response.status_code == status, detail
            assert response.headers["WWW-Authenticate"] == challenge
            assert response.json() == {"detail": detail}
            assert response.headers["Cache-Control"] == "no-store"
        for value in (dead, world.viewer, world.stranger):
            never_shown(value, client.get(url, **bearer(value)), logged)

    def test_async_views(self, world: World) -> None:
        """An async view: 200 with the grant, 403 without, 401 without a
        token (through Django's async test client)."""

        async def run() -> list[int]:
            client = AsyncClient()
            url = f"/async/{world.troop}/keys/"
            token = {"Authorization": f"Bearer {world.editor}"}
            return [
                (await client.get(url + "deploy/", headers=token)).status_code,
                (await client.get(url + "other/", headers=token)).status_code,
                (await client.get(url + "deploy/")).status_code,
            ]

        assert asyncio.run(run()) == [200, 403, 401]
