"""A FastAPI dependency that requires a troop access token.

``Depends(requires(troop=path_param("troop_id"), permission=Permission.USE,
key=path_param("key")))`` gives the route the token's `Principal`, or answers
for it: 401 with ``WWW-Authenticate: Bearer`` (no token) or ``Bearer
error="invalid_token"``, 403 with ``Bearer error="insufficient_scope"``. The
answer is raised as FastAPI's ``HTTPException`` (body ``{"detail": "<code>"}``,
the same bytes as :func:`troopauth.asgi.json_error`), so an application's own
exception handlers shape it like every other error; on a WebSocket route it is
a ``WebSocketException`` closing with 1008.

The dependency is also a security scheme: FastAPI lists it in the OpenAPI
document (HTTP bearer), so the interactive docs offer an "Authorize" button.
A dependency cannot add responses to the OpenAPI document, so the route (or
its router) declares them: ``@app.get(path, responses=RESPONSES)`` lists the
401 and 403 answers, their ``WWW-Authenticate`` header and their body.

This is the only troopauth module that imports FastAPI (the ``fastapi`` extra:
``pip install 'troopauth[fastapi]'``, from a checkout ``pip install
'.[fastapi]'``); :mod:`troopauth.asgi` works with plain Starlette, or any other
ASGI framework.
"""

from __future__ import annotations

from typing import Any, Final

from ._extras import missing_extra

try:
    from fastapi.exceptions import HTTPException, WebSocketException
    from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
    from fastapi.requests import HTTPConnection
    from fastapi.security.base import SecurityBase
except ImportError as exc:
    raise missing_extra(__name__, "fastapi", exc) from exc

from ._web import PRINCIPAL_KEY, Offload, Refusal, Target, guard_for
from .asgi import Requirement
from .auth import TroopAuth
from .models import Principal
from .permission import Permission

__all__ = ["RESPONSES", "TokenRequirement", "requires"]


def _refusal(description: str, codes: list[str]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "WWW-Authenticate": {
                "description": "The RFC 6750 challenge: Bearer, with the error "
                "code (and the realm, if one is set).",
                "schema": {"type": "string"},
            }
        },
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"detail": {"type": "string", "enum": codes}},
                    "required": ["detail"],
                }
            }
        },
    }


#: The answers :func:`requires` may give instead of the route's, for the
#: OpenAPI document: ``@app.get(path, responses=RESPONSES)`` (or
#: ``APIRouter(responses=RESPONSES)`` for every route of a router). 401 for no
#: token or a dead one, 403 for a live token that may not; each with its
#: ``WWW-Authenticate`` challenge and its ``{"detail": "<code>"}`` body. To add
#: answers of your own, merge: ``responses={**RESPONSES, 404: {...}}``.
RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    401: _refusal(
        "No bearer token, or not a live one (malformed, unknown, rotated away, "
        "revoked or expired).",
        ["missing_token", "invalid_token"],
    ),
    403: _refusal(
        "A live token whose grant does not cover this troop, permission or key.",
        ["insufficient_scope"],
    ),
}


class TokenRequirement(SecurityBase):
    """A FastAPI dependency that returns the `Principal`; made by :func:`requires`."""

    def __init__(
        self, requirement: Requirement, *, scheme_name: str, description: str | None
    ) -> None:
        self._requirement = requirement
        self.model = HTTPBearerModel(bearerFormat="troopauth", description=description)
        self.scheme_name = scheme_name

    def __repr__(self) -> str:
        return f"TokenRequirement({self._requirement!r})"

    async def __call__(self, connection: HTTPConnection) -> Principal:
        """Verify the connection's bearer value, or raise the refusal."""
        scope = connection.scope
        requirement = self._requirement
        outcome = await requirement.check(scope)
        if isinstance(outcome, Refusal):
            if scope["type"] == "websocket":
                raise WebSocketException(code=1008, reason=outcome.detail)
            raise HTTPException(
                outcome.status,
                detail=outcome.detail,
                headers={"WWW-Authenticate": outcome.challenge},
            )
        scope[PRINCIPAL_KEY] = outcome
        return outcome


def requires(
    *,
    troop: Target,
    permission: Permission | str,
    key: Target | None = None,
    auth: TroopAuth | None = None,
    realm: str | None = None,
    offload: Offload | None = None,
    scheme_name: str = "troopauth",
    description: str | None = None,
) -> TokenRequirement:
    """A dependency requiring *permission* on *key* in *troop*; use with ``Depends``.

    The arguments are those of :func:`troopauth.asgi.require`: *troop* and
    *key* are literals or :func:`~troopauth.asgi.path_param`; without ``auth``
    the :class:`~troopauth.asgi.TroopAuthMiddleware` around the application
    supplies ``auth``, ``realm`` and ``offload``. *scheme_name* and
    *description* name the security scheme in the OpenAPI document. The body of
    a refusal is FastAPI's (``{"detail": "<code>"}``); shape it with an
    exception handler for ``HTTPException``. Declare the refusals in the
    OpenAPI document with :data:`RESPONSES`.
    """
    requirement = Requirement(
        troop, permission, key, guard_for(auth, realm, None, offload)
    )
    return TokenRequirement(
        requirement, scheme_name=scheme_name, description=description
    )
