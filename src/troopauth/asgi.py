"""Pure ASGI middleware and per-route requirements for troop access tokens.

This module imports no web framework: it speaks ASGI (``scope``, ``receive``,
``send``) itself, so it works under Starlette, FastAPI and any other ASGI
framework. :mod:`troopauth.fastapi` adds a FastAPI dependency on top of it and
:mod:`troopauth.wsgi` does the same for WSGI applications, sharing the pieces
defined here (:class:`Refusal`, :class:`ErrorResponse`, :func:`json_error`,
:func:`path_param`).

* :class:`TroopAuthMiddleware` reads ``Authorization: Bearer <value>``. A live
  value puts its `Principal` in ``scope["troopauth.principal"]``; a request
  without a bearer token passes through with ``None`` there (the route
  decides); a bad value is answered with 401 (HTTP) or closed with 1008
  (WebSocket) before the application sees it.
* :func:`require` is a per-route requirement: ``verify`` on the request's value
  for a troop, a permission and a key, literal or taken from the path.

The token value is never copied into the scope: a requirement re-reads it from
the request's ``Authorization`` header, where the server put it.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any, Final, Literal, Protocol, TypeAlias, TypeVar, cast

import attrs

from .auth import TroopAuth
from .errors import AccessDenied, InvalidArgument, InvalidToken, TroopAuthError
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

log = logging.getLogger("troopauth.web")

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

#: Where the middleware (and a passed requirement) puts the `Principal`: in the
#: ASGI scope, or in the WSGI environ. ``None`` when no bearer token came.
PRINCIPAL_KEY: Final = "troopauth.principal"
#: Where the middleware leaves its configuration for the requirements of the
#: routes it wraps (an internal object; not the token value).
_GUARD_KEY: Final = "troopauth.guard"

#: Whether verify runs in a worker thread: ``"auto"`` (when the store's lookup
#: is not a cheap local read), ``True`` (always) or ``False`` (never).
Offload: TypeAlias = Literal["auto"] | bool

#: Where a requirement takes a troop id or a key from: a literal string, or a
#: callable given the route's path parameters (see :func:`path_param`).
Target: TypeAlias = str | Callable[[Mapping[str, Any]], str]

_T = TypeVar("_T")

# -- shared with troopauth.wsgi: what a refusal is and how it is answered -------


@attrs.frozen
class Refusal:
    """Why a request is refused, as an error policy sees it.

    It never holds the token value. ``status`` is 401 (no token, or not a live
    token) or 403 (a live token that may not do this); ``error`` is the RFC 6750
    error code (``"invalid_token"`` or ``"insufficient_scope"``), ``None`` when
    the request carried no bearer token; ``challenge`` is the value of the
    ``WWW-Authenticate`` header the answer must carry.
    """

    status: int
    error: str | None
    challenge: str

    @property
    def detail(self) -> str:
        """A fixed code for a response body: the error, or ``"missing_token"``."""
        return self.error or "missing_token"


def _headers(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(val)) for name, val in value)


@attrs.frozen
class ErrorResponse:
    """An HTTP answer an error policy builds: status, headers and body.

    ``Content-Length`` is added when sent, unless the headers hold one.
    """

    status: int
    headers: tuple[tuple[str, str], ...] = attrs.field(converter=_headers)
    body: bytes = b""


class ErrorPolicy(Protocol):
    """**Protocol:** builds the HTTP answer to a refused request.

    It is given a :class:`Refusal` (never the token value, never the exception)
    and returns an :class:`ErrorResponse`. It should keep the status and the
    ``WWW-Authenticate`` header (``refusal.challenge``) that RFC 6750 requires.
    The default is :func:`json_error`.
    """

    def __call__(self, refusal: Refusal, /) -> ErrorResponse:
        """The answer to send for *refusal*."""


def json_error(refusal: Refusal) -> ErrorResponse:
    """The default error policy: a fixed JSON body ``{"detail":"<code>"}``.

    The code is ``missing_token``, ``invalid_token`` or ``insufficient_scope``
    (byte for byte what FastAPI renders for an ``HTTPException``, so that every
    surface of an application answers alike), with the ``WWW-Authenticate``
    challenge and ``Content-Type: application/json``.
    """
    body = json.dumps({"detail": refusal.detail}, separators=(",", ":")).encode()
    return ErrorResponse(
        refusal.status,
        (
            ("WWW-Authenticate", refusal.challenge),
            ("Content-Type", "application/json"),
        ),
        body,
    )


class _Malformed(enum.Enum):
    """A bearer ``Authorization`` header that does not hold one token."""

    MALFORMED = "malformed"


MALFORMED: Final = _Malformed.MALFORMED


def parse_authorization(header: str | None) -> str | _Malformed | None:
    """The bearer value of one ``Authorization`` header's text.

    ``None`` when there is no header, or it is empty, or it names another
    scheme (``Basic ...``: not troopauth's to judge). :data:`MALFORMED` when
    the scheme is ``Bearer`` (any case) but what follows is not exactly one
    ASCII token. Otherwise the value, unchecked (``verify`` checks it).
    """
    if header is None:
        return None
    parts = header.split()
    if not parts or parts[0].lower() != "bearer":
        return None
    if len(parts) != 2 or not header.isascii():
        return MALFORMED
    return parts[1]


def _challenge(realm: str | None, error: str | None) -> str:
    params = []
    if realm is not None:
        params.append(f'realm="{realm}"')
    if error is not None:
        params.append(f'error="{error}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"


def _check_realm(realm: object) -> str | None:
    """A realm fits an RFC 7230 quoted-string: printable ASCII, no ``"`` or ``\\``."""
    if realm is None:
        return None
    if (
        not isinstance(realm, str)
        or not realm.isascii()
        or not realm.isprintable()
        or '"' in realm
        or "\\" in realm
    ):
        raise InvalidArgument(
            "realm must be a string of printable ASCII without quotes or backslashes"
        )
    return realm


@attrs.frozen
class PathParam:
    """Takes a troop id or a key from the route's path parameter *name*.

    Made by :func:`path_param`. Under ASGI the parameters are the scope's
    ``path_params`` (Starlette, FastAPI); under WSGI, the view's keyword
    arguments (Flask's ``view_args``). A value that is not a string (an ``int``
    converter) is turned into one.
    """

    name: str

    def __call__(self, params: Mapping[str, Any]) -> str:
        """The parameter's value in *params*; ``InvalidArgument`` if absent."""
        try:
            value = params[self.name]
        except KeyError:
            raise InvalidArgument(
                f"the route has no path parameter {self.name!r}"
            ) from None
        return value if isinstance(value, str) else str(value)


def path_param(name: object) -> PathParam:
    """Take a requirement's troop id or key from the path parameter *name*.

    ``require(troop=path_param("troop_id"), permission=Permission.VIEW)``.
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgument("a path parameter name must be a non-empty string")
    return PathParam(name)


def _check_target(value: object, what: str) -> Target:
    if isinstance(value, str):
        if not value:
            raise InvalidArgument(f"{what} must not be empty")
        return value
    if callable(value):
        return cast("Callable[[Mapping[str, Any]], str]", value)
    raise InvalidArgument(
        f"{what} must be a string or a callable such as path_param('name')"
    )


def _check_permission(value: object) -> Permission:
    if isinstance(value, str):
        return Permission.parse(value)
    if not isinstance(value, Permission):
        raise InvalidArgument("permission must be a Permission")
    if not value:
        raise InvalidArgument("a requirement names at least one permission")
    return value


def _resolve(target: Target, params: Mapping[str, Any]) -> str:
    return target if isinstance(target, str) else target(params)


def _should_offload(auth: TroopAuth, offload: object) -> bool:
    if offload == "auto":
        return not getattr(auth.store, "cheap_lookup", False)
    if isinstance(offload, bool):
        return offload
    raise InvalidArgument('offload must be "auto", True or False')


class Guard:
    """The configuration a middleware shares with its routes' requirements.

    Internal: built by the middlewares and by ``require(auth=...)``. It turns a
    value into a `Principal` or a :class:`Refusal`, and a refusal into the
    policy's answer. It holds no token value.
    """

    __slots__ = (
        "_authenticate",
        "_verify",
        "auth",
        "denied",
        "invalid",
        "missing",
        "offload",
        "on_error",
        "realm",
    )

    def __init__(
        self,
        auth: TroopAuth,
        *,
        realm: str | None = None,
        on_error: ErrorPolicy = json_error,
        offload: Offload = "auto",
    ) -> None:
        if not isinstance(auth, TroopAuth):
            raise InvalidArgument(
                f"auth must be a TroopAuth, not {type(auth).__name__}"
            )
        if not callable(on_error):
            raise InvalidArgument("on_error must be a callable taking a Refusal")
        self.auth = auth
        self.realm = _check_realm(realm)
        self.on_error = on_error
        self.offload = _should_offload(auth, offload)
        self.missing = Refusal(401, None, _challenge(self.realm, None))
        self.invalid = Refusal(
            401, "invalid_token", _challenge(self.realm, "invalid_token")
        )
        self.denied = Refusal(
            403, "insufficient_scope", _challenge(self.realm, "insufficient_scope")
        )
        self._authenticate = auth.authenticate
        self._verify = auth.verify

    def __repr__(self) -> str:
        return f"Guard(realm={self.realm!r}, offload={self.offload!r})"

    def authenticate(self, value: str) -> Principal | Refusal:
        """The value's principal, or the 401 refusal (sync: one store lookup)."""
        try:
            return self._authenticate(value)
        except InvalidToken:
            return self.invalid

    def verify(
        self, value: str, troop_id: str, permission: Permission, key: str | None
    ) -> Principal | Refusal:
        """``auth.verify``, its refusals as values (sync: one store lookup)."""
        try:
            return self._verify(value, troop_id, permission, key)
        except InvalidToken:
            return self.invalid
        except AccessDenied:
            return self.denied


def _no_guard() -> TroopAuthError:
    return TroopAuthError(
        "this requirement has no TroopAuth: wrap the application in "
        "TroopAuthMiddleware, or pass auth= to require()"
    )


class _Requirement:
    """What ``require()`` checks, for both the ASGI and the WSGI flavour."""

    __slots__ = ("_guard", "key", "permission", "troop")

    def __init__(
        self,
        troop: Target,
        permission: Permission | str,
        key: Target | None,
        guard: Guard | None,
    ) -> None:
        self.troop = _check_target(troop, "troop")
        self.permission = _check_permission(permission)
        self.key = None if key is None else _check_target(key, "key")
        self._guard = guard

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(troop={self.troop!r}, "
            f"permission={self.permission!r}, key={self.key!r})"
        )

    def _guard_in(self, carrier: Mapping[str, Any]) -> Guard:
        guard = self._guard or carrier.get(_GUARD_KEY)
        if not isinstance(guard, Guard):
            raise _no_guard()
        return guard

    def _target(self, params: Mapping[str, Any]) -> tuple[str, Permission, str | None]:
        key = None if self.key is None else _resolve(self.key, params)
        return _resolve(self.troop, params), self.permission, key


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


def bearer_value(scope: Scope) -> str | _Malformed | None:
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
    log.debug(
        "refused %s %s: %s",
        scope.get("method", "WEBSOCKET"),
        scope.get("path", ""),
        refusal.detail,
    )
    if scope["type"] == "websocket":
        # Before accept: the server answers the handshake with 403.
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.detail})
        return
    await _send_response(guard.on_error(refusal), send)


async def _send_response(response: ErrorResponse, send: Send) -> None:
    headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in response.headers
    ]
    if not any(name == b"content-length" for name, _ in headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
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
        principal: Principal | None = None
        if value is not None:
            if value is MALFORMED:
                await _send_refusal(guard, guard.invalid, scope, send)
                return
            outcome = (
                await _in_thread(guard.authenticate, value)
                if guard.offload
                else guard.authenticate(value)
            )
            if isinstance(outcome, Refusal):
                await _send_refusal(guard, outcome, scope, send)
                return
            principal = outcome
        scope = {**scope, PRINCIPAL_KEY: principal, _GUARD_KEY: guard}
        await self.app(scope, receive, send)


class Requirement(_Requirement):
    """A per-route requirement on ASGI: made by :func:`require`.

    Use it as a decorator of a Starlette endpoint (``async def
    endpoint(request)``, or a WebSocket endpoint), around an ASGI application
    with :meth:`wrap`, or call :meth:`check` from your own code.
    """

    __slots__ = ()

    async def check(self, scope: Scope) -> Principal | Refusal:
        """Verify the request's bearer value: its `Principal`, or a `Refusal`.

        One ``auth.verify`` (in a worker thread when the guard offloads). No
        bearer token: the 401 refusal without an error code; a malformed,
        unknown, rotated, revoked or expired one: 401 ``invalid_token``; a live
        one that may not: 403 ``insufficient_scope``.
        """
        return await self._check(self._guard_in(scope), scope)

    async def _check(self, guard: Guard, scope: Scope) -> Principal | Refusal:
        value = bearer_value(scope)
        if value is None:
            return guard.missing
        if value is MALFORMED:
            return guard.invalid
        troop, permission, key = self._target(scope.get("path_params") or {})
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


def _guard_for(
    auth: TroopAuth | None,
    realm: str | None,
    on_error: ErrorPolicy | None,
    offload: Offload | None,
) -> Guard | None:
    if auth is None:
        if realm is not None or on_error is not None or offload is not None:
            raise InvalidArgument(
                "realm, on_error and offload go with auth=; without auth the "
                "middleware's settings apply"
            )
        return None
    return Guard(
        auth,
        realm=realm,
        on_error=json_error if on_error is None else on_error,
        offload="auto" if offload is None else offload,
    )


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
        troop, permission, key, _guard_for(auth, realm, on_error, offload)
    )
