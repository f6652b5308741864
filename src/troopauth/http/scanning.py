"""``POST /secret-scanning``: leaked values reported in GitHub's secret-scanning
partner format.

GitHub posts a JSON array of matches, ``[{"token", "type", "url", "source"}]``,
signed with ECDSA P-256 over SHA-256: ``Github-Public-Key-Identifier`` names
the key, ``Github-Public-Key-Signature`` holds the base64 DER signature of the
raw body. The host configures the public keys it trusts (GitHub publishes them
at ``https://api.github.com/meta/public_keys/secret_scanning``); a request
that is unsigned, signed with an unknown key or badly signed is 401 and is not
even parsed. A well-signed body is checked whole before anything is revoked
(422 otherwise); then each reported value goes to ``report_leak``, and the
answer is GitHub's feedback array, ``[{"token_hash", "token_type", "label"}]``:
``token_hash`` the SHA-256 (hex) of the value, ``label`` ``true_positive`` when
a live token of this server was revoked, else ``false_positive``. Neither a
value nor anything about its token is logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..auth import TroopAuth
from ..errors import InvalidArgument, StoreError, TroopAuthError
from . import bodies
from .problems import HTTPProblem

__all__ = [
    "MAX_MATCHES",
    "MAX_SCAN_BODY",
    "ScanningKeys",
    "SecretScanning",
    "load_keys",
]

#: What a host passes: key identifier -> PEM public key (text or bytes) or a
#: loaded P-256 public key.
ScanningKeys: TypeAlias = Mapping[str, "str | bytes | ec.EllipticCurvePublicKey"]

#: The most matches one report may hold (a larger one is 422, nothing revoked).
MAX_MATCHES: Final = 5000
#: The body cap of a report (GitHub batches matches): 1 MiB.
MAX_SCAN_BODY: Final = 1024 * 1024

_KEY_ID: Final = re.compile(r"[0-9A-Za-z_.:-]{1,200}")
_TYPE: Final = re.compile(r"[0-9A-Za-z_.:-]{1,100}")
_CHALLENGE: Final = {"WWW-Authenticate": 'Signature realm="secret-scanning"'}


def load_keys(keys: ScanningKeys | None) -> dict[str, ec.EllipticCurvePublicKey]:
    """The host's keys, loaded and checked: each a P-256 public key."""
    if keys is None:
        return {}
    if not isinstance(keys, Mapping):
        raise InvalidArgument("secret_scanning_keys must map key ids to PEM keys")
    loaded: dict[str, ec.EllipticCurvePublicKey] = {}
    for key_id, given in keys.items():
        if not _KEY_ID.fullmatch(str(key_id)):
            raise InvalidArgument("a secret-scanning key id must be a short word")
        key: object = given
        pem = given.encode("ascii", "replace") if isinstance(given, str) else given
        if isinstance(pem, bytes):
            try:
                key = load_pem_public_key(pem)
            except ValueError:
                raise InvalidArgument(
                    f"secret-scanning key {key_id!r} is not a PEM public key"
                ) from None
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise InvalidArgument(
                f"secret-scanning key {key_id!r} must be an ECDSA P-256 public key"
            )
        loaded[key_id] = key
    return loaded


def _refused(detail: str) -> HTTPProblem:
    return HTTPProblem("invalid-signature", detail, headers=_CHALLENGE)


def _one_header(request: Request, name: str) -> str:
    values = request.headers.getlist(name)
    if len(values) != 1 or not values[0]:
        raise _refused(f"the request needs one {name} header")
    return values[0]


def _invalid(detail: str) -> HTTPProblem:
    return HTTPProblem("invalid-input", detail)


def _matches(raw: bytes) -> list[tuple[str, str]]:
    """The (value, type) of every match of a well-signed body, or 422."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _invalid("the body is not valid JSON") from None
    if not isinstance(value, list) or not value:
        raise _invalid("the body must be a non-empty JSON array of matches")
    if len(value) > MAX_MATCHES:
        raise _invalid(f"a report holds at most {MAX_MATCHES} matches")
    found: list[tuple[str, str]] = []
    for index, match in enumerate(value):
        if not isinstance(match, dict):
            raise _invalid(f"match {index} must be an object")
        token, kind = match.get("token"), match.get("type")
        if not isinstance(token, str) or not token:
            raise _invalid(f"match {index}: token must be a non-empty string")
        if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
            raise _invalid(f"match {index}: type must be a short name")
        for field in ("url", "source"):
            if not isinstance(match.get(field, ""), str):
                raise _invalid(f"match {index}: {field} must be a string")
        found.append((token, kind))
    return found


class SecretScanning:
    """The endpoint, closed over one facade and the host's keys."""

    def __init__(self, auth: TroopAuth, keys: ScanningKeys | None) -> None:
        self.auth = auth
        self.keys = load_keys(keys)

    def _verify(self, request: Request, raw: bytes) -> None:
        key_id = _one_header(request, "github-public-key-identifier")
        signature = _one_header(request, "github-public-key-signature")
        key = self.keys.get(key_id)
        if key is None:
            raise _refused("unknown key identifier")
        try:
            der = base64.b64decode(signature, validate=True)
            key.verify(der, raw, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise _refused("the signature does not match the body") from None

    def _report(self, matches: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Report every value (each distinct one once); the feedback array."""
        revoked: dict[str, bool] = {}
        for token, _ in matches:
            if token in revoked:
                continue
            try:
                revoked[token] = self.auth.report_leak(token)
            except InvalidArgument:
                revoked[token] = False
        return [
            {
                "token_hash": hashlib.sha256(token.encode("utf-8")).hexdigest(),
                "token_type": kind,
                "label": "true_positive" if revoked[token] else "false_positive",
            }
            for token, kind in matches
        ]

    async def endpoint(self, request: Request) -> Response:
        """``POST /secret-scanning``: verify, parse whole, then report."""
        raw = await bodies.read_body(request, MAX_SCAN_BODY)
        self._verify(request, raw)
        matches = _matches(raw)
        try:
            feedback = await run_in_threadpool(self._report, matches)
        except StoreError:
            raise HTTPProblem(
                "store-unavailable", "the store could not answer"
            ) from None
        except TroopAuthError:  # pragma: no cover - report_leak raises no other
            raise HTTPProblem("bad-request", "the report was refused") from None
        return JSONResponse(feedback, headers={"Cache-Control": "no-store"})
