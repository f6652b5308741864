"""What the ASGI and WSGI glue share (private).

:mod:`troopauth.asgi` and :mod:`troopauth.wsgi` re-export the public names
defined here (:class:`Refusal`, :class:`ErrorResponse`, :class:`ErrorPolicy`,
:func:`json_error`, :func:`parse_authorization`, :func:`path_param`, ...); this
module holds what the two would otherwise each write again:

* reading ``Authorization: Bearer <value>`` (:func:`parse_authorization`);
* the RFC 6750 challenges and the fixed error bodies (:class:`Guard`,
  :func:`json_error`), the status line and ``Content-Length`` of an answer;
* the targets of a requirement (:func:`path_param`) and its check, which
  reuses the lookup the middleware made for the same request
  (:class:`Passport`), so a request costs one store lookup.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any, Final, Literal, Protocol, TypeAlias, cast

import attrs

from .auth import TroopAuth
from .errors import AccessDenied, InvalidArgument, InvalidToken, TroopAuthError
from .grant import Grant
from .models import Principal
from .permission import Permission

log = logging.getLogger("troopauth.web")

#: Where the middleware (and a passed requirement) puts the `Principal`: in the
#: ASGI scope, or in the WSGI environ. ``None`` when no bearer token came.
PRINCIPAL_KEY: Final = "troopauth.principal"
#: Where the middleware leaves its configuration for the requirements of the
#: routes it wraps (an internal object; not the token value).
GUARD_KEY: Final = "troopauth.guard"
#: Where the middleware leaves what its lookup found for this request (a
#: :class:`Passport`: the principal and its grants; never the value), so that
#: a requirement judges it without a second lookup.
PASSPORT_KEY: Final = "troopauth.passport"

#: Whether verify runs in a worker thread: ``"auto"`` (when the store's lookup
#: is not a cheap local read), ``True`` (always) or ``False`` (never).
Offload: TypeAlias = Literal["auto"] | bool

#: Where a requirement takes a troop id or a key from: a literal string, or a
#: callable given the route's path parameters (see :func:`path_param`).
Target: TypeAlias = str | Callable[[Mapping[str, Any]], str]


# -- what a refusal is and how it is answered ---------------------------------------


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


def headers_with_length(response: ErrorResponse) -> list[tuple[str, str]]:
    """The answer's headers, with ``Content-Length`` added unless it is there."""
    headers = list(response.headers)
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers.append(("Content-Length", str(len(response.body))))
    return headers


def status_line(status: int) -> str:
    """The status line of an answer: ``"401 Unauthorized"``."""
    return f"{status} {HTTPStatus(status).phrase}"


def log_refusal(method: str, path: str, refusal: Refusal) -> None:
    """One debug line per refusal: method, path and code, never the value."""
    log.debug("refused %s %s: %s", method, path, refusal.detail)


# -- the Authorization header -------------------------------------------------------


class _Malformed(enum.Enum):
    """A bearer ``Authorization`` header that does not hold one token."""

    MALFORMED = "malformed"


MALFORMED: Final = _Malformed.MALFORMED

#: What a request's ``Authorization`` header says: no bearer token, a
#: malformed one, or a value to check.
Bearer: TypeAlias = str | _Malformed | None


def parse_authorization(header: str | None) -> Bearer:
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


def challenge(realm: str | None, error: str | None) -> str:
    """The RFC 6750 ``WWW-Authenticate`` value: ``Bearer realm="x", error="y"``."""
    params = []
    if realm is not None:
        params.append(f'realm="{realm}"')
    if error is not None:
        params.append(f'error="{error}"')
    return "Bearer " + ", ".join(params) if params else "Bearer"


def check_realm(realm: object) -> str | None:
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


# -- a requirement's targets --------------------------------------------------------


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


def answers_from_memory(store: object) -> bool:
    """Whether a store's lookups are local (MemoryStore) or cached (a
    CachedStore, whose hits never leave the process): the web glue then calls
    verify inline, without a worker thread. A cached store's miss (a value
    first seen, or one well formed but unknown) is one database read on the
    event loop; pass ``offload=True`` to keep even those off it."""
    return bool(getattr(store, "cheap_lookup", False)) or callable(
        getattr(store, "peek", None)
    )


def _should_offload(auth: TroopAuth, offload: object) -> bool:
    if offload == "auto":
        return not answers_from_memory(auth.store)
    if isinstance(offload, bool):
        return offload
    raise InvalidArgument('offload must be "auto", True or False')


# -- the guard: a value to a principal or a refusal ---------------------------------


class Passport:
    """What the middleware's lookup found for one request: the token's
    `Principal` and its grants by troop, as the store held them at that moment.

    It never holds the value, nor its digest. A requirement of a route the
    middleware wraps judges it (:meth:`Guard.judge`) instead of looking the
    value up again. (A plain slotted class: one is built per request, and
    this is the cheapest to build.)
    """

    __slots__ = ("auth", "grants", "principal")

    def __init__(
        self, auth: TroopAuth, principal: Principal, grants: Mapping[str, Grant]
    ) -> None:
        self.auth = auth
        self.principal = principal
        self.grants = grants

    def __repr__(self) -> str:
        return f"Passport({self.principal!r})"


class Guard:
    """The configuration a middleware shares with its routes' requirements.

    Internal: built by the middlewares and by ``require(auth=...)``. It turns a
    value into a :class:`Passport` or a :class:`Refusal`, and a refusal into
    the policy's answer. It holds no token value.
    """

    __slots__ = (
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
        self.realm = check_realm(realm)
        self.on_error = on_error
        self.offload = _should_offload(auth, offload)
        self.missing = Refusal(401, None, challenge(self.realm, None))
        self.invalid = Refusal(
            401, "invalid_token", challenge(self.realm, "invalid_token")
        )
        self.denied = Refusal(
            403, "insufficient_scope", challenge(self.realm, "insufficient_scope")
        )
        self._verify = auth.verify

    def __repr__(self) -> str:
        return f"Guard(realm={self.realm!r}, offload={self.offload!r})"

    def authenticate(self, value: str) -> Passport | Refusal:
        """The value's passport, or the 401 refusal (sync: one store lookup)."""
        try:
            # What auth.authenticate() reads, kept whole (troopauth's own
            # facade): the grants come with the principal, for judge().
            token = self.auth._live(value)
        except InvalidToken:
            return self.invalid
        return Passport(self.auth, token.principal, token.grants)

    def admit(self, value: Bearer) -> Passport | Refusal | None:
        """The middleware's verdict on a request's bearer value (sync).

        ``None`` (no bearer token: the request passes unauthenticated), the
        401 refusal (a malformed or dead value), or the value's passport (one
        store lookup).
        """
        if value is None:
            return None
        if value is MALFORMED:
            return self.invalid
        return self.authenticate(value)

    def judge(
        self,
        passport: Passport,
        troop_id: str,
        permission: Permission,
        key: str | None,
    ) -> Principal | Refusal:
        """What ``verify`` answers for the passport's token, with no lookup.

        The middleware's lookup, an instant before in the same request, found
        the value live (known, not rotated away, revoked or expired); this
        checks the grant it read for the troop, the permission and the key,
        as ``verify`` does (``Grant.allows``).
        """
        grant = passport.grants.get(troop_id)
        if grant is None or not grant.allows(permission, key):
            return self.denied
        return passport.principal

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


def admitted(
    carrier: MutableMapping[str, Any], guard: Guard, passport: Passport | None
) -> None:
    """Put the middleware's result into a scope or an environ (in place)."""
    carrier[PRINCIPAL_KEY] = None if passport is None else passport.principal
    carrier[GUARD_KEY] = guard
    carrier[PASSPORT_KEY] = passport


def guard_for(
    auth: TroopAuth | None,
    realm: str | None,
    on_error: ErrorPolicy | None,
    offload: Offload | None,
    *,
    options: str = "realm, on_error and offload",
    default_offload: Offload = "auto",
) -> Guard | None:
    """The guard of a requirement given ``auth=``; ``None`` to use the middleware's."""
    if auth is None:
        if realm is not None or on_error is not None or offload is not None:
            raise InvalidArgument(
                f"{options} go with auth=; without auth the middleware's settings apply"
            )
        return None
    return Guard(
        auth,
        realm=realm,
        on_error=json_error if on_error is None else on_error,
        offload=default_offload if offload is None else offload,
    )


def _no_guard() -> TroopAuthError:
    return TroopAuthError(
        "this requirement has no TroopAuth: wrap the application in "
        "TroopAuthMiddleware, or pass auth= to require()"
    )


class RequirementBase:
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
        guard = self._guard or carrier.get(GUARD_KEY)
        if not isinstance(guard, Guard):
            raise _no_guard()
        return guard

    def _target(self, params: Mapping[str, Any]) -> tuple[str, Permission, str | None]:
        key = None if self.key is None else _resolve(self.key, params)
        return _resolve(self.troop, params), self.permission, key

    def _settle(
        self,
        guard: Guard,
        value: Bearer,
        carrier: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> Principal | Refusal | str:
        """The outcome when no lookup is needed, else the value to verify.

        No bearer token: the 401 refusal without an error code; a malformed
        one: 401 ``invalid_token``. A value the middleware in front of this
        route already looked up (with the same ``auth``) is judged on the
        grants that lookup read: one lookup per request, not two.
        """
        if value is None:
            return guard.missing
        if value is MALFORMED:
            return guard.invalid
        passport = carrier.get(PASSPORT_KEY)
        if isinstance(passport, Passport) and passport.auth is guard.auth:
            troop, permission, key = self._target(params)
            return guard.judge(passport, troop, permission, key)
        return value
