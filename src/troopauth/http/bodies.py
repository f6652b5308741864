"""What crosses the trust boundary: request bodies in, JSON shapes out.

Request bodies are read with a size cap, parsed strictly (no ``NaN``, no
duplicate keys, no unknown fields, no type coercion) and turned into troopauth
values; anything else is an ``invalid-input`` problem (422) naming the field.
The JSON shapes out are the ones the OpenAPI document describes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NoReturn

from starlette.requests import Request

from ..errors import TroopAuthError
from ..grant import Grant
from ..models import Account, AuditEvent, Principal, SeatPool, TokenInfo, Troop
from ..permission import Permission
from ..scope import Scope
from .problems import HTTPProblem

__all__ = [
    "GRANT_FIELDS",
    "ISSUE_FIELDS",
    "POLICY_FIELDS",
    "event_json",
    "grant_json",
    "json_object",
    "parse_capacity",
    "parse_grant",
    "parse_issue",
    "parse_limit",
    "parse_overlap",
    "parse_policy",
    "parse_within",
    "permission_words",
    "policy_json",
    "principal_json",
    "read_body",
    "seats_json",
    "token_json",
    "troop_json",
]

#: The longest rotation overlap the facade accepts (7 days), in seconds.
MAX_OVERLAP_SECONDS = 7 * 24 * 3600
#: The longest ``within`` of the expiring listing (ten years), in seconds.
MAX_WITHIN_SECONDS = 3650 * 24 * 3600
#: The fields of a policy change.
POLICY_FIELDS = frozenset({"max_token_lifetime_seconds", "require_expiry"})
#: The longest max_token_lifetime the API sets (a hundred years), in seconds.
MAX_LIFETIME_SECONDS = 100 * 365 * 24 * 3600
#: The largest seat pool the API sets.
MAX_SEATS = 1_000_000
_WITHIN = re.compile(r"([0-9]{1,12})([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

#: The fields of a grant object.
GRANT_FIELDS = frozenset({"permissions", "scope"})
#: The fields of an issue request.
ISSUE_FIELDS = frozenset({"grant", "name", "expires_at"})


def _invalid(detail: str) -> NoReturn:
    raise HTTPProblem("invalid-input", detail)


async def read_body(request: Request, max_body: int) -> bytes:
    """The request body, refused with 413 past *max_body* bytes (before and
    while reading it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPProblem("bad-request", "Content-Length is not a number")
        if int(declared) > max_body:
            raise HTTPProblem(
                "body-too-large", f"the body must be at most {max_body} bytes"
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise HTTPProblem(
                "body-too-large", f"the body must be at most {max_body} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _no_constant(name: str) -> NoReturn:
    _invalid(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            _invalid("an object names a field twice")
        result[key] = value
    return result


def json_object(
    body: bytes, content_type: str | None, allowed: frozenset[str]
) -> dict[str, Any]:
    """Parse *body* as one JSON object holding only *allowed* fields.

    An empty body is an empty object. Another media type is 415.
    """
    if not body.strip():
        return {}
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HTTPProblem("unsupported-media-type", "the body must be application/json")
    try:
        value = json.loads(
            body.decode("utf-8"),
            parse_constant=_no_constant,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        _invalid("the body is not valid JSON")
    if not isinstance(value, dict):
        _invalid("the body must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        expected = ", ".join(sorted(allowed)) or "none"
        _invalid(f"unknown field {unknown[0][:40]!r}; expected some of: {expected}")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        _invalid(f"{where} must be a string, not {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def parse_grant(value: object, where: str = "grant") -> Grant:
    """A grant from ``{"permissions": ["view", "edit"], "scope": "key:prod/*"}``."""
    if not isinstance(value, dict):
        _invalid(f"{where} must be an object, not {_json_type(value)}")
    unknown = sorted(set(value) - GRANT_FIELDS)
    if unknown:
        _invalid(f"unknown field {where}.{unknown[0][:40]!r}")
    for field in sorted(GRANT_FIELDS):
        if field not in value:
            _invalid(f"{where}.{field} is required")
    words = value["permissions"]
    if not isinstance(words, list) or not words:
        _invalid(f"{where}.permissions must be a non-empty array of names")
    permission = Permission(0)
    for word in words:
        name = _text(word, f"{where}.permissions[]")
        try:
            permission |= Permission.parse(name)
        except TroopAuthError as exc:
            _invalid(f"{where}.permissions: {exc}")
    scope_text = _text(value["scope"], f"{where}.scope")
    try:
        return Grant(permission, Scope.parse(scope_text))
    except TroopAuthError as exc:
        _invalid(f"{where}.scope: {exc}")


def parse_issue(value: dict[str, Any]) -> tuple[Grant, str, datetime | None]:
    """The grant, name and expiry of an issue request."""
    if "grant" not in value:
        _invalid("grant is required")
    grant = parse_grant(value["grant"])
    name = _text(value.get("name", ""), "name")
    expires = value.get("expires_at")
    if expires is None:
        return grant, name, None
    text = _text(expires, "expires_at")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        _invalid("expires_at must be an ISO 8601 date and time")
    if when.tzinfo is None or when.utcoffset() is None:
        _invalid("expires_at must carry its UTC offset")
    return grant, name, when


def _whole(value: object, where: str, low: int, high: int) -> int:
    if type(value) is not int:
        _invalid(f"{where} must be a whole number, not {_json_type(value)}")
    if not low <= value <= high:
        _invalid(f"{where} must be between {low} and {high}")
    return value


def parse_overlap(value: dict[str, Any]) -> timedelta:
    """The overlap of a rotate request (``{"overlap_seconds": N}``, optional)."""
    seconds = value.get("overlap_seconds", 0)
    return timedelta(seconds=_whole(seconds, "overlap_seconds", 0, MAX_OVERLAP_SECONDS))


def parse_capacity(value: dict[str, Any]) -> int:
    """The capacity of a set-seats request (``{"capacity": N}``)."""
    if "capacity" not in value:
        _invalid("capacity is required")
    return _whole(value["capacity"], "capacity", 0, MAX_SEATS)


def parse_policy(value: dict[str, Any]) -> dict[str, Any]:
    """The keywords of ``set_policy`` a policy change gives (those left out
    keep their value): ``max_token_lifetime_seconds`` (a whole number, or
    ``null`` for no maximum) and ``require_expiry`` (a boolean)."""
    keywords: dict[str, Any] = {}
    if "max_token_lifetime_seconds" in value:
        seconds = value["max_token_lifetime_seconds"]
        keywords["max_token_lifetime"] = (
            None
            if seconds is None
            else timedelta(
                seconds=_whole(
                    seconds, "max_token_lifetime_seconds", 1, MAX_LIFETIME_SECONDS
                )
            )
        )
    if "require_expiry" in value:
        flag = value["require_expiry"]
        if not isinstance(flag, bool):
            _invalid(f"require_expiry must be a boolean, not {_json_type(flag)}")
        keywords["require_expiry"] = flag
    return keywords


def parse_limit(text: str | None, largest: int) -> int | None:
    """The ``limit`` query field: ``None``, or a whole number 1..*largest*."""
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        _invalid("limit must be a whole number")
    return _whole(int(text), "limit", 1, largest)


def parse_within(text: str) -> timedelta:
    """The ``within`` query field: seconds (``3600``) or a number with a unit
    (``90s``, ``30m``, ``12h``, ``7d``, ``2w``), at most ten years."""
    match = _WITHIN.fullmatch(text) if text.isascii() else None
    if match is None:
        _invalid("within must be seconds or a number with s, m, h, d or w (7d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    return timedelta(seconds=_whole(seconds, "within", 0, MAX_WITHIN_SECONDS))


# -- out ----------------------------------------------------------------------


def permission_words(permission: Permission) -> list[str]:
    """``Permission.VIEW | Permission.EDIT`` -> ``["view", "edit"]``."""
    return [name.lower() for name in permission.names()]


def grant_json(grant: Grant) -> dict[str, Any]:
    """A grant in the API's shape."""
    return {
        "permissions": permission_words(grant.permission),
        "scope": str(grant.scope),
    }


def _when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def token_json(info: TokenInfo) -> dict[str, Any]:
    """A token as listings show it: never its value."""
    grants: Mapping[str, Grant] = info.grants
    return {
        "token_id": info.token_id,
        "name": info.name,
        "hint": info.hint,
        "kind": info.kind.value,
        "grants": {troop: grant_json(g) for troop, g in sorted(grants.items())},
        "created_at": _when(info.created_at),
        "expires_at": _when(info.expires_at),
        "last_used_at": _when(info.last_used_at),
        "revoked": info.revoked,
    }


def troop_json(troop: Troop) -> dict[str, Any]:
    """A troop."""
    return {
        "troop_id": troop.id,
        "name": troop.name,
        "created_at": _when(troop.created_at),
    }


def policy_json(account: Account) -> dict[str, Any]:
    """An account's token policy."""
    lifetime = account.max_token_lifetime
    return {
        "max_token_lifetime_seconds": None
        if lifetime is None
        else int(lifetime.total_seconds()),
        "require_expiry": account.require_expiry,
    }


def seats_json(pool: SeatPool) -> dict[str, int]:
    """A seat pool."""
    return {"capacity": pool.capacity, "used": pool.used, "free": pool.free}


def event_json(event: AuditEvent) -> dict[str, Any]:
    """One audit event (it never holds a secret)."""
    return {
        "seq": event.seq,
        "at": _when(event.at),
        "troop_id": event.troop_id,
        "action": event.action.value,
        "actor": event.actor,
        "token_id": event.token_id,
        "member_id": event.member_id,
        "grant": None if event.grant is None else grant_json(event.grant),
        "hash": event.hash,
    }


def principal_json(principal: Principal) -> dict[str, Any]:
    """Who the caller is."""
    return {
        "kind": principal.kind.value,
        "account_id": principal.account_id,
        "token_id": principal.token_id,
        "member_id": principal.member_id,
    }
