"""POST /secret-scanning: GitHub's partner format, signed with a generated
P-256 key; leaked values revoked, the feedback array answered, and anything
unsigned, badly signed or malformed refused with nothing revoked.

Every answer here also passes the OpenAPI checks of the ``client`` fixture.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from troopauth import (
    AuditAction,
    Grant,
    InvalidArgument,
    InvalidToken,
    MemoryStore,
    TroopAuth,
)
from troopauth.http import create_app
from troopauth.http.scanning import MAX_MATCHES

from ..helpers import Setup, make_account, snapshot
from .conftest import checked_client

KEY_ID = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a"


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Scanner:
    """The app with one trusted key, its private half, and an account."""

    auth: TroopAuth
    setup: Setup
    key: ec.EllipticCurvePrivateKey
    client: TestClient

    def sign(self, body: bytes, key: ec.EllipticCurvePrivateKey | None = None) -> str:
        """The base64 DER signature of *body* (by the trusted key by default)."""
        der = (key or self.key).sign(body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(der).decode()

    def post(
        self,
        body: bytes,
        headers: dict[str, str] | None = None,
        key_id: str = KEY_ID,
    ) -> Any:
        """POST *body* signed by the trusted key, or with *headers* given."""
        if headers is None:
            headers = {
                "Github-Public-Key-Identifier": key_id,
                "Github-Public-Key-Signature": self.sign(body),
            }
        return self.client.post(
            "/secret-scanning",
            content=body,
            headers={"Content-Type": "application/json", **headers},
        )

    def report(self, *tokens: str, kind: str = "troopauth_token") -> Any:
        """A signed report of *tokens* in GitHub's format."""
        matches = [
            {
                "token": t,
                "type": kind,
                "url": "https://github.com/octo/repo/blob/abc/config.yml",
                "source": "content",
            }
            for t in tokens
        ]
        return self.post(json.dumps(matches).encode())


@pytest.fixture
def scanner(clock) -> Iterator[Scanner]:
    """An account (audit log kept) with two troops, and the app trusting one
    generated P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    with MemoryStore() as store:
        auth = TroopAuth(store, clock=clock)
        setup = make_account(auth, seats=4, troops=2)
        app = create_app(auth, secret_scanning_keys={KEY_ID: _pem(key).decode()})
        with checked_client(app) as client:
            yield Scanner(auth, setup, key, client)


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class TestReports:
    """Well-signed reports."""

    def test_a_live_value_is_revoked_and_labelled_true(self, scanner):
        """A live value reported: revoked at once, seat freed, the leak audited
        in its troops, and the feedback says true_positive by hash only."""
        auth, setup = scanner.auth, scanner.setup
        token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
        auth.attach(setup.owner, token.token_id, setup.troops[1].id, Grant.parse("use"))
        response = scanner.report(token.value)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == [
            {
                "token_hash": _sha(token.value),
                "token_type": "troopauth_token",
                "label": "true_positive",
            }
        ]
        assert token.value not in response.text
        with pytest.raises(InvalidToken):
            auth.authenticate(token.value)
        assert auth.seats(setup.account.id).used == 0
        for troop in setup.troops:
            assert auth.audit_log(troop.id)[-1].action is AuditAction.LEAK_REPORT

    def test_dead_unknown_and_malformed_values_are_false_and_change_nothing(
        self, scanner
    ):
        """A revoked value, a well-shaped unknown one, junk and an overlong
        string: false_positive each, in order, and nothing changes."""
        auth, setup = scanner.auth, scanner.setup
        dead = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
        auth.revoke(setup.owner, dead.token_id)
        live = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
        fresh = make_account(auth)
        unknown = fresh.pat.value
        auth.issue_personal_token(fresh.account.id)  # the old PAT is now dead
        values = [dead.value, unknown, "cpt_pat_nope", "x" * 5000]
        before = snapshot(auth, [setup], [live.value])
        response = scanner.report(*values)
        assert [f["label"] for f in response.json()] == ["false_positive"] * 4
        assert [f["token_hash"] for f in response.json()] == [_sha(v) for v in values]
        assert snapshot(auth, [setup], [live.value]) == before

    def test_the_same_value_twice_is_true_twice(self, scanner):
        """A value matched twice in one report is labelled true both times."""
        auth, setup = scanner.auth, scanner.setup
        token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
        labels = [f["label"] for f in scanner.report(token.value, token.value).json()]
        assert labels == ["true_positive", "true_positive"]

    def test_the_personal_token_is_revoked_too(self, scanner):
        """A leaked PAT is revoked; the account then has none."""
        response = scanner.report(scanner.setup.pat.value)
        assert response.json()[0]["label"] == "true_positive"
        with pytest.raises(InvalidToken):
            scanner.auth.authenticate(scanner.setup.pat.value)

    def test_extra_fields_are_tolerated(self, scanner):
        """GitHub may add fields to a match: they are ignored; url and source
        may be left out."""
        token = scanner.auth.issue_token(
            scanner.setup.owner, scanner.setup.tid, Grant.parse("view")
        )
        body = json.dumps([{"token": token.value, "type": "t", "new": 1}]).encode()
        assert scanner.post(body).json()[0]["label"] == "true_positive"

    def test_no_value_is_logged(self, scanner, caplog):
        """Reporting a live value logs nothing that holds it."""
        caplog.set_level(logging.DEBUG)
        token = scanner.auth.issue_token(
            scanner.setup.owner, scanner.setup.tid, Grant.parse("view")
        )
        scanner.report(token.value, "cpt_pat_other")
        assert token.value not in caplog.text
        assert token.value[8:] not in caplog.text


class TestRefused:
    """Unsigned, badly signed and malformed reports revoke nothing."""

    @pytest.fixture
    def live(self, scanner):
        """A live value, its report body, and the state before."""
        auth, setup = scanner.auth, scanner.setup
        token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
        body = json.dumps([{"token": token.value, "type": "t"}]).encode()
        return token, body, snapshot(auth, [setup], [token.value])

    def _unchanged(self, scanner, live, response, status, kind):
        token, _, before = live
        assert response.status_code == status, response.text
        assert response.json()["type"] == f"urn:troopauth:problem:{kind}"
        assert token.value not in response.text
        assert snapshot(scanner.auth, [scanner.setup], [token.value]) == before

    def test_unsigned(self, scanner, live):
        """No signature headers: 401 invalid-signature with a challenge."""
        response = scanner.post(live[1], headers={})
        self._unchanged(scanner, live, response, 401, "invalid-signature")
        assert "www-authenticate" in response.headers

    def test_unknown_key_id(self, scanner, live):
        """A signature by the right key under an unknown key id: 401."""
        response = scanner.post(live[1], key_id="f" * 64)
        self._unchanged(scanner, live, response, 401, "invalid-signature")

    def test_signed_by_another_key(self, scanner, live):
        """A signature by an untrusted key under the trusted id: 401."""
        other = ec.generate_private_key(ec.SECP256R1())
        headers = {
            "Github-Public-Key-Identifier": KEY_ID,
            "Github-Public-Key-Signature": scanner.sign(live[1], other),
        }
        response = scanner.post(live[1], headers=headers)
        self._unchanged(scanner, live, response, 401, "invalid-signature")

    def test_tampered_body(self, scanner, live):
        """A signature of another body (one space added): 401."""
        headers = {
            "Github-Public-Key-Identifier": KEY_ID,
            "Github-Public-Key-Signature": scanner.sign(live[1] + b" "),
        }
        response = scanner.post(live[1], headers=headers)
        self._unchanged(scanner, live, response, 401, "invalid-signature")

    @pytest.mark.parametrize("signature", ["", "not base64!", "QUJD", "=" * 8])
    def test_garbage_signature(self, scanner, live, signature):
        """An empty, non-base64 or non-DER signature: 401."""
        headers = {
            "Github-Public-Key-Identifier": KEY_ID,
            "Github-Public-Key-Signature": signature,
        }
        response = scanner.post(live[1], headers=headers)
        self._unchanged(scanner, live, response, 401, "invalid-signature")

    def test_no_keys_configured(self, live, scanner):
        """An app given no keys refuses even a well-signed report: 401."""
        app = create_app(scanner.auth)
        with checked_client(app) as client:
            response = client.post(
                "/secret-scanning",
                content=live[1],
                headers={
                    "Github-Public-Key-Identifier": KEY_ID,
                    "Github-Public-Key-Signature": scanner.sign(live[1]),
                },
            )
        self._unchanged(scanner, live, response, 401, "invalid-signature")

    @pytest.mark.parametrize(
        "prefix",
        [
            b"",
            b"{",
            b'{"token": "x"}',
            b"[]",
            b'[{"type": "t"}]',
            b'[{"token": 5, "type": "t"}]',
            b'[{"token": "x", "type": "a b"}]',
            b'[{"token": "x", "type": "t", "url": 5}]',
            b'["x"]',
            b"\xff",
        ],
    )
    def test_well_signed_but_malformed_is_422(self, scanner, live, prefix):
        """A well-signed body that is not a valid report, even one that also
        holds the live value: 422, nothing revoked."""
        token = live[0]
        bad = prefix
        if prefix.startswith(b"[{"):
            match = json.dumps({"token": token.value, "type": "t"}).encode()
            bad = prefix[:-1] + b"," + match + b"]"
        response = scanner.post(bad)
        self._unchanged(scanner, live, response, 422, "invalid-input")

    def test_too_many_matches_is_422(self, scanner, live):
        """More matches than the cap, the live value first: 422, none revoked."""
        token = live[0]
        matches = [{"token": token.value, "type": "t"}] + [
            {"token": "x", "type": "t"}
        ] * MAX_MATCHES
        response = scanner.post(json.dumps(matches).encode())
        self._unchanged(scanner, live, response, 422, "invalid-input")

    def test_too_large_is_413(self, scanner, live):
        """A body past the cap (1 MiB): 413 before the signature is checked."""
        response = scanner.post(b"[" + b" " * (1024 * 1024) + b"]")
        self._unchanged(scanner, live, response, 413, "body-too-large")


class TestKeys:
    """create_app(secret_scanning_keys=...) checks the keys it is given."""

    def test_accepts_pem_text_bytes_and_loaded_keys(self):
        """PEM as text, as bytes, and a loaded P-256 public key are accepted."""
        key = ec.generate_private_key(ec.SECP256R1())
        with MemoryStore() as store:
            auth = TroopAuth(store)
            for given in (_pem(key), _pem(key).decode(), key.public_key()):
                create_app(auth, secret_scanning_keys={KEY_ID: given})

    @pytest.mark.parametrize("kind", ["junk", "p384", "rsa", "private", "id"])
    def test_refuses_other_keys(self, kind):
        """Not PEM, another curve, RSA, a private key, a bad key id:
        InvalidArgument at create_app."""
        p256 = ec.generate_private_key(ec.SECP256R1())
        keys: dict[str, Any] = {
            "junk": {KEY_ID: "-----BEGIN PUBLIC KEY-----\nAAAA\n"},
            "p384": {KEY_ID: _pem(ec.generate_private_key(ec.SECP384R1()))},
            "rsa": {
                KEY_ID: rsa.generate_private_key(65537, 2048)
                .public_key()
                .public_bytes(
                    serialization.Encoding.PEM,
                    serialization.PublicFormat.SubjectPublicKeyInfo,
                )
            },
            "private": {KEY_ID: p256},
            "id": {"a b": _pem(p256)},
        }
        with MemoryStore() as store, pytest.raises(InvalidArgument):
            create_app(TroopAuth(store), secret_scanning_keys=keys[kind])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["token", "type", "url", "x"]), inner)
    ),
    max_leaves=10,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=100))
def test_any_signed_body(scanner, body):
    """Any well-signed body: 200 with one feedback entry per match, or 422;
    never a 500, and no live value dies."""
    auth, setup = scanner.auth, scanner.setup
    token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
    response = scanner.post(body)
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 200:
        assert len(response.json()) == len(json.loads(body))
    auth.authenticate(token.value)
    auth.revoke(setup.owner, token.token_id)


#: What a header value can hold (printable ASCII, no space at either end).
_HEADER_TEXT = st.characters(min_codepoint=33, max_codepoint=126)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=100),
    key_id=st.text(_HEADER_TEXT, max_size=70),
    signature=st.text(_HEADER_TEXT, max_size=120),
)
def test_any_unsigned_request(scanner, body, key_id, signature):
    """Any body under any header values not signed by the trusted key: 401,
    nothing revoked."""
    auth, setup = scanner.auth, scanner.setup
    token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
    matches = json.dumps([{"token": token.value, "type": "t"}]).encode()
    headers = {
        "Github-Public-Key-Identifier": key_id,
        "Github-Public-Key-Signature": signature,
    }
    for content in (body, matches):
        response = scanner.post(content, headers=headers)
        assert response.status_code == 401, response.text
    auth.authenticate(token.value)
    auth.revoke(setup.owner, token.token_id)
