"""troopauth.mcp: troop tokens protect an MCP server (the SDK's MCPServer).

The HTTP tests serve a real MCPServer through its streamable HTTP ASGI app
(lifespan run by hand, so its session manager has its task group) and drive
it with httpx: initialize, then call a tool, as a client does.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from pydantic import AnyHttpUrl

from tests.helpers import Setup, grant, make_account
from tests.strategies import grants
from troopauth import (
    AccessDenied,
    Grant,
    InvalidArgument,
    MemoryStore,
    Permission,
    SQLiteStore,
    StoreError,
    TroopAuth,
)
from troopauth.mcp import TroopTokenVerifier, grant_scopes, require_key
from troopauth.tokens import new_value

V, U, E, M = Permission.VIEW, Permission.USE, Permission.EDIT, Permission.MANAGE

BASE_URL = "http://127.0.0.1:8000"
PROTOCOL = "2025-11-25"
ACCEPT = "application/json, text/event-stream"


# -- the server under test -------------------------------------------------------


class Client:
    """A minimal MCP client over the ASGI app: JSON-RPC over POST /mcp."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self._id = 0

    async def post(
        self, value: str | None, body: dict[str, Any], session: str | None = None
    ) -> httpx.Response:
        """POST one JSON-RPC message, with *value* as the bearer token."""
        headers = {"Accept": ACCEPT, "MCP-Protocol-Version": PROTOCOL}
        if value is not None:
            headers["Authorization"] = f"Bearer {value}"
        if session is not None:
            headers["Mcp-Session-Id"] = session
        return await self.http.post("/mcp", headers=headers, json=body)

    def _request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        return {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}

    async def initialize(self, value: str | None) -> httpx.Response:
        """The opening request of a session."""
        params = {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        }
        return await self.post(value, self._request("initialize", params))

    async def open(self, value: str) -> str:
        """Initialize a session with *value* and return its id."""
        response = await self.initialize(value)
        assert response.status_code == 200, response.text
        session = response.headers["mcp-session-id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        done = await self.post(value, note, session)
        assert done.status_code == 202, done.text
        return session

    async def call(
        self, value: str | None, session: str, tool: str, **arguments: Any
    ) -> httpx.Response:
        """Call a tool in an open session."""
        body = self._request("tools/call", {"name": tool, "arguments": arguments})
        return await self.post(value, body, session)


def build_server(
    verifier: TroopTokenVerifier, required_scopes: list[str] | None = None
) -> MCPServer[Any]:
    """An MCPServer protected by *verifier*, with two tools."""
    server: MCPServer[Any] = MCPServer(
        "troop-test",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=AnyHttpUrl("https://auth.example.com"),
            resource_server_url=None,
            required_scopes=required_scopes,
        ),
    )

    @server.tool()
    def whoami() -> dict[str, Any]:
        """The access token the tool sees."""
        seen = get_access_token()
        assert seen is not None
        return {"client_id": seen.client_id, "scopes": seen.scopes}

    @server.tool()
    def use_key(key: str) -> str:
        """Use a key: the token's grant must allow USE on it."""
        require_key(key, Permission.USE)
        return f"used {key}"

    return server


@asynccontextmanager
async def serve(
    verifier: TroopTokenVerifier,
    required_scopes: list[str] | None = None,
    *,
    sse: bool = False,
) -> AsyncIterator[Client]:
    """Run the server's lifespan and yield a client wired to its ASGI app
    (JSON responses, or SSE streams with ``sse=True``)."""
    server = build_server(verifier, required_scopes)
    app = server.streamable_http_app(json_response=not sse)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http,
    ):
        yield Client(http)


def run(
    verifier: TroopTokenVerifier,
    scenario: Callable[[Client], Awaitable[Any]],
    required_scopes: list[str] | None = None,
    *,
    sse: bool = False,
) -> Any:
    """Serve, run *scenario* against the server, and return what it returns."""

    async def main() -> Any:
        async with serve(verifier, required_scopes, sse=sse) as client:
            return await scenario(client)

    return anyio.run(main)


def tool_result(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC result of a tools/call that got through authentication."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line for line in response.text.splitlines() if line.startswith("data:")]
        message = json.loads(data[-1].removeprefix("data:"))
    else:
        message = response.json()
    result: dict[str, Any] = message["result"]
    return result


def assert_refused(response: httpx.Response, value: str | None) -> None:
    """A 401 with an RFC 6750 challenge that does not echo the value."""
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    if value:
        assert value not in response.text
        assert value not in response.headers["www-authenticate"]


@pytest.fixture
def world(auth: TroopAuth) -> Setup:
    """An account with two troops and ten seats."""
    return make_account(auth, seats=10, troops=2)


@pytest.fixture
def verifier(auth: TroopAuth, world: Setup) -> TroopTokenVerifier:
    """The verifier of a server for the first troop, requiring USE."""
    return TroopTokenVerifier(auth, world.tid)


def _issue(world: Setup, permission: str, scope: str = "*", troop: int = 0, **kw: Any):
    return world.auth.issue_token(
        world.owner, world.troops[troop].id, grant(permission, scope), **kw
    )


# -- over HTTP ---------------------------------------------------------------------


class TestHttpAccepts:
    """A live token of the server's troop with the required permission gets in."""

    @pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
    def test_troop_token_initializes_and_calls_a_tool(self, verifier, world, sse):
        """initialize and tools/call answer 200; the tool sees the token's id."""
        ci = _issue(world, "use")

        async def scenario(client: Client) -> dict[str, Any]:
            session = await client.open(ci.value)
            return tool_result(await client.call(ci.value, session, "whoami"))

        result = run(verifier, scenario, sse=sse)
        assert result["isError"] is False
        assert result["structuredContent"]["client_id"] == ci.token_id
        assert result["structuredContent"]["scopes"] == ["troopauth:use", "*"]

    def test_personal_token_of_the_account(self, verifier, world):
        """The account's personal token holds every troop, so it gets in."""

        async def scenario(client: Client) -> dict[str, Any]:
            session = await client.open(world.pat.value)
            return tool_result(await client.call(world.pat.value, session, "whoami"))

        result = run(verifier, scenario)
        assert result["structuredContent"]["client_id"] == world.owner.token_id

    def test_key_scoped_token_gets_in(self, verifier, world):
        """The required permission on any scope is enough to connect."""
        ci = _issue(world, "use", "key:deploy")

        async def scenario(client: Client) -> int:
            return (await client.initialize(ci.value)).status_code

        assert run(verifier, scenario) == 200

    def test_rotated_value_continues_the_session(self, verifier, world):
        """The new value of a rotated token is the same client: same session."""
        ci = _issue(world, "use")

        async def scenario(client: Client) -> dict[str, Any]:
            session = await client.open(ci.value)
            again = world.auth.rotate(world.owner, ci.token_id)
            return tool_result(await client.call(again.value, session, "whoami"))

        assert run(verifier, scenario)["structuredContent"]["client_id"] == ci.token_id


class TestHttpRefuses:
    """Everything else is a 401 from the SDK, with a challenge and no echo."""

    @pytest.mark.parametrize(
        "value",
        [None, "", "garbage", "cpt_pat_" + "A" * 36, "cpt_pat_" + "A" * 37],
        ids=["missing", "empty", "garbage", "bad-checksum", "too-long"],
    )
    def test_bad_values(self, verifier, value):
        """No header, a malformed value or a value of another shape: 401."""

        async def scenario(client: Client) -> httpx.Response:
            return await client.initialize(value)

        assert_refused(run(verifier, scenario), value)

    def test_other_scheme(self, verifier, world):
        """A live value sent with another scheme than Bearer: 401."""

        async def scenario(client: Client) -> httpx.Response:
            headers = {"Accept": ACCEPT, "Authorization": f"Basic {world.pat.value}"}
            return await client.http.post("/mcp", headers=headers, json={})

        assert_refused(run(verifier, scenario), world.pat.value)

    def test_unknown_well_formed_value(self, verifier):
        """A well-formed value that no store holds: 401."""
        value = new_value()

        async def scenario(client: Client) -> httpx.Response:
            return await client.initialize(value)

        assert_refused(run(verifier, scenario), value)

    def test_rotated_away_value(self, verifier, world):
        """The old value of a rotated token: 401, at once, mid-session."""
        ci = _issue(world, "use")

        async def scenario(client: Client) -> httpx.Response:
            session = await client.open(ci.value)
            world.auth.rotate(world.owner, ci.token_id)
            return await client.call(ci.value, session, "whoami")

        assert_refused(run(verifier, scenario), ci.value)

    def test_revoked_token(self, verifier, world):
        """A token revoked after it opened a session: the next call gets 401."""
        ci = _issue(world, "use")

        async def scenario(client: Client) -> httpx.Response:
            session = await client.open(ci.value)
            world.auth.revoke(world.owner, ci.token_id)
            return await client.call(ci.value, session, "whoami")

        assert_refused(run(verifier, scenario), ci.value)

    def test_expired_token(self, verifier, world, clock):
        """A token past its expiry (on troopauth's clock): 401."""
        clock.now = datetime.now(UTC)  # the SDK also checks expiry, on real time
        ci = _issue(world, "use", expires_at=clock.now + timedelta(hours=1))

        async def scenario(client: Client) -> tuple[int, httpx.Response]:
            session = await client.open(ci.value)
            first = await client.call(ci.value, session, "whoami")
            clock.advance(hours=1)
            return first.status_code, await client.call(ci.value, session, "whoami")

        first, then = run(verifier, scenario)
        assert first == 200
        assert_refused(then, ci.value)

    def test_token_of_another_troop(self, verifier, world):
        """A token attached only to another troop of the account: 401."""
        other = _issue(world, "use", troop=1)

        async def scenario(client: Client) -> httpx.Response:
            return await client.initialize(other.value)

        assert_refused(run(verifier, scenario), other.value)

    def test_detached_token(self, verifier, world):
        """A token detached from the server's troop mid-session: 401."""
        ci = _issue(world, "use", troop=1)
        world.auth.attach(world.owner, ci.token_id, world.tid, grant("use"))

        async def scenario(client: Client) -> httpx.Response:
            session = await client.open(ci.value)
            world.auth.detach(world.owner, ci.token_id, world.tid)
            return await client.call(ci.value, session, "whoami")

        assert_refused(run(verifier, scenario), ci.value)

    def test_personal_token_of_another_account(self, auth, verifier):
        """Another account's personal token: 401."""
        stranger = make_account(auth)

        async def scenario(client: Client) -> httpx.Response:
            return await client.initialize(stranger.pat.value)

        assert_refused(run(verifier, scenario), stranger.pat.value)

    def test_missing_required_permission(self, verifier, world):
        """A token of the troop without the required permission: 401."""
        viewer = _issue(world, "view,edit,manage")

        async def scenario(client: Client) -> httpx.Response:
            return await client.initialize(viewer.value)

        assert_refused(run(verifier, scenario), viewer.value)


class TestHttpRequiredScopes:
    """AuthSettings.required_scopes reads the mapped scopes: 403, not 401."""

    def test_missing_scope_is_403(self, verifier, world):
        """A USE token on a server that also requires troopauth:edit: 403."""
        ci = _issue(world, "use")
        both = _issue(world, "use,edit", "key:a")

        async def scenario(client: Client) -> tuple[httpx.Response, int]:
            refused = await client.initialize(ci.value)
            return refused, (await client.initialize(both.value)).status_code

        refused, accepted = run(verifier, scenario, ["troopauth:edit"])
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert accepted == 200


class TestHttpRequireKey:
    """Inside a tool, require_key checks a key against the request's grant."""

    def _use(self, verifier, value: str, key: str) -> dict[str, Any]:
        async def scenario(client: Client) -> dict[str, Any]:
            session = await client.open(value)
            return tool_result(await client.call(value, session, "use_key", key=key))

        result: dict[str, Any] = run(verifier, scenario)
        return result

    def test_key_in_scope(self, verifier, world):
        """A key the token's scope covers: the tool runs."""
        ci = _issue(world, "use", "key:deploy,key:prod/*")
        result = self._use(verifier, ci.value, "prod/db")
        assert result["isError"] is False
        assert result["structuredContent"] == {"result": "used prod/db"}

    def test_key_out_of_scope(self, verifier, world, caplog):
        """A key outside the token's scope: a tool error, logged as no crash."""
        ci = _issue(world, "use", "key:deploy")
        result = self._use(verifier, ci.value, "billing")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert result["isError"] is True
        text = result["content"][0]["text"]
        assert (
            text == "Error executing tool use_key: access denied: use on key 'billing'"
        )

    @pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
    def test_grant_changed_between_requests(self, verifier, world, sse):
        """A re-attach with a narrower grant applies to the next request."""
        ci = _issue(world, "use", "*")

        async def scenario(client: Client) -> tuple[dict[str, Any], dict[str, Any]]:
            session = await client.open(ci.value)
            before = tool_result(
                await client.call(ci.value, session, "use_key", key="billing")
            )
            narrower = grant("use", "key:deploy")
            world.auth.attach(world.owner, ci.token_id, world.tid, narrower)
            after = tool_result(
                await client.call(ci.value, session, "use_key", key="billing")
            )
            return before, after

        before, after = run(verifier, scenario, sse=sse)
        assert before["isError"] is False
        assert after["isError"] is True

    def test_other_verifiers_token_is_refused(self, auth, world):
        """A token another verifier made, with troopauth-shaped scopes: refused."""

        class OtherVerifier:
            """A verifier of some other scheme whose scopes look like ours."""

            async def verify_token(self, token: str) -> AccessToken | None:
                return AccessToken(
                    token="other",  # noqa: S106 (not a secret)
                    client_id="someone",
                    scopes=["troopauth:use", "*"],
                )

        result = self._use(OtherVerifier(), "anything", "billing")
        assert result["isError"] is True
        text = result["content"][0]["text"]
        assert text.endswith("access denied: no troop access token on this request")


# -- the verifier on its own ------------------------------------------------------


def verify(verifier: TroopTokenVerifier, value: Any) -> AccessToken | None:
    """Run verify_token as the SDK does (awaited on an event loop)."""
    return anyio.run(verifier.verify_token, value)


class TestVerifierMapping:
    """verify_token maps a live token and its grant to the SDK's AccessToken."""

    def test_fields(self, verifier, world):
        """client_id is the token id; scopes, claims and expiry follow the token."""
        ci = _issue(world, "view,use", "key:deploy,key:prod/*")
        token = verify(verifier, ci.value)
        assert token is not None
        assert token.client_id == ci.token_id
        assert token.scopes == [
            "troopauth:view",
            "troopauth:use",
            "key:deploy",
            "key:prod/*",
        ]
        assert token.expires_at is None
        assert token.resource is None
        assert token.claims == {
            "troop_id": world.tid,
            "account_id": world.account.id,
            "kind": "troop",
        }

    def test_personal_token(self, verifier, world):
        """The personal token maps to every permission on the whole troop."""
        token = verify(verifier, world.pat.value)
        assert token is not None
        assert token.client_id == world.owner.token_id
        assert token.scopes == [
            "troopauth:view",
            "troopauth:use",
            "troopauth:edit",
            "troopauth:manage",
            "*",
        ]
        assert token.claims is not None
        assert token.claims["kind"] == "personal"

    def test_expiry_rounds_down_to_whole_seconds(self, verifier, world, clock):
        """expires_at is the token's expiry in whole seconds, rounded down."""
        expires = clock.now + timedelta(hours=1, milliseconds=900)
        ci = _issue(world, "use", expires_at=expires)
        token = verify(verifier, ci.value)
        assert token is not None
        assert token.expires_at == int(expires.timestamp())
        assert token.expires_at < expires.timestamp()

    def test_expired(self, verifier, world, clock):
        """At its expiry instant the token is refused (troopauth's clock)."""
        ci = _issue(world, "use", expires_at=clock.now + timedelta(seconds=5))
        assert verify(verifier, ci.value) is not None
        clock.advance(seconds=5)
        assert verify(verifier, ci.value) is None

    def test_resource(self, auth, world):
        """resource= is copied to the access token, for validate_token_resource."""
        verifier = TroopTokenVerifier(auth, world.tid, resource="https://mcp.example")
        token = verify(verifier, world.pat.value)
        assert token is not None
        assert token.resource == "https://mcp.example"

    def test_token_field_holds_no_secret(self, verifier, world):
        """The access token holds the hint, never the value, in any field."""
        ci = _issue(world, "use")
        token = verify(verifier, ci.value)
        assert token is not None
        assert token.token == auth_hint(world, ci.token_id)
        assert ci.value not in repr(token)
        assert ci.value not in token.model_dump_json()

    def test_required_combined_flags(self, auth, world):
        """required=VIEW|EDIT needs both flags in the troop's grant."""
        verifier = TroopTokenVerifier(auth, world.tid, required=V | E)
        both = _issue(world, "view,edit", "key:a")
        one = _issue(world, "view,use,manage")
        assert verify(verifier, both.value) is not None
        assert verify(verifier, one.value) is None

    def test_attached_to_two_troops_uses_this_troops_grant(self, auth, world):
        """A token on two troops maps the grant of the server's troop only."""
        ci = _issue(world, "use", "key:a")
        world.auth.attach(world.owner, ci.token_id, world.troops[1].id, grant("edit"))
        first = verify(TroopTokenVerifier(auth, world.tid), ci.value)
        second = verify(
            TroopTokenVerifier(auth, world.troops[1].id, required=E), ci.value
        )
        assert first is not None
        assert second is not None
        assert first.scopes == ["troopauth:use", "key:a"]
        assert second.scopes == ["troopauth:edit", "*"]
        assert verify(TroopTokenVerifier(auth, world.troops[1].id), ci.value) is None

    def test_unknown_troop(self, auth, world):
        """A verifier for a troop that does not exist accepts nothing."""
        verifier = TroopTokenVerifier(auth, "troop_nope")
        assert verify(verifier, world.pat.value) is None


def auth_hint(world: Setup, token_id: str) -> str:
    """The hint troopauth lists for a token of the first troop."""
    (info,) = [t for t in world.auth.tokens(world.tid) if t.token_id == token_id]
    return info.hint


class TestVerifierRefuses:
    """verify_token returns None, never raises, for anything but a usable token."""

    @given(value=st.one_of(st.text(max_size=60), st.binary(max_size=60), st.none()))
    def test_junk_never_raises(self, value):
        """Any string, bytes or None: None, no exception."""
        with MemoryStore() as store:
            auth = TroopAuth(store)
            setup = make_account(auth)
            assert verify(TroopTokenVerifier(auth, setup.tid), value) is None

    def test_store_failure_propagates(self, world):
        """A failing store is not a bad token: StoreError reaches the SDK (500)."""
        verifier = TroopTokenVerifier(world.auth, world.tid)
        world.auth.store.close()
        with pytest.raises(StoreError):
            verify(verifier, world.pat.value)

    def test_never_logs_the_value(self, verifier, world, caplog):
        """Accepted or refused, no log line holds the value."""
        caplog.set_level(logging.DEBUG, logger="troopauth")
        ci = _issue(world, "view", troop=0)
        other = _issue(world, "use", troop=1)
        assert verify(verifier, ci.value) is None
        assert verify(verifier, other.value) is None
        assert verify(verifier, ci.value[:-1] + "x") is None
        assert verify(verifier, world.pat.value) is not None
        assert caplog.records  # the refusals were logged, by token id
        for value in (ci.value, other.value, world.pat.value, ci.value[8:30]):
            assert value not in caplog.text


class _RecordingStore:
    """A MemoryStore whose lookups record the thread they ran on."""

    def __init__(self, cheap_lookup: bool) -> None:
        self._inner = MemoryStore()
        self.cheap_lookup = cheap_lookup
        self.threads: list[int] = []

    def lookup(self, digest: bytes) -> Any:
        self.threads.append(threading.get_ident())
        return self._inner.lookup(digest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TestOffload:
    """Stores without a cheap lookup are read off the event loop."""

    @pytest.mark.parametrize(
        ("cheap", "offload", "in_worker"),
        [
            (True, None, False),
            (False, None, True),
            (True, True, True),
            (False, False, False),
        ],
    )
    def test_thread_of_the_lookup(self, cheap, offload, in_worker):
        """cheap_lookup decides, unless offload= says otherwise."""
        store = _RecordingStore(cheap_lookup=cheap)
        auth = TroopAuth(store)  # a duck-typed store
        setup = make_account(auth)
        verifier = TroopTokenVerifier(auth, setup.tid, offload=offload)
        store.threads.clear()
        assert verify(verifier, setup.pat.value) is not None
        assert store.threads
        on_loop = threading.get_ident()
        assert all((t != on_loop) is in_worker for t in store.threads)
        store.close()

    def test_sqlite_store_is_offloaded(self, tmp_path, monkeypatch):
        """SQLiteStore's lookup is not cheap: by default it runs in a worker."""
        with SQLiteStore(tmp_path / "t.db") as store:
            auth = TroopAuth(store)
            setup = make_account(auth)
            verifier = TroopTokenVerifier(auth, setup.tid)
            threads: list[int] = []
            lookup = store.lookup

            def recording(digest: bytes) -> Any:
                threads.append(threading.get_ident())
                return lookup(digest)

            monkeypatch.setattr(store, "lookup", recording)
            assert verify(verifier, setup.pat.value) is not None
            assert threads
            assert threading.get_ident() not in threads


class TestVerifierConstruction:
    """A misconfigured verifier fails when built, with InvalidArgument."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"troop_id": ""},
            {"troop_id": 7},
            {"required": Permission(0)},
            {"required": "use"},
            {"resource": 3},
            {"offload": "yes"},
        ],
    )
    def test_bad_arguments(self, auth, world, kwargs):
        """Empty or mistyped arguments are refused."""
        arguments: dict[str, Any] = {"troop_id": world.tid, **kwargs}
        troop_id = arguments.pop("troop_id")
        with pytest.raises(InvalidArgument):
            TroopTokenVerifier(auth, troop_id, **arguments)

    def test_not_a_troopauth(self):
        """auth must be a TroopAuth."""
        with pytest.raises(InvalidArgument):
            TroopTokenVerifier(object(), "troop_x")  # type: ignore[arg-type]

    def test_repr_and_properties(self, verifier, world):
        """The repr names the troop and the requirement; nothing secret."""
        assert verifier.troop_id == world.tid
        assert verifier.required is Permission.USE
        assert repr(verifier) == (
            f"TroopTokenVerifier(troop_id={world.tid!r}, required=<Permission.USE: 2>)"
        )


class TestGrantScopes:
    """grant_scopes(): the documented mapping from a grant to OAuth scopes."""

    def test_examples(self):
        """Permissions first, in declaration order, then scope patterns."""
        assert grant_scopes(Grant.parse("use", "key:deploy")) == [
            "troopauth:use",
            "key:deploy",
        ]
        assert grant_scopes(Grant.parse("manage,view", "key:b,key:a/*")) == [
            "troopauth:view",
            "troopauth:manage",
            "key:a/*",
            "key:b",
        ]
        assert grant_scopes(Grant.full())[-1] == "*"

    @given(grants)
    def test_round_trip(self, given_grant):
        """The scopes name exactly the grant: its permissions, then its patterns."""
        scopes = grant_scopes(given_grant)
        names = [s.removeprefix("troopauth:") for s in scopes if s[:10] == "troopauth:"]
        patterns = [s for s in scopes if s[:10] != "troopauth:"]
        assert Grant.parse(",".join(names), ",".join(patterns)) == given_grant

    def test_not_a_grant(self):
        """Anything but a Grant: InvalidArgument."""
        with pytest.raises(InvalidArgument):
            grant_scopes("use")  # type: ignore[arg-type]


def _access(scopes: list[str]) -> AccessToken:
    """An access token some other verifier made, holding *scopes*."""
    return AccessToken(token="hint", client_id="tok_x", scopes=scopes)  # noqa: S106 (a hint)


def _verified(given: Grant) -> AccessToken:
    """The access token TroopTokenVerifier makes for a token holding *given*."""
    auth = TroopAuth(MemoryStore())
    setup = make_account(auth)
    issued = auth.issue_token(setup.owner, setup.tid, given)
    token = TroopTokenVerifier(auth, setup.tid, required=given.permission).check(
        issued.value
    )
    assert token is not None
    return token


class TestRequireKey:
    """require_key(): a key check against an access token's scopes."""

    def test_allowed(self):
        """Every flag asked for, on a key the scope covers: returns the token."""
        token = _verified(Grant.parse("view,use", "key:prod/*"))
        assert require_key("prod/db", V | U, access_token=token) is token

    @pytest.mark.parametrize(
        ("key", "permission"),
        [("other", U), ("prod/db", E), ("prod/db", U | E), (None, U), ("prod", U)],
    )
    def test_denied(self, key, permission):
        """Another key, a missing flag, or a troop-level target: AccessDenied."""
        token = _verified(Grant.parse("view,use", "key:prod/*"))
        with pytest.raises(AccessDenied):
            require_key(key, permission, access_token=token)

    def test_troop_level_needs_whole_troop(self):
        """key=None is allowed by the whole-troop scope only."""
        token = _verified(Grant.parse("manage"))
        assert require_key(None, M, access_token=token) is token

    def test_empty_permission_denied(self):
        """An empty permission set is always denied."""
        token = _verified(Grant.full())
        with pytest.raises(AccessDenied):
            require_key("a", Permission(0), access_token=token)

    @pytest.mark.parametrize(
        "given", [Grant.full(), Grant.parse("use", "key:a")], ids=["full", "key"]
    )
    def test_foreign_token_with_the_same_scopes_denied(self, given):
        """Only tokens TroopTokenVerifier made pass, not a look-alike's scopes."""
        real = _verified(given)
        foreign = AccessToken(
            token=real.token,
            client_id=real.client_id,
            scopes=list(real.scopes),
            claims=real.claims,
        )
        assert require_key("a", U, access_token=real) is real
        with pytest.raises(AccessDenied, match="no troop access token"):
            require_key("a", U, access_token=foreign)

    def test_scopes_edited_after_verification_do_not_widen(self):
        """The verifier's grant is what counts, not scopes appended later."""
        token = _verified(Grant.parse("use", "key:a"))
        token.scopes.append("*")
        with pytest.raises(AccessDenied):
            require_key("b", U, access_token=token)

    @pytest.mark.parametrize(
        "scopes",
        [[], ["read", "write"], ["troopauth:use"], ["*"], ["troopauth:use", "key:"]],
    )
    def test_not_a_troop_grant(self, scopes):
        """Scopes that name no troopauth grant: AccessDenied."""
        with pytest.raises(AccessDenied):
            require_key("a", U, access_token=_access(scopes))

    def test_outside_a_request(self):
        """No access token on this request (stdio, no auth): AccessDenied."""
        with pytest.raises(AccessDenied):
            require_key("a", U)

    @pytest.mark.parametrize(("key", "permission"), [(3, U), ("a", "use"), ("a", None)])
    def test_bad_arguments(self, key, permission):
        """A key that is not a string, a permission that is not one: InvalidArgument."""
        with pytest.raises(InvalidArgument):
            require_key(key, permission, access_token=_access(["troopauth:use", "*"]))
