"""``create_app``: the tokens surface as one mountable Starlette application."""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .._web import check_realm
from ..asgi import ASGIApp, Receive, Scope, Send
from ..auth import TroopAuth
from ..errors import InvalidArgument
from . import openapi, pages
from .problems import HTTPProblem, problem_response
from .routes import ActorHook, Api, api_routes
from .scanning import ScanningKeys, SecretScanning

__all__ = ["DEFAULT_MAX_BODY", "create_app"]

log = logging.getLogger("troopauth.http")

#: The default cap on a request body: room for a grant whose scope is at the
#: 65,536-character limit, escaped, and nothing near a memory problem.
DEFAULT_MAX_BODY: Final = 256 * 1024

_MARK: Final = b"cpt_pat_"


def _holds_value(raw: bytes) -> bool:
    """Whether a URL part holds something shaped like a token value
    (percent-encoded or not, any case)."""
    if not raw:
        return False
    return _MARK in raw.lower() or _MARK in unquote_to_bytes(raw).lower()


class RefuseValuesInURL:
    """Pure ASGI guard: a request whose path or query string holds a token
    value is answered 400 (``token-in-url``) before any route sees it, and the
    URL is not logged here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or pass the connection on."""
        if scope["type"] == "http":
            path = scope.get("raw_path") or scope.get("path", "").encode("utf-8")
            if _holds_value(path) or _holds_value(scope.get("query_string", b"")):
                response = problem_response(
                    "token-in-url",
                    "send token values in the Authorization header or the body, "
                    "never in a URL",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _on_problem(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPProblem):  # pragma: no cover - registered for it
        raise exc
    return problem_response(exc.problem.slug, exc.detail, exc.headers)


async def _on_http_exception(_: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for it
        raise exc
    if exc.status_code == 405:
        return problem_response(
            "method-not-allowed", "this path does not take that method", exc.headers
        )
    if exc.status_code == 404:
        return problem_response("not-found", "no such path")
    return problem_response("bad-request", "the request was refused")


async def _on_error(_: Request, exc: Exception) -> Response:
    log.error("internal error: %s", type(exc).__name__)
    return problem_response("internal-error", "the server failed; nothing is told")


def create_app(
    auth: TroopAuth,
    *,
    actor_hook: ActorHook | None = None,
    realm: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    page: bool = True,
    seats_writable: bool = False,
    secret_scanning_keys: ScanningKeys | None = None,
    debug: bool = False,
) -> Starlette:
    """The tokens surface over *auth* as a Starlette application.

    Mount it under any prefix of a host application (``Mount("/tokens-admin",
    app=create_app(auth))``, or ``fastapi_app.mount(...)``) or run it alone;
    every path is relative to where it is mounted: the JSON API, the OpenAPI
    document at ``/openapi.json``, ``POST /introspect`` and, with
    ``page=True``, the page for people at ``/``.

    ``actor_hook(request)`` (sync or async) gives the actor of a request that
    carries no ``Authorization`` header: the host's logged-in member, as a
    `Principal` from ``auth.member(account_id, member_id)``, or ``None`` (401).
    A bearer token, when sent, always wins. ``realm`` goes into the RFC 6750
    challenges; ``max_body`` caps request bodies (413 past it).

    ``seats_writable=True`` lets the account's personal access token resize
    its seat pool (``PUT /accounts/{account_id}/seats``); it is off by default,
    since the seat count is usually what the host bills for.

    ``secret_scanning_keys`` maps GitHub's secret-scanning key identifiers to
    their PEM public keys (ECDSA P-256): ``POST /secret-scanning`` accepts
    reports signed with one of them and disables each live value reported
    (``report_leak``). Without keys every report is refused (401).
    """
    if not isinstance(auth, TroopAuth):
        raise InvalidArgument(f"auth must be a TroopAuth, not {type(auth).__name__}")
    if actor_hook is not None and not callable(actor_hook):
        raise InvalidArgument("actor_hook must be a callable taking the request")
    if type(max_body) is not int or max_body < 1:
        raise InvalidArgument("max_body must be a positive int")
    if type(seats_writable) is not bool:
        raise InvalidArgument("seats_writable must be a bool")
    api = Api(
        auth,
        actor_hook=actor_hook,
        realm=check_realm(realm),
        max_body=max_body,
        seats_writable=seats_writable,
    )
    scanning = SecretScanning(auth, secret_scanning_keys)
    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi.endpoint, methods=["GET"]),
        *api_routes(api),
        Route("/secret-scanning", scanning.endpoint, methods=["POST"]),
    ]
    if page:
        routes.extend(pages.page_routes())
    app = Starlette(
        debug=debug,
        routes=routes,
        exception_handlers={
            HTTPProblem: _on_problem,
            HTTPException: _on_http_exception,
            Exception: _on_error,
        },
    )
    # An API answers the path it was asked, never a redirect to another one.
    app.router.redirect_slashes = False
    app.add_middleware(RefuseValuesInURL)
    return app
