"""The exception tree: every error troopauth raises is a :class:`TroopAuthError`.

Messages are fixed or built from identifiers only; no exception ever carries
or echoes a token value (the verify path raises one opaque
:class:`InvalidToken` whatever the reason).
"""

from __future__ import annotations

import re

__all__ = [
    "AccessDenied",
    "InvalidArgument",
    "InvalidToken",
    "NotFound",
    "SeatsExhausted",
    "StoreError",
    "TroopAuthError",
]


_VALUE = re.compile(r"cpt_pat_[0-9A-Za-z]*")


def redact(text: str) -> str:
    """*text* with anything shaped like a token value replaced.

    Messages name the ids and names a caller passed; a caller who pasted a
    token value where an id or a scope belongs must not see it echoed.
    """
    if "cpt_pat_" not in text:  # the common case: one substring search
        return text
    return _VALUE.sub("cpt_pat_<redacted>", text)


class TroopAuthError(Exception):
    """Root of every error troopauth raises on purpose.

    Its message never holds a token value: string arguments pass through
    :func:`redact`.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class InvalidToken(TroopAuthError):  # noqa: N818 (public name fixed by the design)
    """A value is not a live token.

    Malformed, unknown, rotated away, revoked, expired or replaced: one class
    and one message for every reason, so that a caller cannot learn which.
    """

    def __init__(self) -> None:
        super().__init__("invalid token")


class AccessDenied(TroopAuthError):  # noqa: N818 (public name fixed by the design)
    """A real principal asked for something its grants do not cover."""


class SeatsExhausted(TroopAuthError):  # noqa: N818 (public name fixed by the design)
    """The account's seat pool has no free seat for another troop token."""


class NotFound(TroopAuthError):  # noqa: N818 (public name fixed by the design)
    """No such account, troop, token or member (in the caller's account)."""


class InvalidArgument(TroopAuthError, ValueError):  # noqa: N818 (named like the design's InvalidToken)
    """An argument is malformed: a scope text, a key or member name, a naive
    datetime, a negative seat count. Nothing was changed."""


class StoreError(TroopAuthError):
    """The storage backend failed (locked too long, unreadable, too new).

    The change, if any, was not committed.
    """
