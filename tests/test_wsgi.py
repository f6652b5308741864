"""troopauth.wsgi against a real Flask app and a bare WSGI app (Werkzeug's client)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from werkzeug.test import Client, TestResponse

from tests.conftest import FrozenClock
from tests.helpers import grant, make_account
from troopauth import (
    InvalidArgument,
    MemoryStore,
    Principal,
    SQLiteStore,
    TroopAuth,
    TroopAuthError,
)
from troopauth.asgi import ErrorResponse, Refusal
from troopauth.tokens import new_value
from troopauth.wsgi import (
    PRINCIPAL_KEY,
    Requirement,
    TroopAuthMiddleware,
    path_param,
    require,
)

INVALID = b'{"detail":"invalid_token"}'
MISSING = b'{"detail":"missing_token"}'
DENIED = b'{"detail":"insufficient_scope"}'


@pytest.fixture(params=["memory", "sqlite"])
def web_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Each embedded store."""
    if request.param == "memory":
        with MemoryStore() as s:
            yield s
    else:
        with SQLiteStore(tmp_path / "troopauth.db") as s:
            yield s


@dataclass
class World:
    """An account with two troops, its PAT and two troop tokens."""

    auth: TroopAuth
    clock: FrozenClock
    troop: str
    other_troop: str
    pat: str
    #: USE on key:deploy and key:prod/* in the first troop.
    ci: str
    ci_id: str
    #: VIEW on the whole first troop.
    viewer: str

    def principal(self, value: str) -> Principal:
        """The principal the value stands for now."""
        return self.auth.authenticate(value)


@pytest.fixture
def world(web_store: MemoryStore | SQLiteStore, clock: FrozenClock) -> World:
    """The tokens the tests use, on each store and the frozen clock."""
    return build_world(TroopAuth(web_store, clock=clock), clock)


def build_world(auth: TroopAuth, clock: FrozenClock) -> World:
    """Issue the tokens the tests use."""
    setup = make_account(auth, troops=2)
    ci = auth.issue_token(setup.owner, setup.tid, grant("use", "key:deploy,key:prod/*"))
    viewer = auth.issue_token(setup.owner, setup.tid, grant("view"))
    return World(
        auth,
        clock,
        setup.tid,
        setup.troops[1].id,
        setup.pat.value,
        ci.value,
        ci.token_id,
        viewer.value,
    )


def bearer(value: str) -> dict[str, str]:
    """The Authorization header for a value."""
    return {"Authorization": f"Bearer {value}"}


def as_json(principal: Principal | None) -> dict[str, Any]:
    """What the test apps answer for a principal."""
    if principal is None:
        return {"principal": None}
    return {"principal": {"kind": principal.kind.value, "token_id": principal.token_id}}


def invalidate(world: World, how: str) -> str:
    """A value that is not live for the given reason."""
    if how == "unknown":
        return new_value()
    if how == "garbage":
        return "not-a-token"
    auth = world.auth
    owner = world.principal(world.pat)
    if how == "rotated":
        auth.rotate(owner, world.ci_id)
        return world.ci
    if how == "revoked":
        auth.revoke(owner, world.ci_id)
        return world.ci
    if how == "expired":
        value = auth.issue_token(
            owner, world.troop, grant("view"), expires_at=world.clock.now + timedelta(1)
        ).value
        world.clock.advance(days=1)
        return value
    if how == "replaced-pat":
        auth.issue_personal_token(owner.account_id)
        return world.pat
    raise AssertionError(how)


REASONS = ["unknown", "garbage", "rotated", "revoked", "expired", "replaced-pat"]


def assert_refused(response: TestResponse, status: int, challenge: str) -> None:
    """The response is the default policy's answer for this refusal."""
    if 'error="invalid_token"' in challenge:
        body = INVALID
    elif 'error="insufficient_scope"' in challenge:
        body = DENIED
    else:
        body = MISSING
    assert response.status_code == status
    assert response.headers["WWW-Authenticate"] == challenge
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == str(len(body))
    assert response.data == body


# -- the apps --------------------------------------------------------------------------


@dataclass
class Calls:
    """The environs the views ran with."""

    environs: list[dict[str, Any]]


def flask_app(world: World, calls: Calls, **options: Any) -> Flask:
    """A Flask app behind the middleware, with views that require tokens."""
    app = Flask(__name__)
    app.testing = True
    app.wsgi_app = TroopAuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, auth=world.auth, **options
    )

    @app.get("/whoami")
    def whoami() -> Any:
        calls.environs.append(dict(request.environ))
        return as_json(request.environ[PRINCIPAL_KEY])

    @app.get("/troops/<troop_id>/keys/<path:key>")
    @require(troop=path_param("troop_id"), permission="use", key=path_param("key"))
    def use_key(troop_id: str, key: str) -> Any:
        calls.environs.append(dict(request.environ))
        return as_json(request.environ[PRINCIPAL_KEY])

    @app.get("/troops/<troop_id>")
    @require(troop=path_param("troop_id"), permission="view")
    def view_troop(troop_id: str) -> Any:
        calls.environs.append(dict(request.environ))
        return as_json(request.environ[PRINCIPAL_KEY])

    return app


def bare_app(calls: Calls) -> Any:
    """A WSGI app with no framework: answers with the principal's token id."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.environs.append(environ)
        principal = environ[PRINCIPAL_KEY]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"anonymous" if principal is None else principal.token_id.encode()]

    return app


# -- the middleware --------------------------------------------------------------------


class TestMiddlewarePasses:
    """What the WSGI middleware lets through, and what it puts in the environ."""

    def test_no_header_passes_unauthenticated(self, world: World) -> None:
        """Without Authorization the view runs with principal None."""
        calls = Calls([])
        response = flask_app(world, calls).test_client().get("/whoami")
        assert response.status_code == 200
        assert response.json == {"principal": None}
        assert calls.environs[0][PRINCIPAL_KEY] is None

    @pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", ""])
    def test_other_scheme_passes_unauthenticated(
        self, world: World, header: str
    ) -> None:
        """Another scheme (or an empty header) is not troopauth's: principal None."""
        client = flask_app(world, Calls([])).test_client()
        response = client.get("/whoami", headers={"Authorization": header})
        assert response.json == {"principal": None}

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
    def test_good_value_puts_principal_in_environ(
        self, world: World, scheme: str
    ) -> None:
        """A live value (scheme in any case) puts its principal in the environ."""
        calls = Calls([])
        response = (
            flask_app(world, calls)
            .test_client()
            .get("/whoami", headers={"Authorization": f"{scheme} {world.ci}"})
        )
        assert response.json == as_json(world.principal(world.ci))
        assert calls.environs[0][PRINCIPAL_KEY] == world.principal(world.ci)

    def test_value_is_nowhere_in_the_environ_but_its_header(self, world: World) -> None:
        """troopauth copies the value into no environ key."""
        calls = Calls([])
        flask_app(world, calls).test_client().get("/whoami", headers=bearer(world.pat))
        environ = calls.environs[0]
        holding = [k for k, v in environ.items() if world.pat in repr(v)]
        assert holding == ["HTTP_AUTHORIZATION"]
        assert [k for k in environ if k.startswith("troopauth.")] == [
            "troopauth.principal",
            "troopauth.guard",
            "troopauth.passport",
        ]

    def test_bare_wsgi_app(self, world: World) -> None:
        """Any WSGI app (no framework) gets the principal in its environ."""
        app = TroopAuthMiddleware(bare_app(Calls([])), auth=world.auth)
        client = Client(app)
        assert client.get("/", headers=bearer(world.ci)).data == world.ci_id.encode()
        assert client.get("/").data == b"anonymous"


MALFORMED_HEADERS: list[Any] = [
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer one two"},
    {"Authorization": "Bearer caf\u00e9"},
    [("Authorization", "Bearer x"), ("Authorization", "Bearer y")],
]


class TestMiddlewareRefuses:
    """A bad value is answered with 401 before the app runs."""

    @pytest.mark.parametrize("how", REASONS)
    def test_bad_value_gets_401(self, world: World, how: str) -> None:
        """Unknown, garbage, rotated, revoked, expired, replaced: 401 invalid_token."""
        value = invalidate(world, how)
        calls = Calls([])
        response = (
            flask_app(world, calls).test_client().get("/whoami", headers=bearer(value))
        )
        assert_refused(response, 401, 'Bearer error="invalid_token"')
        assert value.encode() not in response.data
        assert calls.environs == []

    @pytest.mark.parametrize("headers", MALFORMED_HEADERS, ids=repr)
    def test_malformed_header_gets_401(self, world: World, headers: Any) -> None:
        """Not exactly one ASCII token after Bearer (two headers join): 401."""
        calls = Calls([])
        response = flask_app(world, calls).test_client().get("/whoami", headers=headers)
        assert_refused(response, 401, 'Bearer error="invalid_token"')
        assert calls.environs == []

    def test_bare_app_is_protected(self, world: World) -> None:
        """The middleware refuses in front of a framework-less app too."""
        calls = Calls([])
        app = TroopAuthMiddleware(bare_app(calls), auth=world.auth, realm="api")
        response = Client(app).get("/", headers=bearer(invalidate(world, "revoked")))
        assert_refused(response, 401, 'Bearer realm="api", error="invalid_token"')
        assert response.status == "401 Unauthorized"
        assert calls.environs == []

    def test_value_never_in_logs(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Refusals are logged (at debug) without the value."""
        caplog.set_level(logging.DEBUG)
        value = invalidate(world, "revoked")
        client = flask_app(world, Calls([])).test_client()
        client.get("/whoami", headers=bearer(value))
        client.get(f"/troops/{world.troop}/keys/x", headers=bearer(world.viewer))
        messages = [r.getMessage() for r in caplog.records if r.name == "troopauth.web"]
        assert len(messages) == 2
        assert "invalid_token" in messages[0]
        assert "insufficient_scope" in messages[1]
        assert value not in caplog.text
        assert world.viewer not in caplog.text


# -- require() on Flask views ----------------------------------------------------------


class TestRequire:
    """The per-view requirement decorating Flask views."""

    def test_allowed_gets_the_principal(self, world: World) -> None:
        """A token whose grant covers the key reaches the view with its principal."""
        calls = Calls([])
        client = flask_app(world, calls).test_client()
        response = client.get(
            f"/troops/{world.troop}/keys/prod/db", headers=bearer(world.ci)
        )
        assert response.status_code == 200
        assert response.json == as_json(world.principal(world.ci))
        assert calls.environs[0][PRINCIPAL_KEY] == world.principal(world.ci)

    def test_pat_is_allowed(self, world: World) -> None:
        """The account's PAT passes every requirement in its account."""
        client = flask_app(world, Calls([])).test_client()
        response = client.get(f"/troops/{world.troop}", headers=bearer(world.pat))
        assert response.json["principal"]["kind"] == "personal"

    def test_missing_token_gets_401(self, world: World) -> None:
        """No token on a view that requires one: 401 ``Bearer``, view not run."""
        calls = Calls([])
        response = (
            flask_app(world, calls)
            .test_client()
            .get(f"/troops/{world.troop}/keys/deploy")
        )
        assert_refused(response, 401, "Bearer")
        assert calls.environs == []

    @pytest.mark.parametrize(
        ("path", "token"),
        [
            ("/keys/other", "ci"),  # key outside the scope
            ("/keys/deploy", "viewer"),  # the permission is missing
            ("", "ci"),  # troop level: a key scope does not cover it
        ],
    )
    def test_denied_gets_403(self, world: World, path: str, token: str) -> None:
        """A live token that may not: 403 insufficient_scope, view not run."""
        calls = Calls([])
        client = flask_app(world, calls).test_client()
        response = client.get(
            f"/troops/{world.troop}{path}", headers=bearer(getattr(world, token))
        )
        assert_refused(response, 403, 'Bearer error="insufficient_scope"')
        assert calls.environs == []

    def test_other_troop_gets_403(self, world: World) -> None:
        """A live token asking for a troop it is not attached to: 403."""
        client = flask_app(world, Calls([])).test_client()
        response = client.get(
            f"/troops/{world.other_troop}", headers=bearer(world.viewer)
        )
        assert_refused(response, 403, 'Bearer error="insufficient_scope"')

    def test_policy_applies_to_views(self, world: World) -> None:
        """The middleware's on_error and realm shape the views' refusals too."""

        def teapot(refusal: Refusal) -> ErrorResponse:
            return ErrorResponse(418, [("WWW-Authenticate", refusal.challenge)], b"x")

        client = flask_app(world, Calls([]), on_error=teapot, realm="r").test_client()
        response = client.get(f"/troops/{world.other_troop}", headers=bearer(world.ci))
        assert response.status_code == 418
        assert response.headers["WWW-Authenticate"] == (
            'Bearer realm="r", error="insufficient_scope"'
        )
        assert response.data == b"x"

    def test_with_auth_needs_no_middleware(self, world: World) -> None:
        """require(auth=...) works alone, answering bad values itself."""
        app = Flask(__name__)

        @app.get("/n/<int:n>")
        @require(
            troop=world.troop, permission="use", key=path_param("n"), auth=world.auth
        )
        def numbered(n: int) -> Any:
            return {"n": n, "token": request.environ[PRINCIPAL_KEY].token_id}

        owner = world.principal(world.pat)
        value = world.auth.issue_token(owner, world.troop, grant("use", "key:7")).value
        client = app.test_client()
        assert client.get("/n/7", headers=bearer(value)).json["n"] == 7
        assert_refused(
            client.get("/n/8", headers=bearer(value)),
            403,
            'Bearer error="insufficient_scope"',
        )
        assert_refused(
            client.get("/n/7", headers=bearer(invalidate(world, "unknown"))),
            401,
            'Bearer error="invalid_token"',
        )
        assert_refused(
            client.get("/n/7", headers={"Authorization": "Bearer a b"}),
            401,
            'Bearer error="invalid_token"',
        )
        assert_refused(client.get("/n/7"), 401, "Bearer")

    def test_without_auth_or_middleware_is_an_error(self, world: World) -> None:
        """A requirement with neither auth= nor the middleware raises, naming both."""
        app = Flask(__name__)
        app.testing = True

        @app.get("/")
        @require(troop=world.troop, permission="view")
        def index() -> str:
            return "reached"  # pragma: no cover

        with pytest.raises(TroopAuthError, match="TroopAuthMiddleware"):
            app.test_client().get("/", headers=bearer(world.viewer))

    def test_async_view_is_refused(self) -> None:
        """The WSGI decorator takes sync views only, and says so at decoration."""
        need = require(troop="t", permission="view")

        async def view() -> str:
            return "x"  # pragma: no cover

        with pytest.raises(InvalidArgument, match="sync"):
            need(view)


class CountingStore(MemoryStore):
    """A MemoryStore that counts its lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        inner = self.lookup

        def lookup(digest: bytes) -> Any:
            self.lookups += 1
            return inner(digest)

        self.lookup = lookup  # type: ignore[method-assign]  # a counting wrapper


class TestOneLookup:
    """Behind the middleware, a request costs one store lookup, view or not."""

    @pytest.mark.parametrize(
        ("path", "token", "status"),
        [
            ("/troops/{troop}/keys/prod/db", "ci", 200),
            ("/troops/{troop}/keys/billing", "ci", 403),
            ("/troops/{other}", "viewer", 403),
            ("/troops/{troop}", "viewer", 200),
            ("/whoami", "pat", 200),
        ],
    )
    def test_flask_requirement(
        self, clock: FrozenClock, path: str, token: str, status: int
    ) -> None:
        """require() reuses the middleware's lookup: one per request."""
        with CountingStore() as store:
            world = build_world(TroopAuth(store, clock=clock), clock)
            web = flask_app(world, Calls([])).test_client()
            url = path.format(troop=world.troop, other=world.other_troop)
            store.lookups = 0
            response = web.get(url, headers=bearer(getattr(world, token)))
        assert response.status_code == status
        assert store.lookups == 1

    def test_check_with_the_environ(self, clock: FrozenClock) -> None:
        """Requirement.check reuses the lookup of the middleware that ran before."""
        with CountingStore() as store:
            world = build_world(TroopAuth(store, clock=clock), clock)
            need = require(troop=world.troop, permission="view")
            seen: list[object] = []

            def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
                seen.append(need.check(environ, {}))
                start_response("204 No Content", [])
                return []

            wrapped = TroopAuthMiddleware(app, auth=world.auth)
            expected = world.principal(world.viewer)
            store.lookups = 0
            Client(wrapped).get("/", headers=bearer(world.viewer))
        assert seen == [expected]
        assert store.lookups == 1


class TestCheck:
    """Requirement.check for frameworks without a decorator."""

    def test_check_in_a_bare_app(self, world: World) -> None:
        """check(environ, params) gives a principal or a refusal, for any framework."""
        need = require(troop=world.troop, permission="use", key=path_param("key"))
        assert isinstance(need, Requirement)

        def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            key = environ["PATH_INFO"].lstrip("/")
            outcome = need.check(environ, {"key": key})
            if isinstance(outcome, Refusal):
                start_response(f"{outcome.status} No", [])
                return [outcome.detail.encode()]
            start_response("200 OK", [])
            return [outcome.token_id.encode()]

        client = Client(TroopAuthMiddleware(app, auth=world.auth))
        assert (
            client.get("/deploy", headers=bearer(world.ci)).data == world.ci_id.encode()
        )
        denied = client.get("/other", headers=bearer(world.ci))
        assert (denied.status_code, denied.data) == (403, b"insufficient_scope")
        missing = client.get("/deploy")
        assert (missing.status_code, missing.data) == (401, b"missing_token")


class TestConfiguration:
    """Bad configuration fails at construction with InvalidArgument."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"troop": "t", "permission": "view", "realm": "r"},
            {"troop": "t", "permission": "view", "on_error": print},
            {"troop": "", "permission": "view"},
            {"troop": "t", "permission": "none"},
        ],
        ids=repr,
    )
    def test_bad_requirement(self, kwargs: dict[str, Any]) -> None:
        """Options without auth=, empty targets, unknown permissions are refused."""
        with pytest.raises(InvalidArgument):
            require(**kwargs)

    @pytest.mark.parametrize("kwargs", [{"realm": 'a"b'}, {"on_error": None}], ids=repr)
    def test_bad_middleware_options(self, world: World, kwargs: dict[str, Any]) -> None:
        """The middleware checks realm and on_error."""
        with pytest.raises(InvalidArgument):
            TroopAuthMiddleware(bare_app(Calls([])), auth=world.auth, **kwargs)
