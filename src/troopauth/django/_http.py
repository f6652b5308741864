"""What the DRF classes and the view decorator share (private): reading the
``Authorization`` header with the configured keyword, and the RFC 6750
refusals with the configured realm."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse

from .._web import MALFORMED, Bearer, Guard, Passport, Refusal, json_error
from ..auth import TroopAuth
from ..models import Principal
from ..permission import Permission


def _challenge(keyword: str, realm: str | None, error: str | None) -> str:
    params = []
    if realm is not None:
        params.append(f'realm="{realm}"')
    if error is not None:
        params.append(f'error="{error}"')
    return f"{keyword} " + ", ".join(params) if params else keyword


class Gate:
    """The project's facade with its settings: keyword, realm, refusals.

    Built by :func:`troopauth.django.conf.get_gate` from ``TROOPAUTH``; it
    holds no token value.
    """

    __slots__ = ("_guard", "auth", "denied", "invalid", "keyword", "missing", "realm")

    def __init__(self, auth: TroopAuth, *, keyword: str, realm: str | None) -> None:
        self.auth = auth
        self.keyword = keyword
        self.realm = realm
        self._guard = Guard(auth, realm=realm)
        self.missing = Refusal(401, None, _challenge(keyword, realm, None))
        self.invalid = Refusal(
            401, "invalid_token", _challenge(keyword, realm, "invalid_token")
        )
        self.denied = Refusal(
            403, "insufficient_scope", _challenge(keyword, realm, "insufficient_scope")
        )

    def read(self, meta: Mapping[str, Any]) -> Bearer:
        """The token value of a request's ``Authorization`` header: ``None``
        (no header, or another scheme), ``MALFORMED``, or the value."""
        header = meta.get("HTTP_AUTHORIZATION")
        if not isinstance(header, str):
            return None
        parts = header.split()
        if not parts or parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2 or not header.isascii():
            return MALFORMED
        return parts[1]

    def passport(self, value: str) -> Passport | Refusal:
        """The value's principal and grants (one lookup), or the 401 refusal."""
        found = self._guard.authenticate(value)
        return self.invalid if isinstance(found, Refusal) else found

    def judge(
        self,
        passport: Passport,
        troop_id: str,
        permission: Permission,
        key: str | None,
    ) -> Principal | Refusal:
        """What ``verify`` answers for an authenticated request, no lookup."""
        found = self._guard.judge(passport, troop_id, permission, key)
        return self.denied if isinstance(found, Refusal) else found

    def verify(
        self, value: str, troop_id: str, permission: Permission, key: str | None
    ) -> Principal | Refusal:
        """``auth.verify`` with its refusals as values (one lookup)."""
        found = self._guard.verify(value, troop_id, permission, key)
        if isinstance(found, Refusal):
            return self.invalid if found.status == 401 else self.denied
        return found


def response(refusal: Refusal) -> HttpResponse:
    """The fixed JSON answer to a refusal, with its ``WWW-Authenticate``."""
    answer = json_error(refusal)
    out = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        out[name] = value
    out["Cache-Control"] = "no-store"
    return out


def target(
    kwargs: Mapping[str, Any], literal: str | None, kwarg: str | None, what: str
) -> str | None:
    """A troop id or key: *literal* if given, else the URL keyword *kwarg*."""
    if literal is not None:
        return literal
    if kwarg is None:
        return None
    found = kwargs.get(kwarg)
    if not isinstance(found, str):
        raise ImproperlyConfigured(
            f"troopauth reads the {what} from the URL keyword {kwarg!r}, "
            "which this view's URL pattern does not capture"
        )
    return found
