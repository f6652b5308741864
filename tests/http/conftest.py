"""Fixtures of the troopauth.http tests: an account with troops, its PAT, and a
client whose every answer is checked against the OpenAPI document.

Every response the ``client`` gets is checked by an httpx event hook: a
problem body against the ``Problem`` schema, any answer of a documented
operation against the status codes and schemas the document gives it, and
every JSON API answer for ``Cache-Control: no-store``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from troopauth import IssuedToken, MemoryStore, Principal, TroopAuth
from troopauth.http import create_app
from troopauth.http.openapi import document

from ..conftest import FrozenClock
from ..helpers import Setup, make_account

DOC = document("/")
_COMPONENTS = DOC["components"]


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


_OPERATIONS = [(_pattern(path), path, ops) for path, ops in DOC["paths"].items()]


def schema_errors(instance: Any, schema: dict[str, Any]) -> list[str]:
    """The JSON Schema errors of *instance* against *schema* (refs resolved in
    the OpenAPI document's components)."""
    validator = Draft202012Validator({**schema, "components": _COMPONENTS})
    errors = validator.iter_errors(instance)
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def check_response(response: httpx.Response, prefix: str = "") -> None:
    """Fail unless *response* is what the OpenAPI document says it may be."""
    response.read()
    path = response.request.url.path
    if prefix and path.startswith(prefix):
        path = path[len(prefix) :] or "/"
    ctype = response.headers.get("content-type", "").split(";")[0]
    if ctype == "application/problem+json":
        body = response.json()
        assert set(body) == {"type", "title", "status", "detail"}, body
        assert body["status"] == response.status_code
        assert not schema_errors(body, {"$ref": "#/components/schemas/Problem"})
        assert response.headers.get("cache-control") == "no-store"
    for pattern, _template, ops in _OPERATIONS:
        if not pattern.match(path):
            continue
        op = ops.get(response.request.method.lower())
        if op is None:
            continue
        documented = op["responses"].get(str(response.status_code))
        assert documented is not None, (
            f"{response.request.method} {path}: status {response.status_code} "
            "is not documented"
        )
        assert response.headers.get("cache-control") == "no-store"
        content = documented.get("content")
        if content is None:
            assert response.content == b""
        else:
            assert ctype in content, f"{ctype} not documented for {path}"
            errors = schema_errors(response.json(), content[ctype]["schema"])
            assert not errors, errors
        return


def checked_client(app: Any, prefix: str = "", **kwargs: Any) -> TestClient:
    """A TestClient whose every answer passes :func:`check_response`."""
    client = TestClient(app, **kwargs)
    client.event_hooks = {"response": [lambda r: check_response(r, prefix)]}
    return client


@dataclass
class World:
    """An account with two troops, its PAT and a checked client of the app."""

    auth: TroopAuth
    clock: FrozenClock
    setup: Setup
    client: TestClient
    others: list[Setup] = field(default_factory=list)

    @property
    def tid(self) -> str:
        """The first troop's id."""
        return self.setup.tid

    @property
    def tid2(self) -> str:
        """The second troop's id."""
        return self.setup.troops[1].id

    @property
    def owner(self) -> Principal:
        """The PAT's principal."""
        return self.setup.owner

    @property
    def pat(self) -> dict[str, str]:
        """Headers carrying the PAT."""
        return bearer(self.setup.pat)

    def issue(
        self, permissions: tuple[str, ...] = ("view",), scope: str = "*", **body: Any
    ) -> dict[str, Any]:
        """Issue a token over HTTP with the PAT in the first troop; its answer."""
        response = self.client.post(
            f"/troops/{self.tid}/tokens",
            json={"grant": {"permissions": list(permissions), "scope": scope}, **body},
            headers=self.pat,
        )
        assert response.status_code == 201, response.text
        return response.json()


def bearer(token: IssuedToken | str) -> dict[str, str]:
    """``Authorization: Bearer`` headers for a token or a value."""
    value = token if isinstance(token, str) else token.value
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def world(clock: FrozenClock) -> Iterator[World]:
    """A MemoryStore account (3 seats, audit log kept) with two troops."""
    with MemoryStore() as store:
        auth = TroopAuth(store, clock=clock)
        setup = make_account(auth, seats=3, troops=2)
        with checked_client(create_app(auth)) as client:
            yield World(auth, clock, setup, client)


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Live:
    """A uvicorn server in a thread."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
