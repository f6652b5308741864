"""The JSON API: one endpoint per facade call, the actor from the request.

The actor is the `Principal` of the request's ``Authorization: Bearer`` value
(a personal access token or a troop token), or, without that header, whatever
the host's ``actor_hook`` returns for the request (its own logged-in member).
The facade judges every management call. The reads and account-level calls
the facade leaves to the host (it takes no actor for them) are judged here, no
actor seeing more than its grants already show it: a troop's tokens, members
and audit log need ``MANAGE`` on the whole troop; one token, the PAT or
``MANAGE`` on the whole of every troop it is attached to; the account's troops
list all of them for the PAT and only the managed ones for anyone else; the
seat pool any actor of the account; expiring tokens, the token policy and the
account log the PAT; resizing the seat pool the PAT on an app that allows it.

Every answer is ``Cache-Control: no-store``; every error is a problem body
(:mod:`troopauth.http.problems`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias, TypeVar
from urllib.parse import parse_qs

import attrs
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._web import MALFORMED, challenge, parse_authorization
from ..auth import TroopAuth
from ..errors import AccessDenied, InvalidToken, NotFound, TroopAuthError
from ..models import Kind, Principal, TokenInfo
from ..permission import Permission
from . import bodies
from .problems import HTTPProblem, from_error

__all__ = ["ActorHook", "Api", "api_routes"]

#: The host's hook: the request's logged-in member as a `Principal` (made with
#: ``auth.member(account_id, member_id)``), or ``None``; sync or async.
ActorHook: TypeAlias = Callable[
    [Request], Principal | Awaitable[Principal | None] | None
]

_T = TypeVar("_T")

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE: Final = frozenset({"same-origin", "none"})
_NO_FIELDS: Final = frozenset[str]()
_GRANT_BODY: Final = frozenset({"grant"})
_ROTATE_BODY: Final = frozenset({"overlap_seconds"})
_SEATS_BODY: Final = frozenset({"capacity"})
_PAGE_QUERY: Final = frozenset({"limit", "after"})
_EXPIRING_QUERY: Final = frozenset({"within"})
#: The largest page of a troop's tokens one request may ask for.
MAX_PAGE: Final = 1000


def _json(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def _no_content() -> Response:
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


def _cross_site(request: Request) -> bool:
    """Whether a browser sent this request from another origin.

    A hook's actor usually rides on the host's session cookie, which a browser
    attaches to requests that other sites make, so changes made for a hook's
    actor are refused when the browser says the request is cross-site
    (``Sec-Fetch-Site``), or, from a browser that does not send that header,
    when its ``Origin`` is not this one. Bearer tokens are not ambient: they
    need no such check.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in _SAME_SITE
    origin = request.headers.get("origin")
    return (
        origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}"
    )


@attrs.frozen
class _Actor:
    principal: Principal
    #: The actor came from a bearer value (401/403 then carry RFC 6750 challenges).
    bearer: bool


class Api:
    """The endpoints, closed over one facade and the app's settings."""

    def __init__(
        self,
        auth: TroopAuth,
        *,
        actor_hook: ActorHook | None,
        realm: str | None,
        max_body: int,
        seats_writable: bool = False,
    ) -> None:
        self.auth = auth
        self.actor_hook = actor_hook
        self.max_body = max_body
        self.seats_writable = seats_writable
        # The same RFC 6750 challenges as the middleware's.
        self._missing = challenge(realm, None)
        self._invalid = challenge(realm, "invalid_token")
        self._denied = challenge(realm, "insufficient_scope")

    # -- who is asking ---------------------------------------------------------

    def bearer(self, request: Request) -> str | None:
        """The request's bearer value, or ``None``; 401 for a malformed header."""
        headers = request.headers.getlist("authorization")
        if len(headers) > 1:
            raise self.invalid_token()
        value = parse_authorization(headers[0]) if headers else None
        if value is MALFORMED:
            raise self.invalid_token()
        return value if isinstance(value, str) else None

    def invalid_token(self) -> HTTPProblem:
        """401 with ``error="invalid_token"``."""
        return HTTPProblem(
            "invalid-token",
            "invalid token",
            headers={"WWW-Authenticate": self._invalid},
        )

    def missing_token(self) -> HTTPProblem:
        """401 for a request that brought no credentials."""
        return HTTPProblem(
            "missing-token",
            "this needs Authorization: Bearer <token>",
            headers={"WWW-Authenticate": self._missing},
        )

    def denied(self, detail: str, bearer: bool) -> HTTPProblem:
        """403; with ``error="insufficient_scope"`` for a bearer actor."""
        headers = {"WWW-Authenticate": self._denied} if bearer else None
        return HTTPProblem("forbidden", detail, headers=headers)

    async def actor(self, request: Request) -> _Actor:
        """The request's actor: its bearer token's principal, or the hook's."""
        value = self.bearer(request)
        if value is not None:
            try:
                principal = await run_in_threadpool(self.auth.authenticate, value)
            except InvalidToken:
                raise self.invalid_token() from None
            return _Actor(principal, bearer=True)
        if self.actor_hook is None:
            raise self.missing_token()
        found = self.actor_hook(request)
        if inspect.isawaitable(found):
            found = await found
        if found is None:
            raise self.missing_token()
        if not isinstance(found, Principal):
            raise TypeError("actor_hook must return a Principal or None")
        if request.method not in _SAFE_METHODS and _cross_site(request):
            raise self.denied(
                "a cross-site request cannot act for a member", bearer=False
            )
        return _Actor(found, bearer=False)

    async def call(
        self, actor: _Actor, function: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> _T:
        """Run a facade call in a worker thread; its errors as problems."""
        try:
            return await run_in_threadpool(function, *args, **kwargs)
        except AccessDenied as exc:
            raise self.denied(str(exc), actor.bearer) from None
        except TroopAuthError as exc:
            raise from_error(exc) from None

    async def require_manager(self, actor: _Actor, troop_id: str) -> None:
        """``MANAGE`` on the whole troop; 404 for a troop of no account or
        another account (its existence is not told)."""
        try:
            await run_in_threadpool(
                self.auth.authorize, actor.principal, troop_id, Permission.MANAGE
            )
        except AccessDenied:
            owner = await run_in_threadpool(self.auth.store.troop_account, troop_id)
            if owner != actor.principal.account_id:
                raise HTTPProblem("not-found", f"no troop {troop_id!r}") from None
            raise self.denied(
                f"this needs MANAGE on the whole troop {troop_id!r}", actor.bearer
            ) from None
        except TroopAuthError as exc:
            raise from_error(exc) from None

    @staticmethod
    def same_account(actor: _Actor, account_id: str) -> None:
        """404 unless the actor belongs to *account_id*."""
        if actor.principal.account_id != account_id:
            raise HTTPProblem("not-found", f"no account {account_id!r}")

    async def body(self, request: Request, allowed: frozenset[str]) -> dict[str, Any]:
        """The request's JSON object (capped, strict)."""
        raw = await bodies.read_body(request, self.max_body)
        return bodies.json_object(raw, request.headers.get("content-type"), allowed)

    # -- endpoints -------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        """``GET /me``: who the credentials stand for."""
        actor = await self.actor(request)
        return _json(bodies.principal_json(actor.principal))

    @staticmethod
    def query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
        """The query string's fields: each at most once, none unknown (422)."""
        fields: dict[str, str] = {}
        for key, value in request.query_params.multi_items():
            if key not in allowed:
                expected = ", ".join(sorted(allowed)) or "none"
                raise HTTPProblem(
                    "invalid-input",
                    f"unknown query field {key[:40]!r}; expected some of: {expected}",
                )
            if key in fields:
                raise HTTPProblem("invalid-input", f"{key} is given twice")
            fields[key] = value
        return fields

    async def list_tokens(self, request: Request) -> Response:
        """``GET /troops/{troop_id}/tokens[?limit=N&after=TOKEN_ID]``: a page of
        the troop's tokens, oldest first; ``next`` is the ``after`` of the next
        page, ``null`` on the last one."""
        troop_id = request.path_params["troop_id"]
        actor = await self.actor(request)
        await self.require_manager(actor, troop_id)
        query = self.query(request, _PAGE_QUERY)
        limit = bodies.parse_limit(query.get("limit"), MAX_PAGE)
        after = query.get("after")
        if after is not None and not after:
            raise HTTPProblem("invalid-input", "after must be a token id")
        try:
            tokens = await run_in_threadpool(
                self.auth.tokens,
                troop_id,
                limit=None if limit is None else limit + 1,
                after=after,
            )
        except NotFound:
            # The troop was found above: what is missing is the cursor.
            raise HTTPProblem(
                "invalid-input", "after names no token of this account"
            ) from None
        except TroopAuthError as exc:
            raise from_error(exc) from None
        following = None
        if limit is not None and len(tokens) > limit:
            tokens = tokens[:limit]
            following = tokens[-1].token_id
        return _json(
            {"tokens": [bodies.token_json(t) for t in tokens], "next": following}
        )

    async def troops(self, request: Request) -> Response:
        """``GET /accounts/{account_id}/troops``: the PAT sees every troop;
        another actor only those it has ``MANAGE`` on the whole of."""
        account_id = request.path_params["account_id"]
        actor = await self.actor(request)
        self.same_account(actor, account_id)
        troops = await self.call(actor, self.auth.troops, account_id)
        if actor.principal.kind is not Kind.PERSONAL:
            troops = [t for t in troops if await self.manages(actor, t.id)]
        return _json({"troops": [bodies.troop_json(t) for t in troops]})

    async def manages(self, actor: _Actor, troop_id: str) -> bool:
        """Whether the actor has ``MANAGE`` on the whole troop."""
        try:
            await run_in_threadpool(
                self.auth.authorize, actor.principal, troop_id, Permission.MANAGE
            )
        except (AccessDenied, NotFound):
            return False
        except TroopAuthError as exc:
            raise from_error(exc) from None
        return True

    async def list_members(self, request: Request) -> Response:
        """``GET /troops/{troop_id}/members`` (``MANAGE`` on the whole troop)."""
        troop_id = request.path_params["troop_id"]
        actor = await self.actor(request)
        await self.require_manager(actor, troop_id)
        members = await self.call(actor, self.auth.members, troop_id)
        return _json(
            {
                "members": [
                    {"member_id": m.member_id, "grant": bodies.grant_json(m.grant)}
                    for m in members
                ]
            }
        )

    async def readable_token(self, actor: _Actor, token_id: str) -> TokenInfo:
        """The token, for the PAT or an actor with ``MANAGE`` on the whole of
        every troop it is attached to; 404 for none in the actor's account."""
        try:
            info = await run_in_threadpool(self.auth.token, token_id)
        except NotFound:
            raise HTTPProblem("not-found", f"no token {token_id!r}") from None
        except TroopAuthError as exc:
            raise from_error(exc) from None
        if info.account_id != actor.principal.account_id:
            raise HTTPProblem("not-found", f"no token {token_id!r}")
        if actor.principal.kind is Kind.PERSONAL:
            return info
        if info.kind is Kind.TROOP and info.grants:
            for troop_id in info.grants:
                if not await self.manages(actor, troop_id):
                    break
            else:
                return info
        raise self.denied(
            f"reading token {token_id!r} needs MANAGE on the whole of every "
            "troop it is attached to, or the personal access token",
            actor.bearer,
        )

    async def get_token(self, request: Request) -> Response:
        """``GET /tokens/{token_id}``: one token in any state; never its value."""
        token_id = request.path_params["token_id"]
        actor = await self.actor(request)
        info = await self.readable_token(actor, token_id)
        return _json(bodies.token_json(info))

    async def issue(self, request: Request) -> Response:
        """``POST /troops/{troop_id}/tokens``: 201, the value once."""
        troop_id = request.path_params["troop_id"]
        actor = await self.actor(request)
        grant, name, expires_at = bodies.parse_issue(
            await self.body(request, bodies.ISSUE_FIELDS)
        )
        issued = await self.call(
            actor,
            self.auth.issue_token,
            actor.principal,
            troop_id,
            grant,
            name=name,
            expires_at=expires_at,
        )
        return _json(
            {"token_id": issued.token_id, "value": issued.value, "hint": issued.hint},
            status=201,
        )

    async def attach(self, request: Request) -> Response:
        """``PUT /troops/{troop_id}/tokens/{token_id}``: attach, or replace a grant."""
        troop_id = request.path_params["troop_id"]
        token_id = request.path_params["token_id"]
        actor = await self.actor(request)
        body = await self.body(request, _GRANT_BODY)
        if "grant" not in body:
            raise HTTPProblem("invalid-input", "grant is required")
        grant = bodies.parse_grant(body["grant"])
        info = await self.call(
            actor, self.auth.attach, actor.principal, token_id, troop_id, grant
        )
        return _json(bodies.token_json(info))

    async def detach(self, request: Request) -> Response:
        """``DELETE /troops/{troop_id}/tokens/{token_id}``: 204."""
        troop_id = request.path_params["troop_id"]
        token_id = request.path_params["token_id"]
        actor = await self.actor(request)
        await self.body(request, _NO_FIELDS)
        try:
            await run_in_threadpool(
                self.auth.detach, actor.principal, token_id, troop_id
            )
        except NotFound as exc:
            # Detached already (or revoked): the same answer, as long as the
            # troop is the actor's to manage and the token exists. An expired
            # token still attached here stays a 404: it was not detached.
            await self.require_manager(actor, troop_id)
            info = await self.existing_token(actor, token_id)
            if troop_id in info.grants:
                raise from_error(exc) from None
        except AccessDenied as exc:
            raise self.denied(str(exc), actor.bearer) from None
        except TroopAuthError as exc:
            raise from_error(exc) from None
        return _no_content()

    async def existing_token(self, actor: _Actor, token_id: str) -> TokenInfo:
        """The token *token_id* of the actor's account, in any state; else 404."""
        try:
            info = await run_in_threadpool(self.auth.token, token_id)
        except TroopAuthError:
            raise HTTPProblem("not-found", f"no token {token_id!r}") from None
        if info.account_id != actor.principal.account_id:
            raise HTTPProblem("not-found", f"no token {token_id!r}")
        return info

    async def rotate(self, request: Request) -> Response:
        """``POST /tokens/{token_id}/rotate``: the new value once."""
        token_id = request.path_params["token_id"]
        actor = await self.actor(request)
        overlap = bodies.parse_overlap(await self.body(request, _ROTATE_BODY))
        issued = await self.call(
            actor, self.auth.rotate, actor.principal, token_id, overlap=overlap
        )
        return _json(
            {"token_id": issued.token_id, "value": issued.value, "hint": issued.hint}
        )

    async def revoke(self, request: Request) -> Response:
        """``POST /tokens/{token_id}/revoke``: 204 (again: 204, nothing changes)."""
        token_id = request.path_params["token_id"]
        actor = await self.actor(request)
        await self.body(request, _NO_FIELDS)
        await self.call(actor, self.auth.revoke, actor.principal, token_id)
        return _no_content()

    async def put_member(self, request: Request) -> Response:
        """``PUT /troops/{troop_id}/members/{member_id}``: 204."""
        troop_id = request.path_params["troop_id"]
        member_id = request.path_params["member_id"]
        actor = await self.actor(request)
        body = await self.body(request, _GRANT_BODY)
        if "grant" not in body:
            raise HTTPProblem("invalid-input", "grant is required")
        grant = bodies.parse_grant(body["grant"])
        await self.call(
            actor, self.auth.add_member, actor.principal, troop_id, member_id, grant
        )
        return _no_content()

    async def delete_member(self, request: Request) -> Response:
        """``DELETE /troops/{troop_id}/members/{member_id}``: 204."""
        troop_id = request.path_params["troop_id"]
        member_id = request.path_params["member_id"]
        actor = await self.actor(request)
        await self.body(request, _NO_FIELDS)
        await self.call(
            actor, self.auth.remove_member, actor.principal, troop_id, member_id
        )
        return _no_content()

    async def seats(self, request: Request) -> Response:
        """``GET /accounts/{account_id}/seats``."""
        account_id = request.path_params["account_id"]
        actor = await self.actor(request)
        self.same_account(actor, account_id)
        pool = await self.call(actor, self.auth.seats, account_id)
        return _json(bodies.seats_json(pool))

    async def set_seats(self, request: Request) -> Response:
        """``PUT /accounts/{account_id}/seats``: resize the pool (the PAT, and
        only when the host allows it: seats are usually what it bills)."""
        actor, account_id = await self._account_owner(request, "resizing the pool")
        if not self.seats_writable:
            raise self.denied(
                "this server does not let the seat pool be resized over HTTP",
                actor.bearer,
            )
        capacity = bodies.parse_capacity(await self.body(request, _SEATS_BODY))
        pool = await self.call(actor, self.auth.set_seats, account_id, capacity)
        return _json(bodies.seats_json(pool))

    async def set_policy(self, request: Request) -> Response:
        """``PATCH /accounts/{account_id}/policy`` (PAT only): change the
        account's token policy; a field left out keeps its value. The answer
        is the policy now (an empty body changes nothing and reads it)."""
        actor, account_id = await self._account_owner(
            request, "the account's token policy"
        )
        keywords = bodies.parse_policy(await self.body(request, bodies.POLICY_FIELDS))
        account = await self.call(actor, self.auth.set_policy, account_id, **keywords)
        return _json(bodies.policy_json(account))

    async def expiring(self, request: Request) -> Response:
        """``GET /accounts/{account_id}/expiring?within=7d`` (PAT only): the
        live tokens that expire within that, soonest first."""
        actor, account_id = await self._account_owner(
            request, "the account's expiring tokens"
        )
        query = self.query(request, _EXPIRING_QUERY)
        within = bodies.parse_within(query.get("within", "7d"))
        tokens = await self.call(actor, self.auth.expiring, account_id, within)
        return _json(
            {
                "within_seconds": int(within.total_seconds()),
                "tokens": [bodies.token_json(t) for t in tokens],
            }
        )

    async def troop_audit(self, request: Request) -> Response:
        """``GET /troops/{troop_id}/audit``: the troop's events, oldest first."""
        troop_id = request.path_params["troop_id"]
        actor = await self.actor(request)
        await self.require_manager(actor, troop_id)
        events = await self.call(actor, self.auth.audit_log, troop_id)
        return _json({"events": [bodies.event_json(e) for e in events]})

    async def troop_audit_check(self, request: Request) -> Response:
        """``GET /troops/{troop_id}/audit/check``."""
        troop_id = request.path_params["troop_id"]
        actor = await self.actor(request)
        await self.require_manager(actor, troop_id)
        broken = await self.call(actor, self.auth.check_audit_log, troop_id)
        return _json({"intact": broken is None, "first_broken": broken})

    async def _account_owner(
        self, request: Request, what: str = "the account's own log"
    ) -> tuple[_Actor, str]:
        account_id = request.path_params["account_id"]
        actor = await self.actor(request)
        self.same_account(actor, account_id)
        if actor.principal.kind is not Kind.PERSONAL:
            raise self.denied(f"{what} needs the personal access token", actor.bearer)
        return actor, account_id

    async def account_audit(self, request: Request) -> Response:
        """``GET /accounts/{account_id}/audit``: personal token events (PAT only)."""
        actor, account_id = await self._account_owner(request)
        events = await self.call(actor, self.auth.account_audit_log, account_id)
        return _json({"events": [bodies.event_json(e) for e in events]})

    async def account_audit_check(self, request: Request) -> Response:
        """``GET /accounts/{account_id}/audit/check`` (PAT only)."""
        actor, account_id = await self._account_owner(request)
        broken = await self.call(actor, self.auth.check_account_audit_log, account_id)
        return _json({"intact": broken is None, "first_broken": broken})

    # -- RFC 7662 ----------------------------------------------------------------

    async def introspect(self, request: Request) -> Response:
        """``POST /introspect``: RFC 7662 token introspection."""
        value = self.bearer(request)
        if value is None:
            raise self.missing_token()
        try:
            caller = await run_in_threadpool(self.auth.introspect, value)
        except InvalidToken:
            raise self.invalid_token() from None
        if caller.kind is not Kind.PERSONAL and not any(
            Permission.MANAGE in g.permission and g.scope.whole
            for g in caller.grants.values()
        ):
            raise self.denied(
                "introspection needs the personal access token or MANAGE on "
                "the whole of a troop",
                bearer=True,
            )
        token = self._form_token(
            await bodies.read_body(request, self.max_body),
            request.headers.get("content-type"),
        )
        try:
            info = await run_in_threadpool(self.auth.introspect, token)
        except InvalidToken:
            return _json({"active": False})
        if info.account_id != caller.account_id:
            return _json({"active": False})
        answer: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "sub": info.token_id,
            "client_id": info.token_id,
            "iat": int(info.created_at.timestamp()),
            "scope": " ".join(
                f"{troop}:{word}"
                for troop, grant in sorted(info.grants.items())
                for word in bodies.permission_words(grant.permission)
            ),
            "troopauth": {
                "kind": info.kind.value,
                "account_id": info.account_id,
                "name": info.name,
                "grants": {
                    troop: bodies.grant_json(g)
                    for troop, g in sorted(info.grants.items())
                },
            },
        }
        if info.expires_at is not None:
            answer["exp"] = int(info.expires_at.timestamp())
        return _json(answer)

    @staticmethod
    def _form_token(body: bytes, content_type: str | None) -> str:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise HTTPProblem(
                "unsupported-media-type",
                "the body must be application/x-www-form-urlencoded",
            )
        try:
            fields = parse_qs(
                body.decode("ascii"), keep_blank_values=True, max_num_fields=20
            )
        except (UnicodeDecodeError, ValueError):
            raise HTTPProblem("invalid-input", "the body is not a form") from None
        tokens = fields.get("token", [])
        if len(tokens) != 1:
            raise HTTPProblem("invalid-input", "the form holds one field token")
        return tokens[0]


def api_routes(api: Api) -> list[Route]:
    """The JSON API's routes, relative to where the app is mounted."""
    return [
        Route("/me", api.me, methods=["GET"]),
        Route("/accounts/{account_id}/troops", api.troops, methods=["GET"]),
        Route("/troops/{troop_id}/tokens", api.list_tokens, methods=["GET"]),
        Route("/troops/{troop_id}/tokens", api.issue, methods=["POST"]),
        Route("/troops/{troop_id}/tokens/{token_id}", api.attach, methods=["PUT"]),
        Route("/troops/{troop_id}/tokens/{token_id}", api.detach, methods=["DELETE"]),
        Route("/tokens/{token_id}", api.get_token, methods=["GET"]),
        Route("/tokens/{token_id}/rotate", api.rotate, methods=["POST"]),
        Route("/tokens/{token_id}/revoke", api.revoke, methods=["POST"]),
        Route("/troops/{troop_id}/members", api.list_members, methods=["GET"]),
        Route(
            "/troops/{troop_id}/members/{member_id}", api.put_member, methods=["PUT"]
        ),
        Route(
            "/troops/{troop_id}/members/{member_id}",
            api.delete_member,
            methods=["DELETE"],
        ),
        Route("/accounts/{account_id}/seats", api.seats, methods=["GET"]),
        Route("/accounts/{account_id}/seats", api.set_seats, methods=["PUT"]),
        Route("/accounts/{account_id}/expiring", api.expiring, methods=["GET"]),
        Route("/accounts/{account_id}/policy", api.set_policy, methods=["PATCH"]),
        Route("/troops/{troop_id}/audit", api.troop_audit, methods=["GET"]),
        Route("/troops/{troop_id}/audit/check", api.troop_audit_check, methods=["GET"]),
        Route("/accounts/{account_id}/audit", api.account_audit, methods=["GET"]),
        Route(
            "/accounts/{account_id}/audit/check",
            api.account_audit_check,
            methods=["GET"],
        ),
        Route("/introspect", api.introspect, methods=["POST"]),
    ]
