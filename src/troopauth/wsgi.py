"""WSGI middleware and a per-view requirement for troop access tokens.

The WSGI twin of :mod:`troopauth.asgi`, with the same answers, headers and
bodies (it shares that module's :class:`~troopauth.asgi.Refusal`,
:func:`~troopauth.asgi.json_error` and :func:`~troopauth.asgi.path_param`):

* :class:`TroopAuthMiddleware` wraps any WSGI application (Flask, Django,
  ...): a live bearer value puts its `Principal` in
  ``environ["troopauth.principal"]``, no bearer token leaves ``None`` there,
  a bad value is answered with 401 before the application sees it.
* :func:`require` decorates a Flask view: path parameters are the view's
  keyword arguments (Flask's ``request.view_args``), the request is Flask's.
  Other frameworks call :meth:`Requirement.check` with the environ and their
  path parameters.

Only :meth:`Requirement.__call__` imports Flask, when a decorated view runs.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar

from .asgi import (
    _GUARD_KEY,
    MALFORMED,
    PRINCIPAL_KEY,
    ErrorPolicy,
    ErrorResponse,
    Guard,
    Refusal,
    Target,
    _Requirement,
    json_error,
    parse_authorization,
    path_param,
)
from .auth import TroopAuth
from .errors import InvalidArgument
from .models import Principal
from .permission import Permission

__all__ = [
    "PRINCIPAL_KEY",
    "Environ",
    "Requirement",
    "StartResponse",
    "TroopAuthMiddleware",
    "WSGIApp",
    "path_param",
    "require",
]

log = logging.getLogger("troopauth.web")

#: The WSGI environ (PEP 3333).
Environ: TypeAlias = MutableMapping[str, Any]

_ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType]


class StartResponse(Protocol):
    """**Protocol:** the ``start_response`` callable of PEP 3333."""

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: _ExcInfo | None = ...,
        /,
    ) -> Callable[[bytes], object]:
        """Begin the response."""


#: A WSGI application.
WSGIApp: TypeAlias = Callable[[Environ, StartResponse], Iterable[bytes]]

_ViewT = TypeVar("_ViewT", bound=Callable[..., Any])


class _WSGIResponse:
    """A refusal's answer as a WSGI application (what a Flask view may return)."""

    __slots__ = ("_response",)

    def __init__(self, response: ErrorResponse) -> None:
        self._response = response

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        response = self._response
        headers = list(response.headers)
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers.append(("Content-Length", str(len(response.body))))
        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        start_response(status, headers)
        return [response.body]


def _refuse(guard: Guard, refusal: Refusal, environ: Environ) -> _WSGIResponse:
    log.debug(
        "refused %s %s: %s",
        environ.get("REQUEST_METHOD", ""),
        environ.get("PATH_INFO", ""),
        refusal.detail,
    )
    return _WSGIResponse(guard.on_error(refusal))


class TroopAuthMiddleware:
    """WSGI middleware: authenticate ``Authorization: Bearer <value>``.

    * No bearer token (no header, or another scheme): the request passes with
      ``environ["troopauth.principal"] = None``; the view decides.
    * A live value: ``environ["troopauth.principal"]`` is its `Principal` (the
      value is not copied anywhere).
    * A bad value (malformed header, unknown, rotated away, revoked, expired):
      401 from ``on_error`` with ``WWW-Authenticate: Bearer
      error="invalid_token"`` (and ``realm`` if given).

    The views' :func:`require` checks use the same ``auth``, ``realm`` and
    ``on_error``. WSGI is synchronous: the lookup runs in the request's thread.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        auth: TroopAuth,
        realm: str | None = None,
        on_error: ErrorPolicy = json_error,
    ) -> None:
        self.app = app
        self.guard = Guard(auth, realm=realm, on_error=on_error, offload=False)

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        """Handle one WSGI request."""
        guard = self.guard
        value = parse_authorization(environ.get("HTTP_AUTHORIZATION"))
        principal: Principal | None = None
        if value is not None:
            outcome = guard.invalid if value is MALFORMED else guard.authenticate(value)
            if isinstance(outcome, Refusal):
                return _refuse(guard, outcome, environ)(environ, start_response)
            principal = outcome
        environ[PRINCIPAL_KEY] = principal
        environ[_GUARD_KEY] = guard
        return self.app(environ, start_response)


class Requirement(_Requirement):
    """A per-view requirement on WSGI: made by :func:`require`."""

    __slots__ = ()

    def check(self, environ: Environ, params: Mapping[str, Any]) -> Principal | Refusal:
        """Verify the request's bearer value: its `Principal`, or a `Refusal`.

        *params* are the route's path parameters (for :func:`path_param`). One
        ``auth.verify``; the refusals are those of
        :meth:`troopauth.asgi.Requirement.check`.
        """
        return self._check(self._guard_in(environ), environ, params)

    def _check(
        self, guard: Guard, environ: Environ, params: Mapping[str, Any]
    ) -> Principal | Refusal:
        value = parse_authorization(environ.get("HTTP_AUTHORIZATION"))
        if value is None:
            return guard.missing
        if value is MALFORMED:
            return guard.invalid
        troop, permission, key = self._target(params)
        return guard.verify(value, troop, permission, key)

    def __call__(self, view: _ViewT) -> _ViewT:
        """Decorate a Flask view (sync).

        The view's keyword arguments are its path parameters. Refused: the view
        is not called and the policy's answer is returned (as a WSGI
        application, which Flask accepts from a view). Passed: the view runs
        with ``request.environ["troopauth.principal"]`` set.
        """
        if not callable(view):
            raise InvalidArgument("require() decorates a view function")
        if inspect.iscoroutinefunction(view):
            raise InvalidArgument("require() from troopauth.wsgi decorates sync views")

        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            from flask import request  # noqa: PLC0415 (only decorated Flask views need it)

            environ = request.environ
            guard = self._guard_in(environ)
            outcome = self._check(guard, environ, kwargs)
            if isinstance(outcome, Refusal):
                return _refuse(guard, outcome, environ)
            environ[PRINCIPAL_KEY] = outcome
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]  # same call shape as the view


def require(
    *,
    troop: Target,
    permission: Permission | str,
    key: Target | None = None,
    auth: TroopAuth | None = None,
    realm: str | None = None,
    on_error: ErrorPolicy | None = None,
) -> Requirement:
    """A per-view requirement: *permission* on *key* in *troop*.

    As :func:`troopauth.asgi.require`: *troop* and *key* are literals or
    :func:`path_param` (any callable given the view's keyword arguments);
    without ``auth`` the :class:`TroopAuthMiddleware` around the application
    supplies ``auth``, ``realm`` and ``on_error``.
    """
    if auth is None:
        if realm is not None or on_error is not None:
            raise InvalidArgument(
                "realm and on_error go with auth=; without auth the "
                "middleware's settings apply"
            )
        guard = None
    else:
        guard = Guard(
            auth,
            realm=realm,
            on_error=json_error if on_error is None else on_error,
            offload=False,
        )
    return Requirement(troop, permission, key, guard)
