"""troopauth.asgi and troopauth.fastapi against real Starlette and FastAPI apps.

HTTP goes through ``httpx.ASGITransport`` (the anyio pytest plugin runs the
async tests); WebSockets and lifespan through Starlette's ``TestClient``, the
only client that speaks them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.conftest import FrozenClock
from tests.helpers import grant, make_account
from troopauth import (
    InvalidArgument,
    MemoryStore,
    Permission,
    Principal,
    SQLiteStore,
    TroopAuth,
    TroopAuthError,
)
from troopauth.asgi import (
    MALFORMED,
    PRINCIPAL_KEY,
    ErrorResponse,
    Refusal,
    TroopAuthMiddleware,
    json_error,
    parse_authorization,
    path_param,
    require,
)
from troopauth.fastapi import RESPONSES, requires
from troopauth.tokens import new_value

pytestmark = pytest.mark.anyio

INVALID = b'{"detail":"invalid_token"}'
MISSING = b'{"detail":"missing_token"}'
DENIED = b'{"detail":"insufficient_scope"}'


# -- the world the apps serve ----------------------------------------------------------


class SpyStore(MemoryStore):
    """A MemoryStore that records which thread each lookup runs in."""

    def __init__(self) -> None:
        super().__init__()
        self.lookup_threads: list[int] = []
        inner = self.lookup

        def lookup(digest: bytes) -> Any:
            self.lookup_threads.append(threading.get_ident())
            return inner(digest)

        self.lookup = lookup


class RemoteLikeStore(SpyStore):
    """A spy store that says its lookup is not cheap (as PostgreSQL's is not)."""

    cheap_lookup = False


@pytest.fixture(params=["memory", "sqlite"])
def web_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """The in-process store (verify inline) and SQLite (verify offloaded)."""
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


def build_world(auth: TroopAuth, clock: FrozenClock) -> World:
    """Issue the tokens the tests use."""
    setup = make_account(auth, troops=2)
    ci = auth.issue_token(
        setup.owner, setup.tid, grant("use", "key:deploy,key:prod/*"), name="ci"
    )
    viewer = auth.issue_token(setup.owner, setup.tid, grant("view"), name="viewer")
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


@pytest.fixture
def world(web_store: MemoryStore | SQLiteStore, clock: FrozenClock) -> World:
    """The world on each store, on the frozen clock."""
    return build_world(TroopAuth(web_store, clock=clock), clock)


def bearer(value: str) -> dict[str, str]:
    """The Authorization header for a value."""
    return {"Authorization": f"Bearer {value}"}


def as_json(principal: Principal | None) -> dict[str, Any]:
    """What the test apps answer for a principal."""
    if principal is None:
        return {"principal": None}
    return {"principal": {"kind": principal.kind.value, "token_id": principal.token_id}}


# -- the apps --------------------------------------------------------------------------


@dataclass
class Calls:
    """What the apps saw: the scopes their endpoints ran with."""

    scopes: list[dict[str, Any]]
    started: bool = False


def starlette_app(world: World, calls: Calls, **options: Any) -> Starlette:
    """A Starlette app with the middleware and routes that require tokens."""

    async def whoami(request: Request) -> JSONResponse:
        calls.scopes.append(dict(request.scope))
        return JSONResponse(as_json(request.scope[PRINCIPAL_KEY]))

    need_key = require(
        troop=path_param("troop_id"), permission=Permission.USE, key=path_param("key")
    )
    need_view = require(troop=path_param("troop_id"), permission="view")

    @need_key
    async def use_key(request: Request) -> JSONResponse:
        calls.scopes.append(dict(request.scope))
        return JSONResponse(as_json(request.scope[PRINCIPAL_KEY]))

    @need_view
    def view_troop(request: Request) -> JSONResponse:  # sync: run in a thread
        return JSONResponse(as_json(request.scope[PRINCIPAL_KEY]))

    async def ws_whoami(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(as_json(websocket.scope[PRINCIPAL_KEY]))
        await websocket.close()

    @need_view
    async def ws_troop(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(as_json(websocket.scope[PRINCIPAL_KEY]))
        await websocket.close()

    async def sub_app(scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse(as_json(scope[PRINCIPAL_KEY]))
        await response(scope, receive, send)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        calls.started = True
        yield

    app = Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/troops/{troop_id}/keys/{key:path}", use_key),
            Route("/troops/{troop_id}", view_troop),
            WebSocketRoute("/ws", ws_whoami),
            WebSocketRoute("/ws/troops/{troop_id}", ws_troop),
            Mount(
                "/mounted/{troop_id}",
                app=require(
                    troop=path_param("troop_id"), permission=Permission.VIEW
                ).wrap(sub_app),
            ),
        ],
        lifespan=lifespan,
    )
    app.add_middleware(TroopAuthMiddleware, auth=world.auth, **options)
    return app


def fastapi_app(world: World, *, middleware: bool = True) -> FastAPI:
    """A FastAPI app whose routes depend on troopauth.fastapi.requires."""
    app = FastAPI()
    auth = None if middleware else world.auth
    if middleware:
        app.add_middleware(TroopAuthMiddleware, auth=world.auth)
    can_use = requires(
        troop=path_param("troop_id"),
        permission=Permission.USE,
        key=path_param("key"),
        auth=auth,
    )

    @app.get("/troops/{troop_id}/keys/{key:path}")
    def use_key(
        key: str,
        principal: Principal = Depends(can_use),  # noqa: B008 (FastAPI's idiom)
    ) -> Any:
        return as_json(principal)

    @app.websocket("/ws/troops/{troop_id}/keys/{key}")
    async def ws_key(
        websocket: WebSocket,
        principal: Principal = Depends(can_use),  # noqa: B008 (FastAPI's idiom)
    ) -> None:
        await websocket.accept()
        await websocket.send_json(as_json(principal))
        await websocket.close()

    return app


def client(app: Any) -> httpx.AsyncClient:
    """An httpx client that calls the ASGI app in process."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    )


def assert_refused(response: httpx.Response, status: int, challenge: str) -> None:
    """The response is the default policy's answer for this refusal."""
    if 'error="invalid_token"' in challenge:
        body = INVALID
    elif 'error="insufficient_scope"' in challenge:
        body = DENIED
    else:
        body = MISSING
    assert response.status_code == status
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["content-type"] == "application/json"
    assert response.content == body


# -- the middleware --------------------------------------------------------------------


class TestMiddlewarePasses:
    """What the middleware lets through, and what it puts in the scope."""

    async def test_no_header_passes_unauthenticated(self, world: World) -> None:
        """A request without Authorization reaches the route with principal None."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get("/whoami")
        assert response.status_code == 200
        assert response.json() == {"principal": None}
        assert calls.scopes[0][PRINCIPAL_KEY] is None

    @pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "   "])
    async def test_other_scheme_passes_unauthenticated(
        self, world: World, header: str
    ) -> None:
        """Another scheme (or an empty header) is not troopauth's: principal None."""
        async with client(starlette_app(world, Calls([]))) as c:
            response = await c.get("/whoami", headers={"Authorization": header})
        assert response.status_code == 200
        assert response.json() == {"principal": None}

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
    async def test_good_value_puts_principal_in_scope(
        self, world: World, scheme: str
    ) -> None:
        """A live value (scheme in any case) puts its principal in the scope."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get(
                "/whoami", headers={"Authorization": f"{scheme} {world.ci}"}
            )
        assert response.status_code == 200
        assert response.json() == as_json(world.principal(world.ci))
        assert calls.scopes[0][PRINCIPAL_KEY] == world.principal(world.ci)

    async def test_value_is_nowhere_in_the_scope_but_its_header(
        self, world: World
    ) -> None:
        """troopauth copies the value into no scope key; only the header holds it."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            await c.get("/whoami", headers=bearer(world.pat))
        scope = calls.scopes[0]
        assert [k for k in scope if k.startswith("troopauth.")] == [
            "troopauth.principal",
            "troopauth.guard",
            "troopauth.passport",
        ]
        rest = {k: v for k, v in scope.items() if k != "headers"}
        assert world.pat not in repr(rest)
        assert world.pat.encode() not in repr(rest).encode()
        held = scope["troopauth.passport"]
        passport = {name: getattr(held, name) for name in held.__slots__}
        digest = hashlib.sha256(world.pat.encode()).digest()
        assert sorted(passport) == ["auth", "grants", "principal"]
        assert repr(digest) not in repr(passport)
        assert digest.hex() not in repr(passport)

    async def test_scope_is_copied_not_mutated(self, world: World) -> None:
        """The middleware gives the app a copy; the server's scope is untouched."""
        seen: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope)

        middleware = TroopAuthMiddleware(app, auth=world.auth)
        scope: dict[str, Any] = {
            "type": "http",
            "headers": [(b"authorization", f"Bearer {world.ci}".encode())],
        }
        await middleware(scope, _no_receive, _no_send)
        assert PRINCIPAL_KEY not in scope
        assert seen[0][PRINCIPAL_KEY] == world.principal(world.ci)

    async def test_lifespan_scope_passes_through(self, world: World) -> None:
        """A lifespan scope reaches the app as it is, without troopauth keys."""
        seen: list[dict[str, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope)

        scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}}
        await TroopAuthMiddleware(app, auth=world.auth)(scope, _no_receive, _no_send)
        assert seen == [scope]
        assert seen[0] is scope

    def test_lifespan_runs_in_a_real_app(self, world: World) -> None:
        """Starlette's startup runs under the middleware."""
        calls = Calls([])
        with TestClient(starlette_app(world, calls)) as c:
            assert c.get("/whoami").status_code == 200
        assert calls.started


async def _no_receive() -> dict[str, Any]:
    raise AssertionError("the middleware must not read the request")


async def _no_send(message: Any) -> None:
    raise AssertionError(f"unexpected {message['type']}")


def invalidate(world: World, how: str) -> str:
    """A value that is not live for the given reason."""
    if how == "unknown":
        return new_value()  # well formed, checksum right, never issued
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
            owner,
            world.troop,
            grant("use", "key:deploy"),
            expires_at=world.clock.now + timedelta(hours=1),
        ).value
        world.clock.advance(hours=1)
        return value
    if how == "replaced-pat":
        auth.issue_personal_token(owner.account_id)
        return world.pat
    raise AssertionError(how)


REASONS = ["unknown", "garbage", "rotated", "revoked", "expired", "replaced-pat"]

MALFORMED_HEADERS: list[list[tuple[str, bytes]]] = [
    [("Authorization", b"Bearer")],
    [("Authorization", b"Bearer   ")],
    [("Authorization", b"Bearer one two")],
    [("Authorization", b"Bearer cpt_pat_\xe9\xe9")],
    [("Authorization", b"Bearer x"), ("Authorization", b"Bearer y")],
]


class TestMiddlewareRefuses:
    """A bad value is answered with 401 before the app runs."""

    @pytest.mark.parametrize("how", REASONS)
    async def test_bad_value_gets_401(self, world: World, how: str) -> None:
        """Unknown, garbage, rotated, revoked, expired, replaced: 401 invalid_token."""
        value = invalidate(world, how)
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get("/whoami", headers=bearer(value))
        assert_refused(response, 401, 'Bearer error="invalid_token"')
        assert value.encode() not in response.content
        assert calls.scopes == []

    @pytest.mark.parametrize("headers", MALFORMED_HEADERS, ids=repr)
    async def test_malformed_header_gets_401(
        self, world: World, headers: list[tuple[str, bytes]]
    ) -> None:
        """A Bearer header without exactly one ASCII token, or two headers: 401."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get("/whoami", headers=headers)
        assert_refused(response, 401, 'Bearer error="invalid_token"')
        assert calls.scopes == []

    async def test_realm_is_in_the_challenge(self, world: World) -> None:
        """With realm= the challenge names it first, as RFC 6750 shows."""
        async with client(starlette_app(world, Calls([]), realm="troops")) as c:
            response = await c.get("/whoami", headers=bearer("nope"))
        assert_refused(response, 401, 'Bearer realm="troops", error="invalid_token"')

    async def test_value_never_in_logs(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Refusals are logged (at debug) without the value."""
        caplog.set_level(logging.DEBUG)
        value = invalidate(world, "revoked")
        async with client(starlette_app(world, Calls([]))) as c:
            await c.get("/whoami", headers=bearer(value))
            await c.get(f"/troops/{world.troop}/keys/x", headers=bearer(world.viewer))
        messages = [r.getMessage() for r in caplog.records if r.name == "troopauth.web"]
        assert len(messages) == 2
        assert "invalid_token" in messages[0]
        assert "insufficient_scope" in messages[1]
        assert value not in caplog.text
        assert world.viewer not in caplog.text


# -- require() on Starlette routes -----------------------------------------------------


class TestRequire:
    """The per-route requirement decorating Starlette endpoints."""

    async def test_allowed_gets_the_principal(self, world: World) -> None:
        """A token whose grant covers the key reaches the route with its principal."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get(
                f"/troops/{world.troop}/keys/prod/db", headers=bearer(world.ci)
            )
        assert response.status_code == 200
        assert response.json() == as_json(world.principal(world.ci))
        assert calls.scopes[0][PRINCIPAL_KEY] == world.principal(world.ci)

    async def test_pat_is_allowed(self, world: World) -> None:
        """The account's PAT passes every requirement in its account."""
        async with client(starlette_app(world, Calls([]))) as c:
            response = await c.get(
                f"/troops/{world.troop}/keys/anything", headers=bearer(world.pat)
            )
        assert response.status_code == 200
        assert response.json()["principal"]["kind"] == "personal"

    async def test_missing_token_gets_401_without_error_code(
        self, world: World
    ) -> None:
        """No token on a route that requires one: 401 ``Bearer``, no error code."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get(f"/troops/{world.troop}/keys/deploy")
        assert_refused(response, 401, "Bearer")
        assert calls.scopes == []

    @pytest.mark.parametrize(
        ("path", "token"),
        [
            ("keys/other", "ci"),  # key outside the scope
            ("keys/prod", "ci"),  # a prefix scope does not cover its stem
            ("keys/deploy", "viewer"),  # the permission is missing
            ("", "ci"),  # troop level: the key scope does not cover it
        ],
    )
    async def test_denied_gets_403(self, world: World, path: str, token: str) -> None:
        """A live token that may not: 403 insufficient_scope, route not run."""
        calls = Calls([])
        async with client(starlette_app(world, calls)) as c:
            response = await c.get(
                f"/troops/{world.troop}/{path}".rstrip("/"),
                headers=bearer(getattr(world, token)),
            )
        assert_refused(response, 403, 'Bearer error="insufficient_scope"')
        assert calls.scopes == []

    async def test_other_troop_gets_403(self, world: World) -> None:
        """A live token asking for a troop it is not attached to: 403."""
        async with client(starlette_app(world, Calls([]))) as c:
            response = await c.get(
                f"/troops/{world.other_troop}/keys/deploy", headers=bearer(world.ci)
            )
        assert_refused(response, 403, 'Bearer error="insufficient_scope"')

    async def test_sync_endpoint_is_guarded(self, world: World) -> None:
        """A decorated sync endpoint runs (in a thread) only when allowed."""
        async with client(starlette_app(world, Calls([]))) as c:
            allowed = await c.get(
                f"/troops/{world.troop}", headers=bearer(world.viewer)
            )
            denied = await c.get(
                f"/troops/{world.other_troop}", headers=bearer(world.viewer)
            )
        assert allowed.status_code == 200
        assert allowed.json() == as_json(world.principal(world.viewer))
        assert_refused(denied, 403, 'Bearer error="insufficient_scope"')

    async def test_with_auth_needs_no_middleware(self, world: World) -> None:
        """require(auth=...) works alone and answers bad values itself."""
        need = require(
            troop=world.troop,
            permission="use",
            key="deploy",
            auth=world.auth,
            realm="r",
        )

        @need
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse(request.scope[PRINCIPAL_KEY].token_id)

        app = Starlette(routes=[Route("/", endpoint)])
        async with client(app) as c:
            ok = await c.get("/", headers=bearer(world.ci))
            bad = await c.get("/", headers=bearer(invalidate(world, "revoked")))
            malformed = await c.get("/", headers={"Authorization": "Bearer a b"})
            missing = await c.get("/")
        assert ok.text == world.ci_id
        assert_refused(bad, 401, 'Bearer realm="r", error="invalid_token"')
        assert_refused(malformed, 401, 'Bearer realm="r", error="invalid_token"')
        assert missing.headers["www-authenticate"] == 'Bearer realm="r"'
        assert missing.content == MISSING

    async def test_without_auth_or_middleware_is_an_error(self, world: World) -> None:
        """A requirement with neither auth= nor the middleware raises, naming both."""

        @require(troop=world.troop, permission="use")
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse("reached")  # pragma: no cover

        app = Starlette(routes=[Route("/", endpoint)])
        async with client(app) as c:
            with pytest.raises(TroopAuthError, match="TroopAuthMiddleware"):
                await c.get("/", headers=bearer(world.ci))

    async def test_missing_path_param_is_an_error(self, world: World) -> None:
        """path_param naming a parameter the route lacks raises InvalidArgument."""

        @require(troop=path_param("troop_id"), permission="view", auth=world.auth)
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse("reached")  # pragma: no cover

        app = Starlette(routes=[Route("/t/{troop}", endpoint)])
        async with client(app) as c:
            with pytest.raises(InvalidArgument, match="troop_id"):
                await c.get(f"/t/{world.troop}", headers=bearer(world.viewer))

    async def test_int_path_param_becomes_text(self, world: World) -> None:
        """A converted path parameter (``{n:int}``) is read as its text."""

        @require(
            troop=world.troop, permission="use", key=path_param("n"), auth=world.auth
        )
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        owner = world.principal(world.pat)
        numbered = world.auth.issue_token(
            owner, world.troop, grant("use", "key:42")
        ).value
        app = Starlette(routes=[Route("/n/{n:int}", endpoint)])
        async with client(app) as c:
            assert (await c.get("/n/42", headers=bearer(numbered))).status_code == 200
            assert (await c.get("/n/43", headers=bearer(numbered))).status_code == 403


class TestWrap:
    """Requirement.wrap around an ASGI application (a mounted sub-app)."""

    async def test_mounted_app_is_guarded(self, world: World) -> None:
        """The wrapped app runs with the principal only when allowed."""
        async with client(starlette_app(world, Calls([]))) as c:
            ok = await c.get(f"/mounted/{world.troop}/", headers=bearer(world.viewer))
            denied = await c.get(f"/mounted/{world.troop}/", headers=bearer(world.ci))
            missing = await c.get(f"/mounted/{world.troop}/")
        assert ok.json() == as_json(world.principal(world.viewer))
        assert_refused(denied, 403, 'Bearer error="insufficient_scope"')
        assert_refused(missing, 401, "Bearer")

    async def test_lifespan_passes_through_the_wrapper(self, world: World) -> None:
        """A lifespan scope reaches the wrapped app unchecked."""
        seen: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])

        wrapped = require(troop="t", permission="view", auth=world.auth).wrap(app)
        await wrapped({"type": "lifespan"}, _no_receive, _no_send)
        assert seen == ["lifespan"]


# -- WebSockets ------------------------------------------------------------------------


def ws_outcome(app: Any, path: str, headers: dict[str, str]) -> Any:
    """The first JSON message, or ("closed", code, reason) if refused."""
    with TestClient(app) as c:
        try:
            with c.websocket_connect(path, headers=headers) as ws:
                return ws.receive_json()
        except WebSocketDisconnect as exc:
            return ("closed", exc.code, exc.reason)


class TestWebSockets:
    """A WebSocket with a bad or denied token is closed with 1008 before accept."""

    def test_good_value_is_accepted_with_principal(self, world: World) -> None:
        """A live value: the socket is accepted and the endpoint sees the principal."""
        got = ws_outcome(starlette_app(world, Calls([])), "/ws", bearer(world.ci))
        assert got == as_json(world.principal(world.ci))

    def test_no_token_passes_the_middleware(self, world: World) -> None:
        """Without a token the middleware lets the socket through unauthenticated."""
        assert ws_outcome(starlette_app(world, Calls([])), "/ws", {}) == {
            "principal": None
        }

    @pytest.mark.parametrize("how", ["unknown", "revoked", "rotated"])
    def test_bad_value_is_closed_1008(self, world: World, how: str) -> None:
        """The middleware closes a socket with a bad value: code 1008."""
        value = invalidate(world, how)
        got = ws_outcome(starlette_app(world, Calls([])), "/ws", bearer(value))
        assert got == ("closed", 1008, "invalid_token")

    def test_malformed_header_is_closed_1008(self, world: World) -> None:
        """A malformed bearer header closes the socket with 1008."""
        got = ws_outcome(
            starlette_app(world, Calls([])), "/ws", {"Authorization": "Bearer"}
        )
        assert got == ("closed", 1008, "invalid_token")

    @pytest.mark.parametrize(
        ("token", "reason"), [(None, "missing_token"), ("ci", "insufficient_scope")]
    )
    def test_require_closes_1008(
        self, world: World, token: str | None, reason: str
    ) -> None:
        """A decorated WebSocket endpoint closes a missing or denied token with 1008."""
        headers = {} if token is None else bearer(getattr(world, token))
        path = f"/ws/troops/{world.troop}"
        got = ws_outcome(starlette_app(world, Calls([])), path, headers)
        assert got == ("closed", 1008, reason)

    def test_require_accepts_allowed(self, world: World) -> None:
        """A decorated WebSocket endpoint runs for an allowed token."""
        path = f"/ws/troops/{world.troop}"
        got = ws_outcome(starlette_app(world, Calls([])), path, bearer(world.viewer))
        assert got == as_json(world.principal(world.viewer))


# -- FastAPI ---------------------------------------------------------------------------


class TestFastAPI:
    """troopauth.fastapi.requires as a FastAPI dependency."""

    @pytest.mark.parametrize("middleware", [True, False])
    async def test_allowed_returns_the_principal(
        self, world: World, middleware: bool
    ) -> None:
        """An allowed token: the dependency hands the route its principal."""
        app = fastapi_app(world, middleware=middleware)
        async with client(app) as c:
            response = await c.get(
                f"/troops/{world.troop}/keys/deploy", headers=bearer(world.ci)
            )
        assert response.status_code == 200
        assert response.json() == as_json(world.principal(world.ci))

    @pytest.mark.parametrize("middleware", [True, False])
    async def test_refusals(self, world: World, middleware: bool) -> None:
        """Missing or invalid 401, no key or permission 403: the ASGI bytes."""
        app = fastapi_app(world, middleware=middleware)
        path = f"/troops/{world.troop}/keys/deploy"
        async with client(app) as c:
            missing = await c.get(path)
            invalid = await c.get(path, headers=bearer(invalidate(world, "expired")))
            malformed = await c.get(path, headers={"Authorization": "Bearer"})
            no_permission = await c.get(path, headers=bearer(world.viewer))
            no_key = await c.get(
                f"/troops/{world.troop}/keys/other", headers=bearer(world.ci)
            )
        assert_refused(missing, 401, "Bearer")
        assert_refused(invalid, 401, 'Bearer error="invalid_token"')
        assert_refused(malformed, 401, 'Bearer error="invalid_token"')
        assert_refused(no_permission, 403, 'Bearer error="insufficient_scope"')
        assert_refused(no_key, 403, 'Bearer error="insufficient_scope"')

    def test_bodies_match_the_default_policy(self) -> None:
        """FastAPI's HTTPException body is byte for byte json_error's body."""
        for status, error, body in [
            (401, None, MISSING),
            (401, "invalid_token", INVALID),
            (403, "insufficient_scope", DENIED),
        ]:
            assert json_error(Refusal(status, error, "Bearer")).body == body

    def test_openapi_lists_the_bearer_scheme(self, world: World) -> None:
        """The dependency is an OpenAPI security scheme (HTTP bearer)."""
        spec = fastapi_app(world).openapi()
        assert spec["components"]["securitySchemes"] == {
            "troopauth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "troopauth",
            }
        }
        operation = spec["paths"]["/troops/{troop_id}/keys/{key}"]["get"]
        assert operation["security"] == [{"troopauth": []}]

    async def test_responses_document_the_answers(self, world: World) -> None:
        """RESPONSES puts 401 and 403 in OpenAPI, as the dependency answers them."""
        app = FastAPI()
        app.add_middleware(TroopAuthMiddleware, auth=world.auth)
        can_view = requires(troop=path_param("troop_id"), permission="view")

        @app.get("/troops/{troop_id}", responses=RESPONSES)
        def view(
            troop_id: str,
            principal: Principal = Depends(can_view),  # noqa: B008 (FastAPI's idiom)
        ) -> Any:
            return as_json(principal)

        operation = app.openapi()["paths"]["/troops/{troop_id}"]["get"]
        documented = operation["responses"]
        assert set(documented) == {"200", "401", "403", "422"}
        path = f"/troops/{world.troop}"
        async with client(app) as c:
            answers = {
                "401": [await c.get(path), await c.get(path, headers=bearer("x"))],
                "403": [await c.get(path, headers=bearer(world.ci))],
            }
        for status, responses in answers.items():
            spec = documented[status]
            codes = spec["content"]["application/json"]["schema"]["properties"][
                "detail"
            ]["enum"]
            assert "WWW-Authenticate" in spec["headers"]
            for response in responses:
                assert str(response.status_code) == status
                assert response.json()["detail"] in codes
                assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(
        ("token", "expected"),
        [
            ("ci", "ok"),
            (None, ("closed", 1008, "missing_token")),
            ("viewer", ("closed", 1008, "insufficient_scope")),
        ],
    )
    def test_websocket_dependency(
        self, world: World, token: str | None, expected: Any
    ) -> None:
        """On a WebSocket route the dependency closes a refusal with 1008."""
        headers = {} if token is None else bearer(getattr(world, token))
        path = f"/ws/troops/{world.troop}/keys/deploy"
        got = ws_outcome(fastapi_app(world, middleware=False), path, headers)
        if expected == "ok":
            assert got == as_json(world.principal(world.ci))
        else:
            assert got == expected


# -- the error policy ------------------------------------------------------------------


class TestErrorPolicy:
    """The injectable error policy and the default one."""

    async def test_custom_policy_builds_the_answer(self, world: World) -> None:
        """on_error's response is sent; it is given the refusal, not the value."""
        seen: list[Refusal] = []

        def plain(refusal: Refusal) -> ErrorResponse:
            seen.append(refusal)
            return ErrorResponse(
                refusal.status,
                [("WWW-Authenticate", refusal.challenge), ("X-Why", refusal.detail)],
                b"no",
            )

        app = starlette_app(world, Calls([]), on_error=plain)
        async with client(app) as c:
            bad = await c.get("/whoami", headers=bearer(invalidate(world, "unknown")))
            denied = await c.get(
                f"/troops/{world.troop}/keys/other", headers=bearer(world.ci)
            )
        assert (bad.status_code, bad.content, bad.headers["x-why"]) == (
            401,
            b"no",
            "invalid_token",
        )
        assert bad.headers["content-length"] == "2"
        assert (denied.status_code, denied.headers["x-why"]) == (
            403,
            "insufficient_scope",
        )
        assert [r.error for r in seen] == ["invalid_token", "insufficient_scope"]
        assert world.ci not in repr(seen)

    def test_json_error_is_exact(self) -> None:
        """The default answer: status, challenge, JSON type and a fixed body."""
        response = json_error(
            Refusal(401, "invalid_token", 'Bearer error="invalid_token"')
        )
        assert response == ErrorResponse(
            401,
            (
                ("WWW-Authenticate", 'Bearer error="invalid_token"'),
                ("Content-Type", "application/json"),
            ),
            INVALID,
        )
        assert json.loads(response.body) == {"detail": "invalid_token"}


# -- offloading verify off the event loop ----------------------------------------------


class TestOffload:
    """Verify runs in a worker thread when the store's lookup is not cheap."""

    @pytest.fixture
    def remote(self, clock: FrozenClock) -> Iterator[World]:
        """The world on a store that says its lookup is remote."""
        with RemoteLikeStore() as store:
            yield build_world(TroopAuth(store, clock=clock), clock)

    @staticmethod
    def threads(world: World) -> list[int]:
        """The threads the spy store's lookups ran in."""
        store = world.auth.store
        assert isinstance(store, SpyStore)
        return store.lookup_threads

    @pytest.mark.parametrize(
        ("offload", "off_loop"), [("auto", True), (True, True), (False, False)]
    )
    async def test_remote_store(
        self, remote: World, offload: Any, off_loop: bool
    ) -> None:
        """cheap_lookup False: "auto" and True look up off the loop, False on it."""
        loop_thread = threading.get_ident()
        del self.threads(remote)[:]
        app = starlette_app(remote, Calls([]), offload=offload)
        async with client(app) as c:
            ok = await c.get(
                f"/troops/{remote.troop}/keys/deploy", headers=bearer(remote.ci)
            )
            bad = await c.get("/whoami", headers=bearer(invalidate(remote, "unknown")))
        assert ok.status_code == 200
        assert bad.status_code == 401
        threads = self.threads(remote)
        assert len(threads) == 2  # the middleware's, then the unknown value
        assert all((t != loop_thread) is off_loop for t in threads)

    async def test_fastapi_dependency_offloads(self, remote: World) -> None:
        """The FastAPI dependency (with auth=) looks up off the loop as well."""
        loop_thread = threading.get_ident()
        del self.threads(remote)[:]
        async with client(fastapi_app(remote, middleware=False)) as c:
            response = await c.get(
                f"/troops/{remote.troop}/keys/deploy", headers=bearer(remote.ci)
            )
        assert response.status_code == 200
        assert self.threads(remote)
        assert loop_thread not in self.threads(remote)

    @pytest.mark.parametrize(
        ("offload", "off_loop"), [("auto", False), (True, True), (False, False)]
    )
    async def test_cheap_store(
        self, clock: FrozenClock, offload: Any, off_loop: bool
    ) -> None:
        """cheap_lookup True: "auto" and False look up inline, True off the loop."""
        loop_thread = threading.get_ident()
        with SpyStore() as store:
            world = build_world(TroopAuth(store, clock=clock), clock)
            del store.lookup_threads[:]
            app = starlette_app(world, Calls([]), offload=offload)
            async with client(app) as c:
                response = await c.get(
                    f"/troops/{world.troop}/keys/deploy", headers=bearer(world.ci)
                )
        assert response.status_code == 200
        assert len(store.lookup_threads) == 1  # the middleware's, reused
        assert all((t != loop_thread) is off_loop for t in store.lookup_threads)


class TestOneLookup:
    """Behind the middleware, a request costs one store lookup, requirement or not."""

    @pytest.fixture
    def spied(self, clock: FrozenClock) -> Iterator[tuple[World, SpyStore]]:
        """The world on a store that counts its lookups."""
        with SpyStore() as store:
            yield build_world(TroopAuth(store, clock=clock), clock), store

    @pytest.mark.parametrize(
        ("path", "token", "status"),
        [
            ("/troops/{troop}/keys/prod/db", "ci", 200),
            ("/troops/{troop}/keys/billing", "ci", 403),
            ("/troops/{other}/keys/deploy", "ci", 403),
            ("/troops/{troop}", "viewer", 200),
            ("/mounted/{troop}/", "pat", 200),
            ("/mounted/{troop}/", "ci", 403),
        ],
    )
    async def test_starlette_requirement(
        self, spied: tuple[World, SpyStore], path: str, token: str, status: int
    ) -> None:
        """require() and .wrap() reuse the middleware's lookup: one per request."""
        world, store = spied
        app = starlette_app(world, Calls([]))
        url = path.format(troop=world.troop, other=world.other_troop)
        del store.lookup_threads[:]
        async with client(app) as c:
            response = await c.get(url, headers=bearer(getattr(world, token)))
        assert response.status_code == status
        assert len(store.lookup_threads) == 1

    @pytest.mark.parametrize(("key", "status"), [("prod/db", 200), ("billing", 403)])
    async def test_fastapi_dependency(
        self, spied: tuple[World, SpyStore], key: str, status: int
    ) -> None:
        """requires() behind the middleware: one lookup per request."""
        world, store = spied
        del store.lookup_threads[:]
        async with client(fastapi_app(world)) as c:
            response = await c.get(
                f"/troops/{world.troop}/keys/{key}", headers=bearer(world.ci)
            )
        assert response.status_code == status
        assert len(store.lookup_threads) == 1

    def test_websocket_requirement(self, spied: tuple[World, SpyStore]) -> None:
        """A WebSocket route's requirement reuses the middleware's lookup too."""
        world, store = spied
        expected = as_json(world.principal(world.viewer))
        del store.lookup_threads[:]
        with (
            TestClient(starlette_app(world, Calls([]))) as c,
            c.websocket_connect(
                f"/ws/troops/{world.troop}", headers=bearer(world.viewer)
            ) as ws,
        ):
            assert ws.receive_json() == expected
        assert len(store.lookup_threads) == 1

    async def test_each_request_reads_the_store_again(
        self, spied: tuple[World, SpyStore]
    ) -> None:
        """A detach between two requests applies to the next one."""
        world, _ = spied
        app = starlette_app(world, Calls([]))
        async with client(app) as c:
            ok = await c.get(f"/troops/{world.troop}", headers=bearer(world.viewer))
            world.auth.detach(
                world.principal(world.pat),
                world.principal(world.viewer).token_id or "",
                world.troop,
            )
            gone = await c.get(f"/troops/{world.troop}", headers=bearer(world.viewer))
        assert ok.status_code == 200
        assert gone.status_code == 403

    async def test_own_auth_looks_up_itself(
        self, spied: tuple[World, SpyStore], clock: FrozenClock
    ) -> None:
        """A requirement with another auth= does not trust the middleware's lookup."""
        world, _ = spied
        with MemoryStore() as other_store:
            other = build_world(TroopAuth(other_store, clock=clock), clock)
            need = require(troop=other.troop, permission="view", auth=other.auth)

            @need
            async def endpoint(request: Request) -> JSONResponse:
                return JSONResponse(as_json(request.scope[PRINCIPAL_KEY]))

            app = Starlette(routes=[Route("/", endpoint)])
            app.add_middleware(TroopAuthMiddleware, auth=world.auth)
            async with client(app) as c:
                theirs = await c.get("/", headers=bearer(other.viewer))
                ours = await c.get("/", headers=bearer(world.viewer))
        assert theirs.status_code == 401  # the outer middleware does not know it
        assert ours.status_code == 401  # nor does the route's own auth know ours


class TestPostgres:
    """The middleware and a requirement on a real remote store, PostgreSQL."""

    async def test_answers_with_lookups_off_the_loop(self, postgres_store: Any) -> None:
        """200, 401 and 403 on PostgresStore; every lookup runs in a worker thread."""
        threads: list[int] = []
        inner = postgres_store.lookup

        def spy(digest: bytes) -> Any:
            threads.append(threading.get_ident())
            return inner(digest)

        postgres_store.lookup = spy  # before TroopAuth, which binds the lookup
        clock = FrozenClock()
        world = build_world(TroopAuth(postgres_store, clock=clock), clock)
        owner = world.principal(world.pat)
        gone = world.auth.issue_token(owner, world.troop, grant("view"))
        world.auth.revoke(owner, gone.token_id)
        del threads[:]
        loop_thread = threading.get_ident()
        async with client(starlette_app(world, Calls([]))) as c:
            ok = await c.get(
                f"/troops/{world.troop}/keys/deploy", headers=bearer(world.ci)
            )
            denied = await c.get(
                f"/troops/{world.troop}/keys/other", headers=bearer(world.ci)
            )
            bad = await c.get("/whoami", headers=bearer(gone.value))
        assert ok.status_code == 200
        assert ok.json()["principal"]["token_id"] == world.ci_id
        assert_refused(denied, 403, 'Bearer error="insufficient_scope"')
        assert_refused(bad, 401, 'Bearer error="invalid_token"')
        assert len(threads) == 3  # one per request
        assert loop_thread not in threads


# -- configuration and the header parser -----------------------------------------------


class TestConfiguration:
    """Bad configuration fails at construction with InvalidArgument."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"troop": "", "permission": "view"},
            {"troop": 3, "permission": "view"},
            {"troop": "t", "permission": Permission(0)},
            {"troop": "t", "permission": 1},
            {"troop": "t", "permission": "fly"},
            {"troop": "t", "permission": "view", "key": ""},
            {"troop": "t", "permission": "view", "key": 5},
            {"troop": "t", "permission": "view", "realm": "r"},
            {"troop": "t", "permission": "view", "offload": True},
        ],
        ids=repr,
    )
    def test_bad_requirement(self, kwargs: dict[str, Any]) -> None:
        """require() checks its targets, its permission and its options."""
        with pytest.raises(InvalidArgument):
            require(**kwargs)

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"realm": 'say "hi"'},
            {"realm": "back\\slash"},
            {"realm": "caf\u00e9"},
            {"realm": 7},
            {"on_error": "json"},
            {"offload": "sometimes"},
        ],
        ids=repr,
    )
    def test_bad_middleware_options(self, world: World, kwargs: dict[str, Any]) -> None:
        """The middleware checks realm (a quoted-string), on_error and offload."""
        with pytest.raises(InvalidArgument):
            TroopAuthMiddleware(_app, auth=world.auth, **kwargs)

    def test_auth_must_be_troopauth(self) -> None:
        """auth= must be a TroopAuth."""
        with pytest.raises(InvalidArgument, match="TroopAuth"):
            TroopAuthMiddleware(_app, auth=MemoryStore())  # type: ignore[arg-type]

    def test_path_param_name(self) -> None:
        """path_param needs a non-empty name and has a readable repr."""
        with pytest.raises(InvalidArgument):
            path_param("")
        assert repr(path_param("key")) == "PathParam(name='key')"

    def test_requirement_repr(self) -> None:
        """A requirement's repr names what it requires."""
        need = require(troop=path_param("t"), permission="view,use", key="k")
        assert repr(need) == (
            "Requirement(troop=PathParam(name='t'), "
            "permission=<Permission.VIEW|USE: 3>, key='k')"
        )


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that does nothing."""


class TestParseAuthorization:
    """Reading a bearer value out of an Authorization header."""

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, None),
            ("", None),
            ("Basic abc", None),
            ("Bearer abc", "abc"),
            ("bearer   abc  ", "abc"),
            ("Bearer\tabc", "abc"),
            ("Bearer", MALFORMED),
            ("Bearer a b", MALFORMED),
            ("Bearer a, Bearer b", MALFORMED),
            ("Bearer \u00e9", MALFORMED),
            ("Bearer\u00a0abc", MALFORMED),
        ],
    )
    def test_examples(self, header: str | None, expected: object) -> None:
        """Absent or another scheme: None; not one ASCII token: MALFORMED."""
        assert parse_authorization(header) == expected

    @given(st.text())
    def test_never_raises_and_returns_one_token(self, header: str) -> None:
        """Any text parses; a value, when returned, is ASCII without whitespace."""
        value = parse_authorization(header)
        if isinstance(value, str):
            assert value
            assert value.isascii()
            assert value.split() == [value]

    @given(st.text(alphabet="abcXYZ019_-.~+/=", min_size=1))
    def test_round_trip(self, value: str) -> None:
        """``Bearer <token68>`` gives the token back."""
        assert parse_authorization(f"Bearer {value}") == value
