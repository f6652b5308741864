"""A view decorator for plain Django (function views)::

    from troopauth import Permission
    from troopauth.django.decorators import require_token

    @require_token(Permission.EDIT, troop_kwarg="troop", key_kwarg="key")
    def deploy(request, troop, key):
        request.troopauth_principal      # the Principal
        ...

No token: 401 with ``WWW-Authenticate: Bearer realm="..."``; a malformed,
unknown, rotated, revoked or expired one: 401 with ``error="invalid_token"``;
a live token that may not do this: 403 with ``error="insufficient_scope"``.
The body is fixed JSON (``{"detail":"invalid_token"}``, ...), never the value.
One store lookup per request (``TroopAuth.verify``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from inspect import iscoroutinefunction
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

from .._web import MALFORMED
from ..models import Principal
from ..permission import Permission
from ._http import response, target
from .conf import get_gate

__all__ = ["PRINCIPAL_ATTR", "require_token"]

#: The request attribute that holds the `Principal` of a passed request.
PRINCIPAL_ATTR = "troopauth_principal"

_View = TypeVar("_View", bound=Callable[..., Any])


def _check(request: HttpRequest, kwargs: dict[str, Any], need: _Need) -> Any:
    """The request's `Principal`, or the refusal's response (sync: one
    store lookup)."""
    gate = get_gate()
    value = gate.read(request.META)
    if value is None:
        return response(gate.missing)
    if value is MALFORMED:
        return response(gate.invalid)
    troop_id = target(kwargs, need.troop, need.troop_kwarg, "troop id")
    if troop_id is None:  # pragma: no cover (checked when decorating)
        raise ImproperlyConfigured("require_token needs a troop")
    found = gate.verify(
        value,
        troop_id,
        need.permission,
        target(kwargs, need.key, need.key_kwarg, "key"),
    )
    return found if isinstance(found, Principal) else response(found)


class _Need:
    """What a decorated view requires."""

    __slots__ = ("key", "key_kwarg", "permission", "troop", "troop_kwarg")

    def __init__(
        self,
        permission: Permission,
        troop: str | None,
        troop_kwarg: str | None,
        key: str | None,
        key_kwarg: str | None,
    ) -> None:
        self.permission = permission
        self.troop = troop
        self.troop_kwarg = troop_kwarg
        self.key = key
        self.key_kwarg = key_kwarg


def require_token(
    permission: Permission,
    *,
    troop_kwarg: str | None = "troop",
    key_kwarg: str | None = None,
    troop: str | None = None,
    key: str | None = None,
) -> Callable[[_View], _View]:
    """Let a request through only with a token holding *permission* on the
    troop (and key) of this view.

    The troop id is *troop* if given, else the URL keyword *troop_kwarg*; the
    key is *key*, else the URL keyword *key_kwarg* (neither: a troop-level
    action). The `Principal` lands in ``request.troopauth_principal``. An
    ``async def`` view gets an async wrapper (the store is read in a worker
    thread, as Django asks of database access from async code).
    """
    if not isinstance(permission, Permission):
        raise ImproperlyConfigured("require_token needs a Permission")
    if troop is None and troop_kwarg is None:
        raise ImproperlyConfigured("require_token needs troop or troop_kwarg")

    need = _Need(permission, troop, troop_kwarg, key, key_kwarg)

    def decorate(view: _View) -> _View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def guarded_async(
                request: HttpRequest, *args: Any, **kwargs: Any
            ) -> HttpResponse:
                found = await sync_to_async(_check)(request, kwargs, need)
                if not isinstance(found, Principal):
                    return found  # type: ignore[no-any-return]
                setattr(request, PRINCIPAL_ATTR, found)
                return await view(request, *args, **kwargs)  # type: ignore[no-any-return]

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            found = _check(request, kwargs, need)
            if not isinstance(found, Principal):
                return found  # type: ignore[no-any-return]
            setattr(request, PRINCIPAL_ATTR, found)
            return view(request, *args, **kwargs)  # type: ignore[no-any-return]

        return guarded  # type: ignore[return-value]

    return decorate
