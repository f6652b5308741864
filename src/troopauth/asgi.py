"""Pure ASGI middleware and per-route requirements for troop access tokens.

This module imports no web framework: it speaks ASGI (``scope``, ``receive``,
``send``) itself, so it works under Starlette, FastAPI and any other ASGI
framework. :mod:`troopauth.fastapi` adds a FastAPI dependency on top of it and
:mod:`troopauth.wsgi` does the same for WSGI applications; both share the
pieces re-exported here (:class:`Refusal`, :class:`ErrorResponse`,
:func:`json_error`, :func:`path_param`).

* :class:`TroopAuthMiddleware` reads ``Authorization: Bearer <value>``. A live
  value puts its `Principal` in ``scope["troopauth.principal"]``; a request
  without a bearer token passes through with ``None`` there (the route
  decides); a bad value is answered with 401 (HTTP) or closed with 1008
  (WebSocket) before the application sees it.
* :func:`require` is a per-route requirement: ``verify`` on the request's value
  for a troop, a permission and a key, literal or taken from the path.

The token value is never copied into the scope. Behind the middleware, a
requirement judges the grants the middleware's lookup read for this request:
one store lookup per request. Without the middleware (``require(auth=...)``)
it re-reads the value from the ``Authorization`` header and verifies it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias, TypeVar, cast

from ._web import (
    GUARD_KEY,
    MALFORMED,
    PASSPORT_KEY,
    PRINCIPAL_KEY,
    Bearer,
    ErrorPolicy,
    ErrorResponse,
    Guard,
    Offload,
    PathParam,
    Refusal,
    RequirementBase,
    Target,
    guard_for,
    headers_with_length,
    json_error,
    log_refusal,
    parse_authorization,
    path_param,
)
from .auth import TroopAuth
from .errors import InvalidArgument
from .models import Principal
from .permission import Permission

__all__ = [
    "MALFORMED",
    "PRINCIPAL_KEY",
    "ASGIApp",
    "ErrorPolicy",
    "ErrorResponse",
    "Message",
    "Offload",
    "PathParam",
    "Receive",
    "Refusal",
    "Requirement",
    "Scope",
    "Send",
    "Target",
    "TroopAuthMiddleware",
    "bearer_value",
    "json_error",
    "parse_authorization",
    "path_param",
    "require",
]

# -- ASGI types (the shapes of the ASGI spec, so no framework is imported) -----

#: The connection scope: a mutable mapping of str keys.
Scope: TypeAlias = MutableMapping[str, Any]
#: One ASGI event, sent or received.
Message: TypeAlias = MutableMapping[str, Any]
#: Awaits the next event from the client.
Receive: TypeAlias = Callable[[], Awaitable[Message]]
#: Sends an event to the client.
Send: TypeAlias = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application.
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

_T = TypeVar("_T")

# -- ASGI ------------------------------------------------------------------------


def _anyio_thread_runner() -> Callable[..., Awaitable[Any]] | None:
    """anyio's ``to_thread.run_sync`` (Starlette's: it shares the framework's
    thread limiter), or ``None`` where anyio is not installed."""
    try:
        from anyio.to_thread import run_sync  # noqa: PLC0415 (anyio is optional)
    except ImportError:  # pragma: no cover - every ASGI stack we test has anyio
        return None
    return run_sync


_anyio_run_sync = _anyio_thread_runner()


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call (a store lookup) in a worker thread, off the loop."""
    if _anyio_run_sync is not None:
        return cast("_T", await _anyio_run_sync(function, *args))
    return await asyncio.to_thread(function, *args)  # pragma: no cover


def bearer_value(scope: Scope) -> Bearer:
    """The bearer value of an ASGI request, as :func:`parse_authorization` reads it.

    Two ``Authorization`` headers make the request :data:`MALFORMED`.
    """
    found: bytes | None = None
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            if found is not None:
                return MALFORMED
            found = value
    if found is None:
        return None
    return parse_authorization(found.decode("latin-1"))


async def _send_refusal(
    guard: Guard, refusal: Refusal, scope: Scope, send: Send
) -> None:
    """Answer a refused connection: the policy's HTTP answer, or close 1008."""
    log_refusal(scope.get("method", "WEBSOCKET"), scope.get("path", ""), refusal)
    if scope["type"] == "websocket":
        # Before accept: the server answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.detail})
        return
    await _send_response(guard.on_error(refusal), send)


async def _send_response(response: ErrorResponse, send: Send) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in headers_with_length(response)
    ]
    await send(
        {"type": "http.response.start", "status": response.status, "headers": headers}
    )
    await send({"type": "http.response.body", "body": response.body})


class _ASGIResponse:
    """A refusal as an ASGI application (what a Starlette endpoint may return)."""

    __slots__ = ("_guard", "_refusal")

    def __init__(self, guard: Guard, refusal: Refusal) -> None:
        self._guard = guard
        self._refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_refusal(self._guard, self._refusal, scope, send)


class TroopAuthMiddleware:
    """Pure ASGI middleware: authenticate ``Authorization: Bearer <value>``.

    * Lifespan (and any scope but ``http`` and ``websocket``) passes through.
    * No bearer token (no header, or another scheme): the request passes with
      ``scope["troopauth.principal"] = None``; the route decides.
    * A live value: ``scope["troopauth.principal"]`` is its `Principal` (the
      scope is copied, as the ASGI spec asks; the value is not put in it).
    * A bad value (malformed header, unknown, rotated away, revoked, expired):
      HTTP 401 from ``on_error`` with ``WWW-Authenticate: Bearer
      error="invalid_token"`` (and ``realm`` if given); a WebSocket is closed
      with 1008 (policy violation) before it is accepted.

    ``offload``: ``"auto"`` runs the store lookup in a worker thread when the
    store's lookup is not a cheap local read (``store.cheap_lookup`` false:
    SQLite, PostgreSQL), so that it never blocks the event loop; ``True``
    always, ``False`` never. The routes' :func:`require` checks use the same
    ``auth``, ``realm``, ``on_error`` and ``offload``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        auth: TroopAuth,
        realm: str | None = None,
        on_error: ErrorPolicy = json_error,
        offload: Offload = "auto",
    ) -> None:
        self.app = app
        self.guard = Guard(auth, realm=realm, on_error=on_error, offload=offload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        kind = scope["type"]
        if kind not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        guard = self.guard
        value = bearer_value(scope)
        outcome = (
            await _in_thread(guard.admit, value)
            if guard.offload and isinstance(value, str)
            else guard.admit(value)
        )
        if isinstance(outcome, Refusal):
            await _send_refusal(guard, outcome, scope, send)
            return
        scope = {
            **scope,
            PRINCIPAL_KEY: None if outcome is None else outcome.principal,
            GUARD_KEY: guard,
            PASSPORT_KEY: outcome,
        }
        await self.app(scope, receive, send)


class Requirement(RequirementBase):
    """A per-route requirement on ASGI: made by :func:`require`.

    Use it as a decorator of a Starlette endpoint (``async def
    endpoint(request)``, or a WebSocket endpoint), around an ASGI application
    with :meth:`wrap`, or call :meth:`check` from your own code.
    """

    __slots__ = ()

    async def check(self, scope: Scope) -> Principal | Refusal:
        """Verify the request's bearer value: its `Principal`, or a `Refusal`.

        Behind the middleware, no lookup: the grants its lookup read for this
        request are judged. Otherwise one ``auth.verify`` (in a worker thread
        when the guard offloads). No bearer token: the 401 refusal without an
        error code; a malformed, unknown, rotated, revoked or expired one: 401
        ``invalid_token``; a live one that may not: 403 ``insufficient_scope``.
        """
        return await self._check(self._guard_in(scope), scope)

    async def _check(self, guard: Guard, scope: Scope) -> Principal | Refusal:
        params = scope.get("path_params") or {}
        value = self._settle(guard, bearer_value(scope), scope, params)
        if not isinstance(value, str):
            return value
        troop, permission, key = self._target(params)
        if guard.offload:
            return await _in_thread(guard.verify, value, troop, permission, key)
        return guard.verify(value, troop, permission, key)

    def __call__(
        self, endpoint: Callable[[Any], Any]
    ) -> Callable[[Any], Awaitable[Any]]:
        """Decorate a Starlette endpoint taking a request or a WebSocket.

        Refused: the endpoint is not called; an HTTP request gets the policy's
        answer, a WebSocket is closed with 1008. Passed: the endpoint is called
        with ``scope["troopauth.principal"]`` set. A sync endpoint runs in a
        worker thread, as Starlette would run it.
        """
        if not callable(endpoint):
            raise InvalidArgument("require() decorates an endpoint function")
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def guarded(conn: Any) -> Any:
            scope = conn.scope
            guard = self._guard_in(scope)
            outcome = await self._check(guard, scope)
            if isinstance(outcome, Refusal):
                response = _ASGIResponse(guard, outcome)
                if scope["type"] == "websocket":
                    await response(scope, conn.receive, conn.send)
                    return None
                return response
            scope[PRINCIPAL_KEY] = outcome
            if is_async:
                return await endpoint(conn)
            return await _in_thread(endpoint, conn)

        return guarded

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """An ASGI application that checks this requirement, then runs *app*.

        For a mounted sub-application or a class-based endpoint; scopes other
        than HTTP and WebSocket pass through.
        """

        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] not in {"http", "websocket"}:
                await app(scope, receive, send)
                return
            guard = self._guard_in(scope)
            outcome = await self._check(guard, scope)
            if isinstance(outcome, Refusal):
                await _send_refusal(guard, outcome, scope, send)
                return
            await app({**scope, PRINCIPAL_KEY: outcome}, receive, send)

        return guarded


def require(
    *,
    troop: Target,
    permission: Permission | str,
    key: Target | None = None,
    auth: TroopAuth | None = None,
    realm: str | None = None,
    on_error: ErrorPolicy | None = None,
    offload: Offload | None = None,
) -> Requirement:
    """A per-route requirement: *permission* on *key* in *troop*.

    *troop* and *key* are literal strings or :func:`path_param` (any callable
    given the route's path parameters); ``key=None`` is a troop-level action.
    *permission* is a `Permission` (flags combine: all are required) or its
    text (``"view,use"``).

    Without ``auth`` the requirement uses the :class:`TroopAuthMiddleware`
    around the application (its ``auth``, ``realm``, ``on_error`` and
    ``offload``); with ``auth`` it needs no middleware and takes those options
    itself.
    """
    return Requirement(
        troop, permission, key, guard_for(auth, realm, on_error, offload)
    )
