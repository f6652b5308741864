"""A `detect-secrets <https://github.com/Yelp/detect-secrets>`_ plugin for
troopauth token values.

:class:`TroopAuthTokenDetector` finds ``cpt_pat_`` followed by 36 base62
characters, not inside a longer run of letters, digits and ``_``, and reports
a match only if its checksum is right (:func:`troopauth.tokens.has_valid_checksum`):
a mistyped value, a placeholder or a random string of the same shape is not
reported. Enable it by handing this file to detect-secrets::

    PLUGIN="$(python -c 'import troopauth.scanners as m; print(m.__file__)')"
    detect-secrets scan --plugin "$PLUGIN"

detect-secrets is an optional extra: ``pip install 'troopauth[scanners]'``.
"""

from __future__ import annotations

import re
from collections.abc import Generator

from troopauth import tokens

try:
    from detect_secrets.plugins.base import RegexBasedDetector
except ImportError as exc:
    raise ImportError(
        "troopauth.scanners needs detect-secrets: pip install 'troopauth[scanners]'"
    ) from exc

__all__ = ["CANDIDATE", "TroopAuthTokenDetector"]

#: A candidate value: the prefix and 36 base62 characters, with no letter,
#: digit or ``_`` just before or just after (so never a slice of a longer run).
#: The same expression as the reference checker's in docs/token-format.md.
CANDIDATE = re.compile(
    r"(?<![0-9A-Za-z_])"
    + re.escape(tokens.PREFIX)
    + rf"[0-9A-Za-z]{{{tokens.VALUE_LENGTH - len(tokens.PREFIX)}}}"
    + r"(?![0-9A-Za-z_])"
)


class TroopAuthTokenDetector(RegexBasedDetector):
    """Finds troopauth token values whose checksum is right."""

    #: The type detect-secrets records in a baseline (changing it would
    #: orphan the entries of existing baselines).
    secret_type = "troopauth token"  # noqa: S105 (a label, not a password)

    denylist = (CANDIDATE,)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        """Each candidate in *string* whose checksum matches; others are dropped."""
        for match in super().analyze_string(string):
            if tokens.has_valid_checksum(match):
                yield match
