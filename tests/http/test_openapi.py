"""The OpenAPI 3.1 document: valid, complete, and served relative to the mount."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from openapi_spec_validator import validate
from starlette.routing import Route

from troopauth import Permission
from troopauth.http import create_app
from troopauth.http.openapi import document
from troopauth.http.problems import PROBLEM_TYPES

from .conftest import DOC, World, bearer, check_response, checked_client


class TestDocument:
    """The document itself."""

    def test_validates_as_openapi_3_1(self):
        """openapi-spec-validator accepts the document (3.1 schema and refs)."""
        assert DOC["openapi"] == "3.1.0"
        validate(DOC)

    def test_every_route_is_documented_and_back(self, world: World):
        """The app's API routes and the document's operations are the same set."""
        app = create_app(world.auth, page=False)
        routes = {
            (method.lower(), route.path)
            for route in app.routes
            if isinstance(route, Route) and route.path != "/openapi.json"
            for method in route.methods or ()
            if method != "HEAD"
        }
        documented = {
            (method, path) for path, ops in DOC["paths"].items() for method in ops
        }
        assert routes == documented

    def test_operation_ids_are_unique(self):
        """Every operation has its own operationId (client generators need it)."""
        ids = [
            op["operationId"] for ops in DOC["paths"].values() for op in ops.values()
        ]
        assert len(ids) == len(set(ids))

    def test_problem_types_are_listed(self):
        """The Problem schema lists every problem type the app can send."""
        listed = DOC["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
        assert sorted(listed) == sorted(p.uri for p in PROBLEM_TYPES.values())

    def test_checker_catches_an_undocumented_answer(self):
        """The response checker the client fixture uses fails on what the
        document does not allow (so the checks elsewhere can fail)."""
        request = httpx.Request("GET", "http://testserver/me")
        teapot = httpx.Response(418, json={}, request=request)
        with pytest.raises(AssertionError, match="not documented"):
            check_response(teapot)
        wrong = httpx.Response(
            200,
            json={"kind": "robot", "account_id": "a"},
            headers={"Cache-Control": "no-store"},
            request=request,
        )
        with pytest.raises(AssertionError, match="kind"):
            check_response(wrong)


class TestServed:
    """GET /openapi.json, standalone and mounted."""

    def test_standalone(self, world: World):
        """Standalone, the server URL is / and the document is the same."""
        served = world.client.get("/openapi.json").json()
        assert served == document("/")
        validate(served)

    def test_mounted_under_fastapi(self, world: World):
        """Mounted at /tokens-admin in a FastAPI app: the server URL is the mount
        point, and the API answers there, with the host's own routes untouched."""
        host = FastAPI()

        @host.get("/health")
        def health() -> dict[str, str]:
            return {"ok": "yes"}

        host.mount("/tokens-admin", create_app(world.auth))
        with checked_client(host, prefix="/tokens-admin") as client:
            served = client.get("/tokens-admin/openapi.json").json()
            assert served["servers"] == [{"url": "/tokens-admin"}]
            validate(served)
            issued = client.post(
                f"/tokens-admin/troops/{world.tid}/tokens",
                json={"grant": {"permissions": ["use"], "scope": "key:deploy"}},
                headers=world.pat,
            )
            assert issued.status_code == 201
            world.auth.verify(
                issued.json()["value"], world.tid, Permission.USE, key="deploy"
            )
            listed = client.get(
                f"/tokens-admin/troops/{world.tid}/tokens", headers=world.pat
            )
            assert len(listed.json()["tokens"]) == 1
            page = client.get("/tokens-admin/")
            assert 'href="/tokens-admin/static/app.css"' in page.text
            assert 'data-api="/tokens-admin"' in page.text
            assert client.get("/tokens-admin/static/app.js").status_code == 200
            assert client.get("/health").json() == {"ok": "yes"}
            refused = client.get("/tokens-admin/me", headers=bearer("cpt_pat_x"))
            assert refused.status_code == 401
