"""Scopes: which keys of a troop a grant reaches."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

import attrs

from .errors import InvalidArgument

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_SCOPE_TEXT",
    "Scope",
    "check_key_name",
    "is_key_name",
]

MAX_KEY_LENGTH = 256
#: The longest a scope's canonical text may be: one limit at every door
#: (building, parsing, issuing, attaching, adding members), so whatever a
#: store accepted it can read back.
MAX_SCOPE_TEXT = 65_536
#: A prefix leaves room for one more character: a 256-character "prefix"
#: would cover only itself, an exact key spelled another way.
_MAX_PREFIX = MAX_KEY_LENGTH - 1
_FORBIDDEN = frozenset(",*")


def _key_problem(name: object, max_len: int = MAX_KEY_LENGTH) -> str | None:
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name) > max_len:
        return f"must be at most {max_len} characters"
    for ch in name:
        if ch in _FORBIDDEN or ch.isspace() or not ch.isprintable():
            return f"must not hold {ch!r}"
    return None


def _check_name(name: object, what: str, max_len: int) -> None:
    problem = _key_problem(name, max_len)
    if problem is not None:
        shown = repr(name[:40]) if isinstance(name, str) else type(name).__name__
        raise InvalidArgument(f"{what} {shown} {problem}")


def check_key_name(name: object) -> str:
    """Return *name* if it is a valid key name, else raise `InvalidArgument`.

    Key names are 1 to 256 printable characters with no comma, whitespace or
    ``*``.
    """
    _check_name(name, "key name", MAX_KEY_LENGTH)
    return name  # type: ignore[return-value]  # _check_name proved it is a str


def is_key_name(name: str) -> bool:
    """Cheap validity test (no exception, no allocation); the verify path
    inlines the same test."""
    return (
        0 < len(name) <= MAX_KEY_LENGTH
        and name.isprintable()
        and " " not in name
        and "," not in name
        and "*" not in name
    )


def _minimal(
    keys: frozenset[str], prefixes: frozenset[str]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """Drop every pattern that another pattern already covers: O(n log n).

    Returns the kept keys and the kept prefixes, sorted. In sorted order the
    strings that start with a prefix ``q`` form one run right after ``q``, so
    a prefix is covered exactly when it starts with the last prefix kept; and
    since the kept prefixes are then prefix-free, the only one that can cover
    a key is the greatest kept prefix not above it (one bisection).
    """
    kept: list[str] = []
    for p in sorted(prefixes):
        if not (kept and p.startswith(kept[-1])):
            kept.append(p)
    return frozenset(k for k in keys if not _under(k, kept)), tuple(kept)


def _under(name: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    """Whether *name* starts with one of the sorted, prefix-free *prefixes*."""
    i = bisect_right(prefixes, name)
    return i > 0 and name.startswith(prefixes[i - 1])


def _text_length(keys: frozenset[str], prefixes: tuple[str, ...]) -> int:
    """The length of the canonical text ``key:k,...,key:p*`` without building it."""
    count = len(keys) + len(prefixes)
    return (
        sum(map(len, keys))
        + sum(map(len, prefixes))
        + 4 * len(keys)
        + 5 * len(prefixes)
        + max(count - 1, 0)
    )


def _names(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@attrs.frozen(repr=False)
class Scope:
    """Which keys of a troop a grant reaches: the whole troop, or a set of
    exact key names and key-name prefixes.

    Build one with :meth:`parse` (``"*"``, ``"key:deploy,key:prod/*"``),
    :meth:`whole_troop` or :meth:`of`. Scopes are kept minimal (a pattern that
    another covers is dropped), so two scopes are equal exactly when they cover
    the same keys, and ``Scope.parse(str(s)) == s`` always. Only the
    whole-troop scope covers troop-level targets (``key=None``).
    """

    whole: bool = False
    keys: frozenset[str] = attrs.field(factory=frozenset, converter=_names)
    prefixes: frozenset[str] = attrs.field(factory=frozenset, converter=_names)
    # Precomputed for the verify path: ``key.startswith(tuple)`` is one C call.
    _prefix_tuple: tuple[str, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for k in self.keys:
            check_key_name(k)
        for p in self.prefixes:
            _check_name(p, "key prefix", _MAX_PREFIX)
        if self.whole:
            keys: frozenset[str] = frozenset()
            prefixes: frozenset[str] = frozenset()
            ordered: tuple[str, ...] = ()
        else:
            keys, ordered = _minimal(self.keys, self.prefixes)
            if not keys and not ordered:
                raise InvalidArgument(
                    "a scope covers something: '*' or at least one key pattern"
                )
            if _text_length(keys, ordered) > MAX_SCOPE_TEXT:
                raise InvalidArgument(
                    f"a scope's text is at most {MAX_SCOPE_TEXT:,} characters"
                )
            prefixes = frozenset(ordered)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "prefixes", prefixes)
        object.__setattr__(self, "_prefix_tuple", ordered)

    # -- construction ----------------------------------------------------

    @classmethod
    def whole_troop(cls) -> Scope:
        """The scope that covers the whole troop, troop-level targets included."""
        return _WHOLE

    @classmethod
    def of(cls, keys: Iterable[str] = (), prefixes: Iterable[str] = ()) -> Scope:
        """Exact key names and key-name prefixes (``"prod/"`` covers ``prod/*``)."""
        return cls(whole=False, keys=frozenset(keys), prefixes=frozenset(prefixes))

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Read the text form: comma-separated ``*``, ``key:NAME``, ``key:PREFIX*``.

        Whitespace around a pattern is ignored. Anything else raises
        `InvalidArgument`, naming the first bad pattern.
        """
        if not isinstance(text, str):
            raise InvalidArgument(
                f"scope text must be a string, not {type(text).__name__}"
            )
        if len(text) > MAX_SCOPE_TEXT:
            raise InvalidArgument(
                f"scope text is longer than {MAX_SCOPE_TEXT:,} characters"
            )
        whole = False
        keys: set[str] = set()
        prefixes: set[str] = set()
        for raw in text.split(","):
            pattern = raw.strip()
            if pattern == "*":
                whole = True
                continue
            if not pattern.startswith("key:"):
                raise InvalidArgument(
                    f"scope pattern {pattern[:40]!r} is not '*', 'key:NAME' "
                    "or 'key:PREFIX*'"
                )
            name = pattern[4:]
            if name.endswith("*"):
                prefix = name[:-1]
                problem = _key_problem(prefix, _MAX_PREFIX)
                if problem is not None:
                    raise InvalidArgument(
                        f"scope pattern {pattern[:40]!r}: the prefix {problem}"
                    )
                prefixes.add(prefix)
            else:
                problem = _key_problem(name)
                if problem is not None:
                    raise InvalidArgument(
                        f"scope pattern {pattern[:40]!r}: the key name {problem}"
                    )
                keys.add(name)
        if whole:
            return _WHOLE
        return cls(whole=False, keys=frozenset(keys), prefixes=frozenset(prefixes))

    # -- queries ---------------------------------------------------------

    def covers(self, key: str | None) -> bool:
        """Whether this scope reaches *key* (``None``: a troop-level target)."""
        if self.whole:
            return key is None or is_key_name(key)
        if key is None:
            return False
        return key in self.keys or (
            key.startswith(self._prefix_tuple) and is_key_name(key)
        )

    def contains(self, other: Scope) -> bool:
        """Whether every key (and troop-level target) *other* covers, this covers."""
        if self.whole:
            return True
        if other.whole:
            return False
        mine, ptuple = self.keys, self._prefix_tuple
        return all(k in mine or _under(k, ptuple) for k in other.keys) and all(
            _under(p, ptuple) for p in other.prefixes
        )

    def __or__(self, other: Scope) -> Scope:
        """The union: what either scope covers."""
        if self.whole or other.whole:
            return _WHOLE
        return Scope(
            whole=False,
            keys=self.keys | other.keys,
            prefixes=self.prefixes | other.prefixes,
        )

    # -- text ------------------------------------------------------------

    def __str__(self) -> str:
        if self.whole:
            return "*"
        patterns = [f"key:{k}" for k in self.keys]
        patterns += [f"key:{p}*" for p in self.prefixes]
        return ",".join(sorted(patterns))

    def __repr__(self) -> str:
        return f"Scope.parse({str(self)!r})"


_WHOLE = Scope(whole=True)
