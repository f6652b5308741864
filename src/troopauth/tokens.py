"""The token value format: ``cpt_pat_`` + 30 random base62 + 6 checksum base62.

Base62 here is the alphabet ``0-9A-Za-z`` (digit value 0 to 61 in that
order), most significant digit first, zero-padded to a fixed width. The
checksum is CRC-32 (``zlib.crc32``, the ISO-HDLC polynomial) of the 30 random
characters' ASCII bytes, written as 6 base62 digits. A value is 44 characters.
Secret scanners can re-implement :func:`has_valid_checksum` from this page.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from typing import TypeGuard

__all__ = [
    "PREFIX",
    "VALUE_LENGTH",
    "digest",
    "has_valid_checksum",
    "hint",
    "is_well_formed",
    "new_value",
]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIX = "cpt_pat_"
RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
VALUE_LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH  # 44
_RANDOM_SPACE = 62**RANDOM_LENGTH  # about 2**178.6
_DIGIT = {c: i for i, c in enumerate(ALPHABET)}


def base62(number: int, width: int) -> str:
    """*number* in base62, most significant digit first, zero-padded to *width*."""
    if number < 0 or number >= 62**width:
        raise ValueError("number does not fit the width")
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def checksum(random_part: str) -> str:
    """The 6-character base62 CRC-32 of *random_part*."""
    return base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def new_value() -> str:
    """A fresh token value: 30 characters of ``secrets`` randomness, uniformly
    drawn from 62**30 (about 178 bits), plus its checksum."""
    random_part = base62(secrets.randbelow(_RANDOM_SPACE), RANDOM_LENGTH)
    return PREFIX + random_part + checksum(random_part)


def is_well_formed(value: object) -> TypeGuard[str]:
    """Length, prefix and alphabet; cheap, no hashing."""
    return (
        isinstance(value, str)
        and len(value) == VALUE_LENGTH
        and value.startswith(PREFIX)
        and value.isascii()
        and value[len(PREFIX) :].isalnum()
    )


#: Every pair of base62 digits and its value: the checksum is read two
#: digits at a time (three dict lookups), not one by one.
_PAIRS = {
    a + b: i * 62 + j for i, a in enumerate(ALPHABET) for j, b in enumerate(ALPHABET)
}
_CHECK = len(PREFIX) + RANDOM_LENGTH  # where the checksum starts


def has_valid_checksum(value: object) -> bool:
    """Whether *value* is well formed and its checksum matches its random part."""
    if not is_well_formed(value):
        return False
    pairs = _PAIRS
    written = (
        pairs[value[_CHECK : _CHECK + 2]] * 3844 + pairs[value[_CHECK + 2 : _CHECK + 4]]
    ) * 3844 + pairs[value[_CHECK + 4 :]]
    return written == zlib.crc32(value[len(PREFIX) : _CHECK].encode("ascii"))


def digest(value: str) -> bytes:
    """What the store keeps: the SHA-256 digest of the whole value."""
    return hashlib.sha256(value.encode("ascii")).digest()


def hint(value: str) -> str:
    """A non-secret label for listings: ``cpt_pat_Ab…yz``."""
    return f"{PREFIX}{value[len(PREFIX) : len(PREFIX) + 2]}…{value[-2:]}"
