"""WSGI middleware and a per-view requirement for troop access tokens.

The WSGI twin of :mod:`troopauth.asgi`, with the same answers, headers and
bodies (both share :class:`~troopauth.asgi.Refusal`,
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
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar

from ._web import (
    PRINCIPAL_KEY,
    ErrorPolicy,
    ErrorResponse,
    Guard,
    Refusal,
    RequirementBase,
    Target,
    admitted,
    guard_for,
    headers_with_length,
    json_error,
    log_refusal,
    parse_authorization,
    path_param,
    status_line,
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
        start_response(status_line(response.status), headers_with_length(response))
        return [response.body]


def _refuse(guard: Guard, refusal: Refusal, environ: Environ) -> _WSGIResponse:
    log_refusal(
        environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""), refusal
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
        outcome = guard.admit(parse_authorization(environ.get("HTTP_AUTHORIZATION")))
        if isinstance(outcome, Refusal):
            return _refuse(guard, outcome, environ)(environ, start_response)
        admitted(environ, guard, outcome)
        return self.app(environ, start_response)


class Requirement(RequirementBase):
    """A per-view requirement on WSGI: made by :func:`require`."""

    __slots__ = ()

    def check(self, environ: Environ, params: Mapping[str, Any]) -> Principal | Refusal:
        """Verify the request's bearer value: its `Principal`, or a `Refusal`.

        *params* are the route's path parameters (for :func:`path_param`).
        Behind the middleware, no lookup (the grants its lookup read for this
        request are judged); otherwise one ``auth.verify``. The refusals are
        those of :meth:`troopauth.asgi.Requirement.check`.
        """
        return self._check(self._guard_in(environ), environ, params)

    def _check(
        self, guard: Guard, environ: Environ, params: Mapping[str, Any]
    ) -> Principal | Refusal:
        header = environ.get("HTTP_AUTHORIZATION")
        value = self._settle(guard, parse_authorization(header), environ, params)
        if not isinstance(value, str):
            return value
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
    guard = guard_for(
        auth, realm, on_error, None, options="realm and on_error", default_offload=False
    )
    return Requirement(troop, permission, key, guard)
