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
from typing import Any, TypeVar

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

_View = TypeVar("_View", bound=Callable[..., HttpResponse])


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
    action). The `Principal` lands in ``request.troopauth_principal``.
    """
    if not isinstance(permission, Permission):
        raise ImproperlyConfigured("require_token needs a Permission")
    if troop is None and troop_kwarg is None:
        raise ImproperlyConfigured("require_token needs troop or troop_kwarg")

    def decorate(view: _View) -> _View:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            gate = get_gate()
            value = gate.read(request.META)
            if value is None:
                return response(gate.missing)
            if value is MALFORMED:
                return response(gate.invalid)
            troop_id = target(kwargs, troop, troop_kwarg, "troop id")
            if troop_id is None:  # pragma: no cover (checked when decorating)
                raise ImproperlyConfigured("require_token needs a troop")
            found = gate.verify(
                value, troop_id, permission, target(kwargs, key, key_kwarg, "key")
            )
            if not isinstance(found, Principal):
                return response(found)
            setattr(request, PRINCIPAL_ATTR, found)
            return view(request, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate
