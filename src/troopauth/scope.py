"""Scopes: which keys of a troop a grant reaches."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .errors import InvalidArgument

__all__ = ["MAX_KEY_LENGTH", "Scope", "check_key_name", "is_key_name"]

MAX_KEY_LENGTH = 256
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
) -> tuple[frozenset[str], frozenset[str]]:
    """Drop every pattern that another pattern already covers."""
    kept_prefixes = frozenset(
        p for p in prefixes if not any(q != p and p.startswith(q) for q in prefixes)
    )
    ptuple = tuple(kept_prefixes)
    kept_keys = frozenset(k for k in keys if not k.startswith(ptuple))
    return kept_keys, kept_prefixes


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
        else:
            keys, prefixes = _minimal(self.keys, self.prefixes)
            if not keys and not prefixes:
                raise InvalidArgument(
                    "a scope covers something: '*' or at least one key pattern"
                )
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "prefixes", prefixes)
        object.__setattr__(self, "_prefix_tuple", tuple(sorted(prefixes)))

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
        if len(text) > 64 * 1024:
            raise InvalidArgument("scope text is longer than 64 KiB")
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
        ptuple = self._prefix_tuple
        return all(k in self.keys or k.startswith(ptuple) for k in other.keys) and all(
            p.startswith(ptuple) for p in other.prefixes
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
