"""RFC 9457 problem details: the one body shape of every error the app sends.

A problem body is ``{"type", "title", "status", "detail"}`` (all four, always)
with the media type ``application/problem+json``. ``type`` is a URN naming the
problem (``urn:troopauth:problem:not-found``); ``title`` is fixed per type;
``detail`` is a short text built from ids only and passed through
:func:`troopauth.errors.redact`, so that it never holds a token value, even one
a client pasted where an id belongs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

import attrs
from starlette.responses import Response

from ..errors import (
    AccessDenied,
    InvalidArgument,
    InvalidToken,
    NotFound,
    SeatsExhausted,
    StoreError,
    TroopAuthError,
    redact,
)

__all__ = [
    "MEDIA_TYPE",
    "PROBLEM_TYPES",
    "HTTPProblem",
    "ProblemType",
    "from_error",
    "problem_response",
]

#: The media type of every error body (RFC 9457).
MEDIA_TYPE: Final = "application/problem+json"


@attrs.frozen
class ProblemType:
    """One kind of problem: its slug (the end of its ``type`` URN), status and title."""

    slug: str
    status: int
    title: str

    @property
    def uri(self) -> str:
        """The ``type`` member of the body."""
        return f"urn:troopauth:problem:{self.slug}"


def _types(*items: ProblemType) -> Mapping[str, ProblemType]:
    return {item.slug: item for item in items}


#: Every problem the app sends, by slug (the OpenAPI document lists them too).
PROBLEM_TYPES: Final = _types(
    ProblemType("bad-request", 400, "Bad request"),
    ProblemType("token-in-url", 400, "A token value is not accepted in a URL"),
    ProblemType("missing-token", 401, "Authentication required"),
    ProblemType("invalid-token", 401, "Invalid token"),
    ProblemType("invalid-signature", 401, "Unsigned or badly signed report"),
    ProblemType("forbidden", 403, "Forbidden"),
    ProblemType("not-found", 404, "Not found"),
    ProblemType("method-not-allowed", 405, "Method not allowed"),
    ProblemType("seats-exhausted", 409, "No free seat"),
    ProblemType("body-too-large", 413, "Request body too large"),
    ProblemType("unsupported-media-type", 415, "Unsupported media type"),
    ProblemType("invalid-input", 422, "Invalid input"),
    ProblemType("store-unavailable", 503, "Storage unavailable"),
    ProblemType("internal-error", 500, "Internal error"),
)


class HTTPProblem(Exception):  # noqa: N818 (an HTTP answer, raised to unwind a handler)
    """Raised inside the app to answer with a problem body.

    ``detail`` is redacted when the body is built; ``headers`` are added to the
    response (``WWW-Authenticate`` for 401 and 403).
    """

    def __init__(
        self,
        slug: str,
        detail: str = "",
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(slug)
        self.problem = PROBLEM_TYPES[slug]
        self.detail = detail or self.problem.title
        self.headers = dict(headers or {})


def problem_response(
    slug: str, detail: str = "", headers: Mapping[str, str] | None = None
) -> Response:
    """The response for one problem: the fixed body shape, ``no-store``."""
    kind = PROBLEM_TYPES[slug]
    body = {
        "type": kind.uri,
        "title": kind.title,
        "status": kind.status,
        "detail": redact(detail or kind.title)[:500],
    }
    return Response(
        json.dumps(body, ensure_ascii=False).encode(),
        status_code=kind.status,
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def from_error(exc: TroopAuthError) -> HTTPProblem:
    """The problem for a troopauth error a facade call raised.

    The caller adds the RFC 6750 challenge to 401 and 403 where the actor came
    from a bearer token.
    """
    if isinstance(exc, InvalidToken):
        return HTTPProblem("invalid-token", "invalid token")
    if isinstance(exc, AccessDenied):
        return HTTPProblem("forbidden", str(exc))
    if isinstance(exc, NotFound):
        return HTTPProblem("not-found", str(exc))
    if isinstance(exc, SeatsExhausted):
        return HTTPProblem("seats-exhausted", str(exc))
    if isinstance(exc, InvalidArgument):
        return HTTPProblem("invalid-input", str(exc))
    if isinstance(exc, StoreError):
        return HTTPProblem("store-unavailable", "the store could not answer")
    return HTTPProblem("bad-request", str(exc))
