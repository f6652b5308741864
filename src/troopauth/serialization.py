"""(De)serialisation of every public type through ``cattrs``.

:func:`make_converter` builds a fresh converter (no mutable global); the
module-level :data:`converter` is one such converter, built once, for
troopauth's own use. The JSON-ready shapes are stable:

* ``Permission`` -> a list of lower-case names, ``["view", "edit"]`` (the one
  spelling of every output: the CLI and the HTTP API too; any case is read);
* ``Scope`` -> its canonical text, ``"key:deploy,key:prod/*"``;
* ``Grant`` -> ``{"permission": ["view"], "scope": "..."}``;
* ``datetime`` -> ISO 8601 text with its UTC offset;
* ``timedelta`` (an account's ``max_token_lifetime``) -> a number of seconds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import cattrs

from .errors import InvalidArgument
from .grant import Grant
from .permission import Permission
from .scope import Scope

__all__ = ["converter", "make_converter"]


def _unstructure_permission(p: Permission) -> list[str]:
    return [name.lower() for name in p.names()]


def _structure_permission(value: Any, _: type) -> Permission:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument("a permission is a list of names")
    if not value:
        return Permission(0)
    return Permission.parse(",".join(value))


def _strict(kind: type) -> Any:
    """A structure hook that refuses other types instead of coercing them
    (cattrs' default turns ``"no"`` into ``True`` and ``1.7`` into ``1``)."""

    def structure(value: Any, _: type) -> Any:
        if type(value) is not kind:
            raise InvalidArgument(
                f"expected {kind.__name__}, got {type(value).__name__}"
            )
        return value

    return structure


def _structure_datetime(value: Any, _: type) -> datetime:
    if not isinstance(value, str):
        raise InvalidArgument("a time is ISO 8601 text")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument("a time is ISO 8601 text") from None
    if parsed.tzinfo is None:
        raise InvalidArgument("a time carries its UTC offset")
    return parsed


def _unstructure_timedelta(value: timedelta) -> int | float:
    seconds = value.total_seconds()
    return int(seconds) if seconds.is_integer() else seconds


def _structure_timedelta(value: Any, _: type) -> timedelta:
    if type(value) not in (int, float):
        raise InvalidArgument("a duration is a number of seconds")
    try:
        return timedelta(seconds=value)
    except (OverflowError, ValueError):
        raise InvalidArgument("a duration out of range") from None


def _structure_grant(value: Any, _: type) -> Grant:
    if not isinstance(value, Mapping):
        raise InvalidArgument("a grant is a mapping with permission and scope")
    scope = value.get("scope")
    if not isinstance(scope, str):
        raise InvalidArgument("a grant's scope is its text form")
    return Grant(
        _structure_permission(value.get("permission"), Permission),
        Scope.parse(scope),
    )


def _structure_str_enum(value: Any, kind: type[enum.StrEnum]) -> enum.StrEnum:
    if type(value) is not str:
        raise InvalidArgument(f"expected text, got {type(value).__name__}")
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgument(f"not a {kind.__name__}: {value[:40]!r}") from None


def make_converter() -> cattrs.Converter:
    """A new converter that (un)structures every public troopauth type."""
    conv = cattrs.Converter()
    conv.register_unstructure_hook(Permission, _unstructure_permission)
    conv.register_structure_hook(Permission, _structure_permission)
    conv.register_unstructure_hook(Scope, str)
    conv.register_structure_hook(Scope, lambda v, _: Scope.parse(v))
    conv.register_unstructure_hook(
        Grant,
        lambda g: {
            "permission": _unstructure_permission(g.permission),
            "scope": str(g.scope),
        },
    )
    conv.register_structure_hook(Grant, _structure_grant)
    for kind in (str, int, bool):
        conv.register_structure_hook(kind, _strict(kind))
    # StrEnum comes before str in the MRO, so it needs its own hooks.
    conv.register_structure_hook(enum.StrEnum, _structure_str_enum)
    conv.register_unstructure_hook(enum.StrEnum, lambda e: e.value)
    conv.register_unstructure_hook(datetime, datetime.isoformat)
    conv.register_unstructure_hook(timedelta, _unstructure_timedelta)
    conv.register_structure_hook(timedelta, _structure_timedelta)
    conv.register_structure_hook(datetime, _structure_datetime)
    return conv


#: A converter built by :func:`make_converter`, used inside troopauth.
converter = make_converter()
