"""Django REST framework: authenticate with a troop access token, and require
a permission on a troop (and key) per view.

::

    from troopauth import Permission
    from troopauth.django.rest_framework import (
        HasTroopPermission, TroopTokenAuthentication,
    )

    class DeployKey(APIView):
        authentication_classes = [TroopTokenAuthentication]
        permission_classes = [HasTroopPermission]
        troopauth_permission = Permission.EDIT   # or {"GET": VIEW, "PUT": EDIT}
        troopauth_troop_kwarg = "troop"          # the URL keyword of the troop id
        troopauth_key_kwarg = "key"              # of the key (None: troop-level)

        def put(self, request, troop, key):
            request.auth                         # the Principal

The shape of django-oauth-toolkit's ``OAuth2Authentication`` and
``TokenHasScope`` (which reads ``required_scopes`` from the view). Failures are
RFC 6750: no token, or a malformed, unknown, rotated, revoked or expired one,
is 401 with ``WWW-Authenticate: Bearer realm="..."`` (and
``error="invalid_token"`` for a bad one); a live token that may not do this is
403 with ``error="insufficient_scope"``. A request costs one store lookup: the
permission judges the grants the authentication read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._extras import missing_extra

try:
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
    from rest_framework.permissions import BasePermission
    from rest_framework.request import Request
except ImportError as exc:  # pragma: no cover (the django extra brings DRF)
    raise missing_extra(__name__, "django", exc) from exc

from django.core.exceptions import ImproperlyConfigured

from .._web import MALFORMED, Passport, Refusal
from ..errors import AccessDenied
from ..models import Principal
from ..permission import Permission
from ._http import Gate, target
from .conf import get_gate

__all__ = [
    "HasTroopPermission",
    "InsufficientScope",
    "TroopTokenAuthentication",
    "TroopUser",
]

#: Where authenticate() leaves the RFC 6750 error of a refused value.
_ERROR_ATTR = "_troopauth_error"


class TroopUser:
    """``request.user`` of a request authenticated by a troop access token.

    Not a Django user: it answers what DRF and Django ask of one
    (``is_authenticated`` is True) and holds the `Principal` (also
    ``request.auth``). ``pk`` and ``username`` are the principal's non-secret
    label (``troop:<token id>``), for throttling and logs.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    __slots__ = ("passport", "principal")

    def __init__(self, principal: Principal, passport: Passport | None = None) -> None:
        self.principal = principal
        self.passport = passport

    @property
    def pk(self) -> str:
        """The principal's label, ``troop:<token id>`` or ``personal:<id>``."""
        return self.principal.describe()

    id = pk
    username = pk

    def get_username(self) -> str:
        """The principal's label."""
        return self.principal.describe()

    def has_perm(self, perm: str, obj: object = None) -> bool:
        """Django permissions are not troopauth's: none."""
        return False

    def has_perms(self, perms: object, obj: object = None) -> bool:
        """Django permissions are not troopauth's: none."""
        return False

    def has_module_perms(self, app_label: str) -> bool:
        """Django permissions are not troopauth's: none."""
        return False

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TroopUser) and other.principal == self.principal

    def __hash__(self) -> int:
        return hash(self.principal)

    def __str__(self) -> str:
        return self.principal.describe()

    def __repr__(self) -> str:
        return f"TroopUser({self.principal!r})"


class TroopTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <value>`` (the keyword of ``TROOPAUTH``).

    No header, or another scheme: not this class's (``None``, so the next
    authentication class may try). A malformed or dead value: 401
    ``invalid_token``. A live one: ``(TroopUser, Principal)``, so
    ``request.auth`` is the `Principal`. Override :meth:`get_gate` to use
    another facade than the settings'.
    """

    def get_gate(self) -> Gate:
        """The project's facade and settings (``troopauth.django.get_auth``)."""
        return get_gate()

    def authenticate(self, request: Request) -> tuple[TroopUser, Principal] | None:
        """The token's user and principal, ``None``, or `AuthenticationFailed`."""
        gate = self.get_gate()
        value = gate.read(request.META)
        if value is None:
            return None
        found: Passport | Refusal = (
            gate.invalid if value is MALFORMED else gate.passport(value)
        )
        if isinstance(found, Refusal):
            setattr(request, _ERROR_ATTR, found.error)
            raise AuthenticationFailed("invalid_token", code="invalid_token")
        return TroopUser(found.principal, found), found.principal

    def authenticate_header(self, request: Request) -> str:
        """The RFC 6750 challenge of a 401: ``Bearer realm="..."``, with
        ``error="invalid_token"`` when a bad value came."""
        gate = self.get_gate()
        if getattr(request, _ERROR_ATTR, None) == "invalid_token":
            return gate.invalid.challenge
        return gate.missing.challenge


class InsufficientScope(PermissionDenied):
    """403 for a live token that may not do this, with the RFC 6750
    ``WWW-Authenticate: Bearer ..., error="insufficient_scope"`` header
    (DRF's exception handler sends an exception's ``auth_header``)."""

    default_detail = "insufficient_scope"
    default_code = "insufficient_scope"

    def __init__(self, challenge: str) -> None:
        super().__init__()
        self.auth_header = challenge


class HasTroopPermission(BasePermission):
    """Requires the view's permission on its troop (and key), of
    ``request.auth``'s `Principal` as it is now.

    Read from the view (each also as a ``get_<name>(request)`` method):

    * ``troopauth_permission``: a `Permission` (flags combined: all needed),
      or a mapping of HTTP method to `Permission` (a method left out: 403);
    * the troop id: ``troopauth_troop`` (a literal), else the URL keyword
      ``troopauth_troop_kwarg`` (default ``"troop"``);
    * the key: ``troopauth_key`` (a literal), else the URL keyword
      ``troopauth_key_kwarg`` (default ``None``: a troop-level action).

    A request that no class authenticated gets DRF's 401; one authenticated
    otherwise than by troopauth (no `Principal`) gets 403.
    """

    message = "insufficient_scope"

    def has_permission(self, request: Request, view: Any) -> bool:
        """True, or raise 403 `InsufficientScope`; False without a principal."""
        principal = request.auth
        if not isinstance(principal, Principal):
            return False
        gate = get_gate()
        permission = self._permission(request, view)
        kwargs: Mapping[str, Any] = getattr(view, "kwargs", None) or {}
        troop_id = self._read(view, request, "troop", kwargs, "troop")
        if troop_id is None:
            raise ImproperlyConfigured(
                "HasTroopPermission needs a troop: set troopauth_troop or "
                "troopauth_troop_kwarg on the view"
            )
        key = self._read(view, request, "key", kwargs, None)
        if permission is None:
            raise InsufficientScope(gate.denied.challenge)
        user = getattr(request, "user", None)
        passport = getattr(user, "passport", None)
        if isinstance(passport, Passport) and passport.principal == principal:
            if isinstance(gate.judge(passport, troop_id, permission, key), Refusal):
                raise InsufficientScope(gate.denied.challenge)
            return True
        try:
            gate.auth.authorize(principal, troop_id, permission, key)
        except AccessDenied:
            raise InsufficientScope(gate.denied.challenge) from None
        return True

    @staticmethod
    def _permission(request: Request, view: Any) -> Permission | None:
        getter = getattr(view, "get_troopauth_permission", None)
        wanted = (
            getter(request) if getter else getattr(view, "troopauth_permission", None)
        )
        if isinstance(wanted, Mapping):
            wanted = wanted.get(request.method or "")
            if wanted is None:
                return None
        if not isinstance(wanted, Permission):
            raise ImproperlyConfigured(
                "HasTroopPermission needs troopauth_permission on the view: a "
                "Permission, or a mapping of HTTP method to Permission"
            )
        return wanted

    @staticmethod
    def _read(
        view: Any,
        request: Request,
        what: str,
        kwargs: Mapping[str, Any],
        default_kwarg: str | None,
    ) -> str | None:
        getter = getattr(view, f"get_troopauth_{what}", None)
        if getter is not None:
            found = getter(request)
            return None if found is None else str(found)
        return target(
            kwargs,
            getattr(view, f"troopauth_{what}", None),
            getattr(view, f"troopauth_{what}_kwarg", default_kwarg),
            "troop id" if what == "troop" else what,
        )
