"""Grants: a permission set plus a scope."""

from __future__ import annotations

import attrs

from .errors import InvalidArgument
from .permission import ALL_PERMISSIONS, Permission
from .scope import Scope

__all__ = ["Grant", "interned"]


def _subsets(bits: int) -> frozenset[Permission]:
    """Every non-empty permission set contained in the set *bits*."""
    return frozenset(
        Permission(v) for v in range(1, ALL_PERMISSIONS.value + 1) if v & ~bits == 0
    )


#: One shared frozenset per permission set (16 in all), not one per grant.
_ALLOWED = tuple(_subsets(bits) for bits in range(ALL_PERMISSIONS.value + 1))


@attrs.frozen(repr=False)
class Grant:
    """A permission set plus a scope: what a member or token may do in one troop.

    ``Grant(Permission.EDIT, Scope.parse("key:deploy"))`` allows ``EDIT`` on
    the key ``deploy`` and nothing else.
    """

    permission: Permission
    scope: Scope
    # Precomputed for the verify path: every permission set this grant allows,
    # so a check is one set membership test (no Flag arithmetic per call).
    _allowed: frozenset[Permission] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.permission, Permission):
            raise InvalidArgument(
                f"a grant's permission must be a Permission, "
                f"not {type(self.permission).__name__}"
            )
        if not self.permission:
            raise InvalidArgument("a grant holds at least one permission")
        if not isinstance(self.scope, Scope):
            raise InvalidArgument(
                f"a grant's scope must be a Scope, not {type(self.scope).__name__}"
            )
        object.__setattr__(self, "_allowed", _ALLOWED[self.permission.value])

    @classmethod
    def full(cls) -> Grant:
        """Every permission on the whole troop (what the personal token holds)."""
        return _FULL

    @classmethod
    def parse(cls, permission: str, scope: str = "*") -> Grant:
        """Build a grant from text: ``Grant.parse("view,use", "key:prod/*")``."""
        return cls(Permission.parse(permission), Scope.parse(scope))

    def allows(self, permission: Permission, key: str | None = None) -> bool:
        """Whether this grant allows all of *permission* on *key*.

        ``key=None`` is a troop-level target, which only the whole-troop scope
        covers. An empty permission set is never allowed.
        """
        return permission in self._allowed and self.scope.covers(key)

    def contains(self, other: Grant) -> bool:
        """Whether *other* allows nothing that this grant does not."""
        return (other.permission & ~self.permission).value == 0 and self.scope.contains(
            other.scope
        )

    def __str__(self) -> str:
        perms = ",".join(n.lower() for n in self.permission.names()) or "none"
        return f"{perms} on {self.scope}"

    def __repr__(self) -> str:
        perms = " | ".join(f"Permission.{n}" for n in self.permission.names())
        return f"Grant({perms or 'Permission(0)'}, {self.scope!r})"


_FULL = Grant(ALL_PERMISSIONS, Scope.whole_troop())

_INTERNED: dict[Grant, Grant] = {_FULL: _FULL}
_MAX_INTERNED = 4096


def interned(grant: Grant) -> Grant:
    """The one shared object equal to *grant* (grants are values).

    Tokens that hold equal grants then share one object, so a store of a
    million tokens keeps a handful of grants, and the verify path finds them
    in the CPU cache. The table is bounded: past its size it starts afresh
    (sharing is an optimisation, never a rule).
    """
    found = _INTERNED.get(grant)
    if found is None:
        if len(_INTERNED) >= _MAX_INTERNED:
            _INTERNED.clear()
        _INTERNED[grant] = found = grant
    return found
