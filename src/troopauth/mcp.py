"""Troop tokens for MCP servers: a token verifier for the MCP Python SDK.

Needs the ``mcp`` extra (``pip install 'troopauth[mcp]'``, from a checkout
``pip install '.[mcp]'``: the SDK 2.x); without it, importing this module
raises an ``ImportError`` that says so.
:class:`TroopTokenVerifier` implements the SDK's
``mcp.server.auth.provider.TokenVerifier`` protocol, so an ``MCPServer``
given ``token_verifier=`` and ``auth=AuthSettings(...)`` accepts troop tokens
as bearer tokens on its streamable HTTP transport; :func:`require_key` checks
a key inside a tool.

The rule a request must pass (checked again on every HTTP request, so a
rotation, revocation, expiry or detach takes effect on the next one):

* the bearer value is a live token (what :meth:`TroopAuth.authenticate`
  accepts: not malformed, unknown, rotated away, revoked or expired);
* it is attached to the server's troop (the account's personal token always
  is: it holds every troop of its account);
* its grant there holds every flag of ``required``, on any scope: which keys
  a call touches is the tool's to check, with :func:`require_key`.

Anything else gives ``None``, which the SDK answers with 401. The access token
maps the grant to OAuth scopes (see :func:`grant_scopes`).
"""

from __future__ import annotations

import functools
import logging
import math

from ._extras import missing_extra
from ._web import answers_from_memory

try:
    import anyio.to_thread
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.auth.provider import AccessToken
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:
    raise missing_extra(__name__, "mcp", exc) from exc

from .auth import TroopAuth
from .errors import AccessDenied, InvalidArgument, InvalidToken
from .grant import Grant
from .permission import Permission

__all__ = [
    "SCOPE_PREFIX",
    "ToolAccessDenied",
    "TroopTokenVerifier",
    "grant_scopes",
    "require_key",
]

#: The prefix of the scopes that name permissions: ``troopauth:use``.
SCOPE_PREFIX = "troopauth:"

log = logging.getLogger("troopauth.mcp")


@functools.lru_cache(maxsize=1024)
def _scopes(grant: Grant) -> tuple[str, ...]:
    names = tuple(SCOPE_PREFIX + name.lower() for name in grant.permission.names())
    return names + tuple(str(grant.scope).split(","))


def grant_scopes(grant: Grant) -> list[str]:
    """The OAuth scopes an access token carries for *grant*.

    One ``troopauth:<permission>`` per permission held (``troopauth:view``,
    ``troopauth:use``, ``troopauth:edit``, ``troopauth:manage``, in that
    order), then the grant's scope patterns in their canonical text form:
    ``*`` for the whole troop, else ``key:NAME`` and ``key:PREFIX*``.
    ``Grant(Permission.USE, Scope.parse("key:deploy"))`` gives
    ``["troopauth:use", "key:deploy"]``. Key names hold no comma, so a
    pattern is exactly one scope.
    """
    if not isinstance(grant, Grant):
        raise InvalidArgument(f"expected a Grant, not {type(grant).__name__}")
    return list(_scopes(grant))


class _TroopAccessToken(AccessToken):
    """The access token :class:`TroopTokenVerifier` builds, and only it.

    :func:`require_key` trusts no other: another verifier on the same server
    may hand out scopes that look like troopauth's. The grant the verifier
    read is kept beside the scopes, so editing ``scopes`` widens nothing.
    """

    model_config = ConfigDict(frozen=True)
    _grant: Grant = PrivateAttr()


def _check_arguments(
    auth: object, troop_id: object, required: object, resource: object, offload: object
) -> None:
    """Refuse a misconfigured verifier at construction, not on every request."""
    if not isinstance(auth, TroopAuth):
        raise InvalidArgument(f"auth must be a TroopAuth, not {type(auth).__name__}")
    if not isinstance(troop_id, str) or not troop_id:
        raise InvalidArgument("troop_id must be a non-empty string")
    if not isinstance(required, Permission) or not required:
        raise InvalidArgument("required must be a non-empty Permission")
    if resource is not None and not isinstance(resource, str):
        raise InvalidArgument("resource must be a string or None")
    if offload is not None and not isinstance(offload, bool):
        raise InvalidArgument("offload must be a bool or None")


class TroopTokenVerifier:
    """A ``TokenVerifier`` for the MCP SDK that accepts the tokens of one troop.

    ``TroopTokenVerifier(auth, troop_id, required=Permission.USE)``: the SDK
    calls :meth:`verify_token` with each request's bearer value; it returns an
    ``AccessToken`` for a live token attached to *troop_id* whose grant there
    holds every flag of *required* (any scope), else ``None`` (the SDK's 401).

    The access token carries: ``client_id`` the token id; ``scopes`` from
    :func:`grant_scopes`; ``expires_at`` the token's expiry (whole seconds,
    rounded down; ``None`` if it never expires); ``claims`` the
    ``troop_id``, ``account_id`` and ``kind`` (``"troop"`` or
    ``"personal"``); ``resource`` the *resource* given here (set it to the
    server's ``resource_server_url`` if ``AuthSettings.validate_token_resource``
    is on). Its ``token`` field holds the token's non-secret hint, never the
    value: the MCP specification forbids passing a client's token on to other
    services, and an access token is easily logged.

    Stores whose lookup is not a local in-memory read (``cheap_lookup`` is
    false: SQLite, PostgreSQL) are read in a worker thread, off the event
    loop; ``offload=True`` or ``False`` overrides that choice. A store failure
    (`StoreError`) propagates (the SDK answers 500): it says nothing about the
    token, and a 401 would tell the client to drop a good one.
    """

    __slots__ = ("_auth", "_offload", "_required", "_resource", "_troop_id")

    def __init__(
        self,
        auth: TroopAuth,
        troop_id: str,
        *,
        required: Permission = Permission.USE,
        resource: str | None = None,
        offload: bool | None = None,
    ) -> None:
        _check_arguments(auth, troop_id, required, resource, offload)
        self._auth = auth
        self._troop_id = troop_id
        self._required = required
        self._resource = resource
        self._offload = (
            not answers_from_memory(auth.store) if offload is None else offload
        )

    @property
    def troop_id(self) -> str:
        """The troop whose tokens this verifier accepts."""
        return self._troop_id

    @property
    def required(self) -> Permission:
        """The permissions a token must hold in the troop (all of them)."""
        return self._required

    async def verify_token(self, token: str) -> AccessToken | None:
        """The access token for a bearer value, or ``None`` to refuse it."""
        if self._offload:
            return await anyio.to_thread.run_sync(self.check, token)
        return self.check(token)

    def check(self, value: str) -> AccessToken | None:
        """What :meth:`verify_token` does, synchronously (on the calling thread)."""
        try:
            record = self._auth.introspect(value)  # one lookup
        except InvalidToken:
            log.debug("refused a bearer token for troop %s: invalid", self._troop_id)
            return None
        grant = record.grants.get(self._troop_id)
        if grant is None or self._required not in grant.permission:
            log.debug(
                "refused token %s for troop %s: %s",
                record.token_id,
                self._troop_id,
                "not attached" if grant is None else "missing permission",
            )
            return None
        token = _TroopAccessToken(
            token=record.hint,
            client_id=record.token_id,
            scopes=list(_scopes(grant)),
            expires_at=(
                None
                if record.expires_at is None
                else math.floor(record.expires_at.timestamp())
            ),
            resource=self._resource,
            claims={
                "troop_id": self._troop_id,
                "account_id": record.account_id,
                "kind": record.kind.value,
            },
        )
        token._grant = grant
        return token

    def __repr__(self) -> str:
        return (
            f"TroopTokenVerifier(troop_id={self._troop_id!r}, "
            f"required={self._required!r})"
        )


class ToolAccessDenied(AccessDenied, ToolError):  # noqa: N818 (an AccessDenied)
    """The `AccessDenied` that :func:`require_key` raises.

    It is also the SDK's ``ToolError`` (a failure the tool anticipated): the
    call returns ``isError`` with this message for the model to read, and the
    server logs one INFO line instead of a crash's traceback.
    """


def require_key(
    key: str | None,
    permission: Permission,
    *,
    access_token: AccessToken | None = None,
) -> AccessToken:
    """Inside a tool: return the request's access token if its grant allows
    every flag of *permission* on *key*, else raise `ToolAccessDenied` (an
    `AccessDenied`).

    *access_token* defaults to the current request's (the SDK's
    ``get_access_token()``); ``key=None`` asks for a troop-level target, which
    only the whole-troop scope covers. The check reads the scopes that
    :class:`TroopTokenVerifier` set when it verified this HTTP request, so it
    costs no store access. Only an access token that a
    :class:`TroopTokenVerifier` built passes: a request without one (stdio, or
    another verifier's token, whatever its scopes) is denied.
    """
    if not isinstance(permission, Permission):
        raise InvalidArgument("permission must be a Permission")
    if key is not None and not isinstance(key, str):
        raise InvalidArgument("key must be a string or None")
    token = get_access_token() if access_token is None else access_token
    if not isinstance(token, _TroopAccessToken):
        raise ToolAccessDenied("access denied: no troop access token on this request")
    if not token._grant.allows(permission, key):
        wanted = ",".join(n.lower() for n in permission.names()) or "nothing"
        target = "the troop" if key is None else f"key {key[:40]!r}"
        raise ToolAccessDenied(f"access denied: {wanted} on {target}")
    return token
