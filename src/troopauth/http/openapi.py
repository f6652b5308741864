"""The OpenAPI 3.1 document of the JSON API, written by hand.

:func:`document` builds it; the app serves it at ``/openapi.json`` with the
mount point as its server URL, so a generated client (or a Terraform provider)
that reads it there reaches the API wherever the host mounted it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..models import AuditAction
from .problems import MEDIA_TYPE, PROBLEM_TYPES

__all__ = ["document", "endpoint"]

_ID = {"type": "string", "minLength": 1}
_WHEN = {"type": "string", "format": "date-time"}
_PERMISSION = {"type": "string", "enum": ["view", "use", "edit", "manage"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(
    properties: dict[str, Any], required: list[str] | None = None
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties) if required is None else required,
        "additionalProperties": False,
    }


def _schemas() -> dict[str, Any]:
    grant = _object(
        {
            "permissions": {
                "type": "array",
                "items": _PERMISSION,
                "minItems": 1,
                "description": "Permission names, any case.",
            },
            "scope": {
                "type": "string",
                "description": "`*` (the whole troop) or comma-separated "
                "`key:NAME` / `key:PREFIX*` patterns.",
                "examples": ["*", "key:deploy,key:prod/*"],
            },
        }
    )
    return {
        "Grant": grant,
        "Token": _object(
            {
                "token_id": _ID,
                "name": {"type": "string"},
                "hint": {"type": "string", "description": "A non-secret reminder."},
                "kind": {"type": "string", "enum": ["troop", "personal"]},
                "grants": {
                    "type": "object",
                    "description": "Troop id -> the grant held there.",
                    "additionalProperties": _ref("Grant"),
                },
                "created_at": _WHEN,
                "expires_at": {"oneOf": [_WHEN, {"type": "null"}]},
                "last_used_at": {
                    "oneOf": [_WHEN, {"type": "null"}],
                    "description": "When a verify or authentication with it last "
                    "succeeded, to within the library's last_used_interval "
                    "(default 60 s); null: never, or not recorded.",
                },
                "revoked": {
                    "type": "boolean",
                    "description": "Revoked for good (only GET /tokens/{token_id} "
                    "shows such a token).",
                },
            }
        ),
        "TokenList": _object(
            {
                "tokens": {"type": "array", "items": _ref("Token")},
                "next": {
                    "type": ["string", "null"],
                    "description": "Pass it as `after` to get the next page; "
                    "null on the last page (and when no `limit` was given).",
                },
            }
        ),
        "Troop": _object(
            {"troop_id": _ID, "name": {"type": "string"}, "created_at": _WHEN}
        ),
        "TroopList": _object({"troops": {"type": "array", "items": _ref("Troop")}}),
        "Member": _object({"member_id": _ID, "grant": _ref("Grant")}),
        "MemberList": _object({"members": {"type": "array", "items": _ref("Member")}}),
        "ExpiringList": _object(
            {
                "within_seconds": {"type": "integer", "minimum": 0},
                "tokens": {
                    "type": "array",
                    "items": _ref("Token"),
                    "description": "Soonest to expire first.",
                },
            }
        ),
        "RotateRequest": _object(
            {
                "overlap_seconds": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 604800,
                    "default": 0,
                    "description": "How long the old value keeps working "
                    "(at most 7 days); 0: it stops now.",
                }
            },
            required=[],
        ),
        "Policy": _object(
            {
                "max_token_lifetime_seconds": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 3153600000,
                    "description": "Every troop token issued from now on "
                    "expires within this; null: no maximum.",
                },
                "require_expiry": {
                    "type": "boolean",
                    "description": "Whether a troop token must be issued with "
                    "an expires_at.",
                },
            }
        ),
        "PolicyChange": _object(
            {
                "max_token_lifetime_seconds": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 3153600000,
                },
                "require_expiry": {"type": "boolean"},
            },
            required=[],
        ),
        "SeatsRequest": _object(
            {"capacity": {"type": "integer", "minimum": 0, "maximum": 1000000}}
        ),
        "IssuedToken": _object(
            {
                "token_id": _ID,
                "value": {
                    "type": "string",
                    "pattern": "^cpt_pat_[0-9A-Za-z]{36}$",
                    "description": "The token value: shown this once, never again.",
                },
                "hint": {"type": "string"},
            }
        ),
        "IssueRequest": _object(
            {
                "grant": _ref("Grant"),
                "name": {"type": "string", "maxLength": 256, "default": ""},
                "expires_at": {
                    "oneOf": [_WHEN, {"type": "null"}],
                    "description": "A time with its UTC offset, in the future.",
                },
            },
            required=["grant"],
        ),
        "GrantRequest": _object({"grant": _ref("Grant")}),
        "SeatPool": _object(
            {
                "capacity": {"type": "integer", "minimum": 0},
                "used": {"type": "integer", "minimum": 0},
                "free": {"type": "integer"},
            }
        ),
        "AuditEvent": _object(
            {
                "seq": {"type": "integer", "minimum": 1},
                "at": _WHEN,
                "troop_id": {"type": ["string", "null"]},
                "action": {
                    "type": "string",
                    "enum": [action.value for action in AuditAction],
                },
                "actor": {"type": "string"},
                "token_id": {"type": ["string", "null"]},
                "member_id": {"type": ["string", "null"]},
                "grant": {"oneOf": [_ref("Grant"), {"type": "null"}]},
                "hash": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            }
        ),
        "AuditLog": _object({"events": {"type": "array", "items": _ref("AuditEvent")}}),
        "AuditCheck": _object(
            {
                "intact": {"type": "boolean"},
                "first_broken": {
                    "type": ["integer", "null"],
                    "description": "The seq of the first edited, dropped or "
                    "reordered event; null when intact.",
                },
            }
        ),
        "Principal": _object(
            {
                "kind": {"type": "string", "enum": ["personal", "troop", "member"]},
                "account_id": _ID,
                "token_id": {"type": ["string", "null"]},
                "member_id": {"type": ["string", "null"]},
            }
        ),
        "IntrospectionRequest": {
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "token_type_hint": {"type": "string"},
            },
            "required": ["token"],
        },
        "Introspection": {
            "type": "object",
            "description": "RFC 7662. Only `active` when it is false.",
            "properties": {
                "active": {"type": "boolean"},
                "token_type": {"type": "string", "const": "Bearer"},
                "sub": _ID,
                "client_id": _ID,
                "iat": {"type": "integer"},
                "exp": {"type": "integer"},
                "scope": {
                    "type": "string",
                    "description": "Space-separated `TROOP_ID:permission` words.",
                },
                "troopauth": _object(
                    {
                        "kind": {"type": "string", "enum": ["troop", "personal"]},
                        "account_id": _ID,
                        "name": {"type": "string"},
                        "grants": {
                            "type": "object",
                            "additionalProperties": _ref("Grant"),
                        },
                    }
                ),
            },
            "required": ["active"],
            "additionalProperties": False,
            "if": {"properties": {"active": {"const": True}}},
            "then": {
                "required": [
                    "active",
                    "token_type",
                    "sub",
                    "client_id",
                    "iat",
                    "scope",
                    "troopauth",
                ]
            },
            "else": {"maxProperties": 1},
        },
        "LeakReport": {
            "type": "array",
            "minItems": 1,
            "maxItems": 5000,
            "description": "GitHub's secret-scanning partner format.",
            "items": {
                "type": "object",
                "properties": {
                    "token": {"type": "string", "minLength": 1},
                    "type": {"type": "string"},
                    "url": {"type": "string"},
                    "source": {"type": "string"},
                },
                "required": ["token", "type"],
            },
        },
        "LeakFeedback": {
            "type": "array",
            "description": "One entry per reported match, in order.",
            "items": _object(
                {
                    "token_hash": {
                        "type": "string",
                        "pattern": "^[0-9a-f]{64}$",
                        "description": "SHA-256 (hex) of the reported value.",
                    },
                    "token_type": {"type": "string"},
                    "label": {
                        "type": "string",
                        "enum": ["true_positive", "false_positive"],
                        "description": "true_positive: a live token of this "
                        "server held the value and is now revoked.",
                    },
                }
            ),
        },
        "Problem": _object(
            {
                "type": {
                    "type": "string",
                    "enum": sorted(p.uri for p in PROBLEM_TYPES.values()),
                },
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
            }
        ),
    }


_DESCRIPTIONS = {
    400: "Bad request (a token value in the URL, among others).",
    401: "No credentials, not a live token (RFC 6750 challenge), or a report "
    "that is unsigned or badly signed.",
    403: "The actor may not do this.",
    404: "No such troop, token, member or account (in the actor's account).",
    409: "No free seat in the account's pool (or fewer seats than in use).",
    413: "The body is larger than the cap.",
    415: "The body's media type is not the one expected.",
    422: "Invalid input: malformed JSON, an unknown field, a wrong type.",
    503: "The store failed; nothing was changed.",
}


def _problems(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": _DESCRIPTIONS[status],
            "content": {MEDIA_TYPE: {"schema": _ref("Problem")}},
        }
        for status in statuses
    }


def _ok(status: int, schema: str | None, description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": _ref(schema)}}
    return {str(status): answer}


def _op(
    op_id: str,
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    body: str | None = None,
    params: tuple[str, ...] = (),
    query: tuple[dict[str, Any], ...] = (),
    optional_body: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "responses": {**ok, **_problems(400, *errors, 503)},
    }
    if params or query:
        operation["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": _ID} for p in params
        ] + list(query)
    if body is not None:
        operation["requestBody"] = {
            "required": not optional_body,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return operation


_READ = (401, 403, 404, 422)
_CHANGE = (401, 403, 404, 413, 415, 422)


def _paths() -> dict[str, Any]:
    troop = ("troop_id",)
    troop_token = ("troop_id", "token_id")
    token = ("token_id",)
    member = ("troop_id", "member_id")
    account = ("account_id",)
    return {
        "/me": {
            "get": _op(
                "whoAmI", "The caller's principal", _ok(200, "Principal", "Who"), (401,)
            )
        },
        "/accounts/{account_id}/troops": {
            "get": _op(
                "listTroops",
                "The account's troops, oldest first: every one for the personal "
                "access token, else those the actor has MANAGE on the whole of",
                _ok(200, "TroopList", "The troops"),
                _READ,
                params=account,
            )
        },
        "/troops/{troop_id}/tokens": {
            "get": _op(
                "listTokens",
                "The tokens attached to a troop (MANAGE on the whole troop), "
                "a page at a time with `limit` and `after`",
                _ok(200, "TokenList", "The tokens, oldest first; no values"),
                _READ,
                params=troop,
                query=(
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "At most this many (all when left out).",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "The `next` of the previous page.",
                        "schema": _ID,
                    },
                ),
            ),
            "post": _op(
                "issueToken",
                "Issue a token attached to the troop; the value is shown once",
                _ok(201, "IssuedToken", "Issued: the value, this once"),
                (*_CHANGE, 409),
                body="IssueRequest",
                params=troop,
            ),
        },
        "/troops/{troop_id}/tokens/{token_id}": {
            "put": _op(
                "attachToken",
                "Attach a token to the troop, or replace its grant there",
                _ok(200, "Token", "The token after the change"),
                (*_CHANGE, 409),
                body="GrantRequest",
                params=troop_token,
            ),
            "delete": _op(
                "detachToken",
                "Detach a token from the troop",
                _ok(204, None, "Detached"),
                _CHANGE,
                params=troop_token,
            ),
        },
        "/tokens/{token_id}": {
            "get": _op(
                "getToken",
                "One token in any state, revoked included (the personal access "
                "token, or MANAGE on the whole of every troop it is attached to)",
                _ok(200, "Token", "The token; never its value"),
                _READ,
                params=token,
            )
        },
        "/tokens/{token_id}/rotate": {
            "post": _op(
                "rotateToken",
                "A new value for the token; the old one stops working now, or "
                "after `overlap_seconds`",
                _ok(200, "IssuedToken", "The new value, this once"),
                _CHANGE,
                body="RotateRequest",
                params=token,
                optional_body=True,
            )
        },
        "/tokens/{token_id}/revoke": {
            "post": _op(
                "revokeToken",
                "Disable a token for good; frees its seat",
                _ok(204, None, "Revoked (revoking again changes nothing)"),
                _CHANGE,
                params=token,
            )
        },
        "/troops/{troop_id}/members": {
            "get": _op(
                "listMembers",
                "The troop's members and their grants, by member id (MANAGE on "
                "the whole troop)",
                _ok(200, "MemberList", "The members"),
                _READ,
                params=troop,
            )
        },
        "/troops/{troop_id}/members/{member_id}": {
            "put": _op(
                "putMember",
                "Give a member a grant in the troop",
                _ok(204, None, "Done"),
                _CHANGE,
                body="GrantRequest",
                params=member,
            ),
            "delete": _op(
                "removeMember",
                "Take a member's grant in the troop away",
                _ok(204, None, "Removed"),
                _CHANGE,
                params=member,
            ),
        },
        "/accounts/{account_id}/seats": {
            "get": _op(
                "seats",
                "The account's seat pool",
                _ok(200, "SeatPool", "The pool now"),
                _READ,
                params=account,
            ),
            "put": _op(
                "setSeats",
                "Resize the seat pool (the personal access token, on a server "
                "created with seats_writable=True); never below the seats in use",
                _ok(200, "SeatPool", "The pool now"),
                (*_CHANGE, 409),
                body="SeatsRequest",
                params=account,
            ),
        },
        "/accounts/{account_id}/policy": {
            "patch": _op(
                "setPolicy",
                "Change the account's token policy (personal access token "
                "only); a field left out keeps its value, so an empty body "
                "reads it. It applies to tokens issued from now on.",
                _ok(200, "Policy", "The policy now"),
                _CHANGE,
                body="PolicyChange",
                params=("account_id",),
                optional_body=True,
            )
        },
        "/accounts/{account_id}/expiring": {
            "get": _op(
                "expiringTokens",
                "The account's live tokens that expire within `within` "
                "(personal access token only)",
                _ok(200, "ExpiringList", "Soonest first"),
                _READ,
                params=account,
                query=(
                    {
                        "name": "within",
                        "in": "query",
                        "required": False,
                        "description": "Seconds (`3600`), or a number with a "
                        "unit s, m, h, d or w (`7d`); at most ten years. "
                        "Default `7d`.",
                        "schema": {
                            "type": "string",
                            "pattern": "^[0-9]{1,12}[smhdw]?$",
                            "default": "7d",
                        },
                    },
                ),
            )
        },
        "/troops/{troop_id}/audit": {
            "get": _op(
                "troopAudit",
                "The troop's audit log, oldest first",
                _ok(200, "AuditLog", "The events"),
                _READ,
                params=troop,
            )
        },
        "/troops/{troop_id}/audit/check": {
            "get": _op(
                "checkTroopAudit",
                "Check the troop's hash chain",
                _ok(200, "AuditCheck", "The verdict"),
                _READ,
                params=troop,
            )
        },
        "/accounts/{account_id}/audit": {
            "get": _op(
                "accountAudit",
                "The account's own log (personal token events; PAT only)",
                _ok(200, "AuditLog", "The events"),
                _READ,
                params=account,
            )
        },
        "/accounts/{account_id}/audit/check": {
            "get": _op(
                "checkAccountAudit",
                "Check the account log's hash chain (PAT only)",
                _ok(200, "AuditCheck", "The verdict"),
                _READ,
                params=account,
            )
        },
        "/introspect": {
            "post": {
                "operationId": "introspect",
                "summary": "RFC 7662 token introspection",
                "description": "The caller authenticates with the account's "
                "personal access token or a token with MANAGE on the whole of "
                "a troop. Dead, unknown and other accounts' values: "
                '`{"active": false}`.',
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": _ref("IntrospectionRequest")
                        }
                    },
                },
                "responses": {
                    **_ok(200, "Introspection", "The token's state"),
                    **_problems(400, 401, 403, 413, 415, 422, 503),
                },
            }
        },
        "/secret-scanning": {
            "post": {
                "operationId": "reportLeaks",
                "summary": "GitHub secret-scanning partner reports",
                "description": "Signed by GitHub (ECDSA P-256 SHA-256 over the "
                "raw body; `Github-Public-Key-Identifier` names one of the keys "
                "the host configured, `Github-Public-Key-Signature` is the "
                "base64 DER signature). Each live value reported is revoked "
                "through report_leak. Unsigned or badly signed: 401, nothing "
                "revoked.",
                "security": [],
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                    for name in (
                        "Github-Public-Key-Identifier",
                        "Github-Public-Key-Signature",
                    )
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("LeakReport")}},
                },
                "responses": {
                    **_ok(200, "LeakFeedback", "The feedback array"),
                    **_problems(400, 401, 413, 422, 503),
                },
            }
        },
    }


def document(server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document, its server at *server_url* (the mount point)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "troopauth tokens surface",
            "version": "1",
            "description": "Issue, attach, detach, rotate and revoke troop access "
            "tokens; seats; audit logs; RFC 7662 introspection. Every error is "
            "an RFC 9457 problem (application/problem+json); every answer is "
            "Cache-Control: no-store.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal access token or a troop token "
                    "(cpt_pat_...).",
                }
            },
        },
    }


async def endpoint(request: Request) -> Response:
    """``GET /openapi.json``: the document, its server URL the mount point."""
    root = request.scope.get("root_path", "") or "/"
    return JSONResponse(document(root), headers={"Cache-Control": "no-store"})
