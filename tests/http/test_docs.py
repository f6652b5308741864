"""docs/http.md is true: its curl examples and its Node script run.

Every ``sh`` block of docs/http.md that calls curl runs, in order, with real
curl against the app served by uvicorn; the ``js`` block runs under Node as
the service the page describes. (Its ``python`` blocks run in
tests/test_docs.py, with every page's.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from troopauth import Grant, InvalidToken, MemoryStore, Permission, TroopAuth
from troopauth.http import create_app

from ..helpers import Setup, make_account
from .conftest import Live

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "http.md"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list[str]:
    """The bodies of the page's blocks fenced as *kind*, in order."""
    text = PAGE.read_text(encoding="utf-8")
    return [m.group(2) for m in _FENCE.finditer(text) if m.group(1).strip() == kind]


CURLS = [b for b in blocks("sh") if re.search(r"^curl ", b, re.MULTILINE)]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(
                f"{name} is not installed; CI=true: the docs' examples must run"
            )
        pytest.skip(f"{name} is not installed")
    return path


#: The scanner key the docs' secret-scanning example signs with.
SCANNER = ec.generate_private_key(ec.SECP256R1())
KEY_ID = "f9525bf080f75b3506ca1ead061add62b8633a346606dc5fe544e29231c6ee0d"


@pytest.fixture
def served() -> Iterator[tuple[str, TroopAuth, Setup]]:
    """The app over a MemoryStore, on a free port, trusting SCANNER."""
    public = SCANNER.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with MemoryStore() as store:
        auth = TroopAuth(store)
        setup = make_account(auth, seats=4, troops=2)
        app = create_app(
            auth, seats_writable=True, secret_scanning_keys={KEY_ID: public}
        )
        with Live(app) as base:
            yield base, auth, setup


def test_page_has_the_examples():
    """The page shows a curl example for every operation of the API."""
    assert len(CURLS) >= 20
    for needle in (
        '"$BASE/accounts/$ACCOUNT/troops"',
        "tokens?limit=",
        '"$BASE/tokens/$TOKEN_ID"',
        '"$BASE/troops/$TROOP/members"',
        '-X PUT "$BASE/accounts/$ACCOUNT/seats"',
        "/expiring?within=",
        "overlap_seconds",
        '-X POST "$BASE/secret-scanning"',
        '-X PATCH "$BASE/accounts/$ACCOUNT/policy"',
        '-X POST "$BASE/troops/$TROOP/tokens"',
        "-X PUT",
        "-X DELETE",
        "/rotate",
        "/revoke",
        "/introspect",
        "/seats",
        "/audit/check",
    ):
        assert any(needle in block for block in CURLS), needle


def test_curl_examples_run(served, tmp_path):
    """Each curl example succeeds, in order, and does what the page says."""
    curl = _tool("curl")
    bash = _tool("bash")
    _tool("openssl")
    base, auth, setup = served
    token = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"), name="ci")
    probe = auth.issue_token(setup.owner, setup.tid, Grant.parse("use"))
    leaked = auth.issue_token(setup.owner, setup.tid, Grant.parse("view"))
    scanner_key = tmp_path / "scanner.pem"
    scanner_key.write_bytes(
        SCANNER.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = {
        "PATH": str(Path(curl).parent) + os.pathsep + os.environ.get("PATH", ""),
        "BASE": base,
        "PAT": setup.pat.value,
        "TROOP": setup.tid,
        "OTHER_TROOP": setup.troops[1].id,
        "ACCOUNT": setup.account.id,
        "TOKEN_ID": token.token_id,
        "VALUE": probe.value,
        "LEAKED": leaked.value,
        "SCANNER_KEY": str(scanner_key),
        "KEY_ID": KEY_ID,
    }
    outputs = []
    for block in CURLS:
        done = subprocess.run(
            [bash, "-euo", "pipefail", "-c", block],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (block, done.stderr, done.stdout)
        outputs.append(json.loads(done.stdout) if done.stdout.strip() else None)
    issued = outputs[0]
    auth.verify(issued["value"], setup.tid, Permission.EDIT, key="prod/x")
    feedback = next(o for o in outputs if isinstance(o, list))
    assert feedback == [
        {
            "token_hash": hashlib.sha256(leaked.value.encode()).hexdigest(),
            "token_type": "troopauth_token",
            "label": "true_positive",
        }
    ]
    with pytest.raises(InvalidToken):
        auth.authenticate(leaked.value)
    outputs = [o for o in outputs if isinstance(o, dict)]
    introspected = next(o for o in outputs if "active" in o)
    assert introspected["sub"] == probe.token_id
    troops = next(o for o in outputs if o and "troops" in o)
    assert {t["troop_id"] for t in troops["troops"]} == set(setup.troop_ids())
    page = next(o for o in outputs if o and "next" in o and len(o["tokens"]) == 2)
    assert page["next"] == page["tokens"][-1]["token_id"]
    one = next(o for o in outputs if o and o.get("token_id") == token.token_id)
    assert one["name"] == "ci"
    members = next(o for o in outputs if o and "members" in o)
    assert [m["member_id"] for m in members["members"]] == ["alice"]
    assert {"capacity": 10, "used": 4, "free": 6} in outputs
    policy = {"max_token_lifetime_seconds": 90 * 86400, "require_expiry": False}
    assert policy in outputs
    assert next(o for o in outputs if o and "within_seconds" in o) == {
        "within_seconds": 7 * 86400,
        "tokens": [],
    }
    with pytest.raises(InvalidToken):
        auth.authenticate(token.value)  # rotated by the example, then revoked
    assert token.token_id not in {t.token_id for t in auth.tokens(setup.tid)}
    assert auth.seats(setup.account.id).used == 2  # probe and the issued one


@pytest.mark.parametrize(
    ("grant", "key", "revoked", "allowed"),
    [
        ("use", "deploy", False, True),
        ("use", "other", False, False),
        ("view", "deploy", False, False),
        ("use", "deploy", True, False),
    ],
)
def test_node_service_script(served, tmp_path, grant, key, revoked, allowed):
    """The Node script of the page allows exactly what the grant covers, for a
    live token, through /introspect."""
    node = _tool("node")
    base, auth, setup = served
    service = auth.issue_token(setup.owner, setup.tid, Grant.parse("manage"))
    token = auth.issue_token(
        setup.owner, setup.tid, Grant.parse(grant, "key:deploy,key:prod/*")
    )
    if revoked:
        auth.revoke(setup.owner, token.token_id)
    (script,) = blocks("js")
    path = tmp_path / "check.mjs"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run(
        [node, str(path)],
        env={
            "PATH": os.environ.get("PATH", ""),
            "TROOPAUTH_URL": base,
            "SERVICE_TOKEN": service.value,
            "TOKEN": token.value,
            "TROOP": setup.tid,
            "KEY": key,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["allowed"] is allowed
    assert answer["token"] == (None if revoked else token.token_id)
