"""The four permissions."""

from __future__ import annotations

import enum

from .errors import InvalidArgument

__all__ = ["Permission"]


class Permission(enum.Flag):
    """What a grant allows. Exactly four independent flags: none implies another.

    Combine them with ``|``: ``Permission.VIEW | Permission.USE``. A check that
    asks for several flags needs all of them; an empty set is always denied.
    """

    VIEW = 1
    USE = 2
    EDIT = 4
    MANAGE = 8

    # Members and combinations are singletons (the enum caches every value it
    # has made), and Enum equality is identity, so identity hashing agrees with
    # ``==`` and costs a quarter of Enum's name hash on the verify path.
    __hash__ = object.__hash__

    @classmethod
    def parse(cls, text: str) -> Permission:
        """Read ``"view,use"`` (names, any case, comma or ``|`` separated)."""
        if not isinstance(text, str):
            raise InvalidArgument("permission text must be a string")
        result = cls(0)
        parts = [p.strip() for p in text.replace("|", ",").split(",")]
        for part in parts:
            if not part:
                continue
            # ASCII only: Unicode case mapping turns a dotless i (U+0131) into I.
            member = cls.__members__.get(part.upper()) if part.isascii() else None
            if member is None:
                names = ", ".join(m.lower() for m in cls.__members__)
                raise InvalidArgument(
                    f"unknown permission {part[:40]!r}; expected some of: {names}"
                )
            result |= member
        if not result:
            raise InvalidArgument("a permission set names at least one permission")
        return result

    def names(self) -> tuple[str, ...]:
        """The member names in this set, in declaration order."""
        return tuple(m.name for m in type(self) if m in self and m.name is not None)


ALL_PERMISSIONS = Permission.VIEW | Permission.USE | Permission.EDIT | Permission.MANAGE
