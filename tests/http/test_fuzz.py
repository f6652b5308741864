"""Hypothesis at the trust boundary: any JSON body, on every endpoint that takes
one, is a success or a 4xx problem, never a 500; a 4xx changes nothing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from troopauth import Grant
from troopauth.http import create_app

from ..helpers import make_account, snapshot
from .conftest import World, bearer, checked_client

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_WORDS = st.sampled_from(["view", "use", "edit", "manage", "VIEW", "fly", "", " "])
_SCOPES = st.sampled_from(
    ["*", "key:a", "key:prod/*", "key:a,key:b", "nope", "", "key:", "key:a b"]
) | st.text(max_size=12)
_GRANTS = st.fixed_dictionaries(
    {},
    optional={
        "permissions": st.lists(_WORDS, max_size=3) | _JSON,
        "scope": _SCOPES | _JSON,
        "extra": _JSON,
    },
)
_VALID_GRANTS = st.fixed_dictionaries(
    {
        "permissions": st.lists(
            st.sampled_from(["view", "use", "edit", "manage"]), min_size=1, max_size=4
        ),
        "scope": st.sampled_from(["*", "key:a", "key:prod/*", "key:a,key:b"]),
    }
)
_BODIES = st.one_of(
    _JSON,
    st.just({}),
    st.fixed_dictionaries({"grant": _VALID_GRANTS}, optional={"name": st.text()}),
    st.fixed_dictionaries(
        {},
        optional={
            "grant": _GRANTS | _JSON,
            "name": st.text(max_size=300) | _JSON,
            "expires_at": st.sampled_from(
                [
                    "2999-01-01T00:00:00+00:00",
                    "2999-01-01T00:00:00",
                    "2000-01-01T00:00:00Z",
                    "9999-12-31T23:59:59+00:00",
                    "0001-01-01T00:00:00-01:00",
                    "",
                ]
            )
            | _JSON,
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "overlap_seconds": st.integers(-10, 700_000) | _JSON,
            "capacity": st.integers(-2, 12) | _JSON,
            "max_token_lifetime_seconds": st.integers(-2, 10**10) | _JSON,
            "require_expiry": st.booleans() | _JSON,
        },
    ),
)

_TARGETS = st.sampled_from(
    [
        "issue",
        "attach",
        "attach-foreign",
        "member",
        "detach",
        "rotate",
        "revoke",
        "seats",
        "seats-foreign",
        "policy",
        "policy-foreign",
    ]
)


def _request(
    target: str, troops: list[str], foreign: str, token: str, accounts: list[str]
):
    """The method and URL of *target* for an account's troops and token."""
    return {
        "seats": ("PUT", f"/accounts/{accounts[0]}/seats"),
        "seats-foreign": ("PUT", f"/accounts/{accounts[1]}/seats"),
        "policy": ("PATCH", f"/accounts/{accounts[0]}/policy"),
        "policy-foreign": ("PATCH", f"/accounts/{accounts[1]}/policy"),
        "issue": ("POST", f"/troops/{troops[0]}/tokens"),
        "attach": ("PUT", f"/troops/{troops[1]}/tokens/{token}"),
        "attach-foreign": ("PUT", f"/troops/{foreign}/tokens/{token}"),
        "member": ("PUT", f"/troops/{troops[0]}/members/alice"),
        "detach": ("DELETE", f"/troops/{troops[0]}/tokens/{token}"),
        "rotate": ("POST", f"/tokens/{token}/rotate"),
        "revoke": ("POST", f"/tokens/{token}/revoke"),
    }[target]


def writable_client(world: World) -> Any:
    """A checked client of an app over the world's facade whose seat pool the
    PAT may resize (made once per world)."""
    if not hasattr(world, "writable"):
        client = checked_client(create_app(world.auth, seats_writable=True))
        world.writable = client  # type: ignore[attr-defined]
    return world.writable  # type: ignore[attr-defined]


#: Who sends the request: the PAT, a manager of the first troop only, or a
#: manager limited to some keys (who may manage nothing).
_ACTORS = st.sampled_from(["pat", "manager", "scoped"])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=_TARGETS, body=_BODIES, actor=_ACTORS)
def test_any_json_body(world: World, target: str, body: Any, actor: str):
    """Any JSON on any endpoint, from any actor: 2xx, or a 4xx problem that
    changed nothing."""
    auth = world.auth
    setup = make_account(auth, seats=4, troops=2)
    foreign = make_account(auth, seats=1)
    token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
    callers = {
        "pat": setup.pat,
        "manager": auth.issue_token(
            setup.owner, setup.tid, Grant.parse("view,use,manage")
        ),
        "scoped": auth.issue_token(
            setup.owner, setup.tid, Grant.parse("manage", "key:a")
        ),
    }
    accounts = [setup.account.id, foreign.account.id]
    method, url = _request(
        target, setup.troop_ids(), foreign.tid, token.token_id, accounts
    )
    values = [token.value, *(c.value for c in callers.values())]
    before = snapshot(auth, [setup, foreign], values, members=["alice"])
    response = writable_client(world).request(
        method,
        url,
        content=json.dumps(body),
        headers={**bearer(callers[actor]), "Content-Type": "application/json"},
    )
    event(f"{actor} {target}: {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert snapshot(auth, [setup, foreign], values, members=["alice"]) == before
    for value in values:
        assert value[8:] not in response.text


_ANY_PATH = st.sampled_from(
    [
        ("POST", "/troops/{troop}/tokens"),
        ("PUT", "/troops/{troop}/tokens/{token}"),
        ("DELETE", "/troops/{troop}/tokens/{token}"),
        ("POST", "/tokens/{token}/rotate"),
        ("POST", "/tokens/{token}/revoke"),
        ("PUT", "/troops/{troop}/members/{token}"),
        ("PUT", "/accounts/{account}/seats"),
        ("PATCH", "/accounts/{account}/policy"),
        ("POST", "/introspect"),
    ]
)
_CTYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
    ]
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=_ANY_PATH,
    content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    ctype=_CTYPES,
)
def test_any_bytes(world: World, target: tuple[str, str], content: bytes, ctype: str):
    """Any bytes under any media type, on every endpoint with a body: never a 500;
    a 4xx changes nothing."""
    auth = world.auth
    setup = make_account(auth, seats=2)
    token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
    method, template = target
    url = template.format(
        troop=setup.tid, token=token.token_id, account=setup.account.id
    )
    values = [token.value]
    before = snapshot(auth, [setup], values, members=[token.token_id])
    headers = {**bearer(setup.pat)}
    if ctype:
        headers["Content-Type"] = ctype
    response = writable_client(world).request(
        method, url, content=content, headers=headers
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert snapshot(auth, [setup], values, members=[token.token_id]) == before
    assert token.value[8:] not in response.text


_IDS = st.text(min_size=1, max_size=60) | st.sampled_from(
    ["tok_x", "troop_x", "..", ".", "%2F", "a/b", "\x00", "cpt_pat", " "]
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(troop=_IDS, token=_IDS, method=st.sampled_from(["GET", "PUT", "DELETE"]))
def test_any_ids_in_paths(world: World, troop: str, token: str, method: str):
    """Any text as a troop, token or member id in a path: never a 500, and a
    refusal changes nothing."""
    from urllib.parse import quote

    before = snapshot(world.auth, [world.setup], members=[token])
    body = {"grant": {"permissions": ["view"], "scope": "*"}}
    t, k = quote(troop, safe=""), quote(token, safe="")
    for url in (
        f"/troops/{t}/tokens/{k}",
        f"/troops/{t}/members/{k}",
        f"/troops/{t}/tokens",
        f"/troops/{t}/audit",
        f"/troops/{t}/members",
        f"/accounts/{t}/seats",
        f"/accounts/{t}/troops",
        f"/accounts/{t}/expiring",
        f"/tokens/{k}",
        f"/tokens/{k}/revoke",
    ):
        response = world.client.request(
            method if "revoke" not in url else "POST",
            url,
            json=body if method == "PUT" else None,
            headers=world.pat,
        )
        assert response.status_code < 500, (url, response.text)
        assert response.status_code >= 400 or method == "GET", url
    assert snapshot(world.auth, [world.setup], members=[token]) == before


_QUERY_TEXT = st.text(max_size=12) | st.sampled_from(
    ["1", "3", "1000", "1001", "0", "7d", "3600", "2w", "tok_x", "", "%00"]
)
_QUERIES = st.lists(
    st.tuples(st.sampled_from(["limit", "after", "within", "page"]), _QUERY_TEXT),
    max_size=3,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.sampled_from(["tokens", "expiring"]),
    query=_QUERIES,
    token_after=st.booleans(),
)
def test_any_query(
    world: World, where: str, query: list[tuple[str, str]], token_after: bool
):
    """Any query string on the listings that take one: 200 (a JSON listing)
    or a 4xx problem, never a 500."""
    if token_after:
        token = world.auth.issue_token(world.owner, world.tid, Grant.parse("view"))
        query = [*query, ("after", token.token_id)]
        world.auth.revoke(world.owner, token.token_id)
    url = (
        f"/troops/{world.tid}/tokens"
        if where == "tokens"
        else f"/accounts/{world.setup.account.id}/expiring"
    )
    response = world.client.get(url, params=query, headers=world.pat)
    event(f"{where}: {response.status_code}")
    assert response.status_code in {200, 400, 422}, response.text
    if response.status_code == 200:
        assert "tokens" in response.json()
