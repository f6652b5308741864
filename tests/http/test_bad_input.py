"""Bad input at the trust boundary: each gets its status and problem body,
nothing changes, nothing leaks."""

from __future__ import annotations

import json
import logging

import pytest

from ..helpers import snapshot
from .conftest import World

#: A valid issue body, left open for one more field.
_GRANT = b'{"grant": {"permissions": ["view"], "scope": "*"}'


def _state(world: World) -> dict[str, object]:
    return snapshot(world.auth, [world.setup], members=["alice"])


def _issue_raw(world: World, content: bytes, ctype: str = "application/json"):
    return world.client.post(
        f"/troops/{world.tid}/tokens",
        content=content,
        headers={**world.pat, "Content-Type": ctype},
    )


class TestBodies:
    """Malformed JSON, unknown fields, wrong types: 422 (or 413/415)."""

    @pytest.mark.parametrize(
        ("content", "words"),
        [
            (b"{", "not valid JSON"),
            (b"\xff\xfe", "not valid JSON"),
            (b"[]", "JSON object"),
            (b'"grant"', "JSON object"),
            (b'{"grant": NaN}', "not JSON"),
            (b'{"grant": {}, "grant": {}}', "twice"),
            (b'{"grant": {"permissions": ["view"], "scope": "*"}, "x": 1}', "unknown"),
            (b'{"name": "x"}', "grant is required"),
            (b'{"grant": []}', "grant must be an object"),
            (b'{"grant": {"permissions": "view", "scope": "*"}}', "array"),
            (b'{"grant": {"permissions": [], "scope": "*"}}', "non-empty"),
            (b'{"grant": {"permissions": [1], "scope": "*"}}', "string"),
            (b'{"grant": {"permissions": ["fly"], "scope": "*"}}', "unknown perm"),
            (b'{"grant": {"permissions": ["view"], "scope": 5}}', "scope must be"),
            (b'{"grant": {"permissions": ["view"]}}', "scope is required"),
            (b'{"grant": {"permissions": ["view"], "scope": "nope"}}', "scope"),
            (b'{"grant": {"permissions": ["view"], "scope": "*", "z": 0}}', "unknown"),
            (
                b'{"grant": {"permissions": ["view"], "scope": "*"}, "name": 7}',
                "name must be a string",
            ),
            (
                _GRANT + b', "expires_at": "tomorrow"}',
                "ISO 8601",
            ),
            (
                _GRANT + b', "expires_at": "2030-01-01T00:00:00"}',
                "UTC offset",
            ),
            (
                _GRANT + b', "expires_at": "2000-01-01T00:00:00+00:00"}',
                "future",
            ),
            (b"[" * 100_000, "not valid JSON"),
        ],
    )
    def test_invalid_body_is_422(self, world: World, content: bytes, words: str):
        """Each malformed issue body: 422 invalid-input naming the fault; no change."""
        before = _state(world)
        response = _issue_raw(world, content)
        assert response.status_code == 422, response.text
        assert response.json()["type"] == "urn:troopauth:problem:invalid-input"
        assert words in response.json()["detail"]
        assert _state(world) == before

    def test_wrong_media_type_is_415(self, world: World):
        """A JSON body sent as a form: 415, no change."""
        before = _state(world)
        response = _issue_raw(world, b"grant=x", "application/x-www-form-urlencoded")
        assert response.status_code == 415
        assert _state(world) == before

    def test_body_cap_by_length(self, world: World):
        """A body over the cap (declared length): 413, no change."""
        before = _state(world)
        response = _issue_raw(world, b" " * (256 * 1024 + 1))
        assert response.status_code == 413
        assert _state(world) == before

    def test_body_cap_while_streaming(self, world: World):
        """A chunked body (no Content-Length) over the cap: 413 while reading."""

        def chunks():
            for _ in range(300):
                yield b" " * 1024

        before = _state(world)
        response = world.client.post(
            f"/troops/{world.tid}/tokens",
            content=chunks(),
            headers={**world.pat, "Content-Type": "application/json"},
        )
        assert response.status_code == 413
        assert _state(world) == before

    def test_unexpected_body_on_rotate(self, world: World):
        """Rotate takes no fields: a body with one is 422 and nothing rotates."""
        token = world.issue()
        before = snapshot(world.auth, [world.setup], [token["value"]])
        response = world.client.post(
            f"/tokens/{token['token_id']}/rotate",
            json={"overlap": 5},
            headers=world.pat,
        )
        assert response.status_code == 422
        assert snapshot(world.auth, [world.setup], [token["value"]]) == before

    def test_value_in_a_body_field_is_not_echoed(self, world: World):
        """A token value pasted into a scope or a field name is redacted."""
        value = world.setup.pat.value
        for body in (
            {"grant": {"permissions": ["view"], "scope": value}},
            {"grant": {"permissions": [value], "scope": "*"}},
            {value: 1},
        ):
            response = world.client.post(
                f"/troops/{world.tid}/tokens", json=body, headers=world.pat
            )
            assert response.status_code == 422
            assert value not in response.text
            assert value[8:] not in response.text


class TestValuesInURLs:
    """A token value in a path or query string: 400, refused before any route."""

    @pytest.mark.parametrize(
        "where",
        [
            "/me?access_token={v}",
            "/troops/{v}/tokens",
            "/tokens/{v}/revoke",
            "/me?x=%63pt%5Fpat%5F{rest}",
            "/nowhere/{v}",
        ],
    )
    def test_refused_and_not_echoed(
        self, world: World, where: str, caplog: pytest.LogCaptureFixture
    ):
        """400 token-in-url, whatever the method; the value is in no log or body."""
        value = world.setup.pat.value
        url = where.format(v=value, rest=value[8:])
        before = _state(world)
        with caplog.at_level(logging.DEBUG):
            for method in ("GET", "POST", "DELETE"):
                response = world.client.request(method, url, headers=world.pat)
                assert response.status_code == 400
                assert response.json()["type"] == "urn:troopauth:problem:token-in-url"
                assert value[8:] not in response.text
        # The app's own records (the test client logs the URL it sent).
        ours = [r.getMessage() for r in caplog.records if r.name.startswith("troop")]
        assert all(value[8:] not in line for line in ours)
        assert _state(world) == before


class TestProblemShape:
    """One body shape for every error."""

    def test_unknown_path_and_method(self, world: World):
        """Unknown path: 404 problem; wrong method: 405 problem."""
        missing = world.client.get("/nowhere", headers=world.pat)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        wrong = world.client.patch("/me", headers=world.pat)
        assert wrong.status_code == 405
        assert set(json.loads(wrong.text)) == {"type", "title", "status", "detail"}
