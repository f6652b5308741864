"""The app as a whole: the page's headers, failures inside, another store, and
what the package ships."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import troopauth.http
from troopauth import InvalidToken, Permission, SQLiteStore, TroopAuth
from troopauth.errors import StoreError
from troopauth.http import create_app

from ..helpers import make_account
from .conftest import World, bearer, checked_client

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (
    "templates/index.html",
    "static/app.js",
    "static/app.css",
    "static/favicon.svg",
)


class TestPage:
    """GET / and its static files."""

    def test_page_headers(self, world: World):
        """The page: HTML, no-store, a strict CSP without inline script, no cookie."""
        response = world.client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-store"
        csp = response.headers["content-security-policy"]
        assert "script-src 'self';" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "set-cookie" not in response.headers
        assert "<script>" not in response.text
        assert world.setup.pat.value not in response.text

    def test_page_can_be_left_out(self, world: World):
        """page=False serves the API without the page."""
        with checked_client(create_app(world.auth, page=False)) as client:
            assert client.get("/").status_code == 404
            assert client.get("/me", headers=world.pat).status_code == 200


class TestFailures:
    """Failures inside the app answer with a problem body that tells nothing."""

    def test_broken_hook_is_a_500_problem(self, world: World):
        """A hook returning something else than a Principal: 500, fixed detail."""
        app = create_app(world.auth, actor_hook=lambda _: "alice")
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/me")
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:troopauth:problem:internal-error"
        assert "alice" not in response.text

    def test_store_error_is_503(self, world: World, monkeypatch: pytest.MonkeyPatch):
        """A StoreError from the facade: 503 store-unavailable."""

        def broken(*_: object) -> None:
            raise StoreError("database is locked")

        monkeypatch.setattr(world.auth, "seats", broken)
        response = world.client.get(
            f"/accounts/{world.setup.account.id}/seats", headers=world.pat
        )
        assert response.status_code == 503
        assert "locked" not in response.text


def test_over_sqlite(tmp_path: Path):
    """Issue, rotate and revoke through the app over a SQLiteStore."""
    with SQLiteStore(tmp_path / "t.db") as store:
        auth = TroopAuth(store)
        setup = make_account(auth, seats=1)
        with checked_client(create_app(auth)) as client:
            issued = client.post(
                f"/troops/{setup.tid}/tokens",
                json={"grant": {"permissions": ["view"], "scope": "*"}},
                headers=bearer(setup.pat),
            ).json()
            full = client.post(
                f"/troops/{setup.tid}/tokens",
                json={"grant": {"permissions": ["view"], "scope": "*"}},
                headers=bearer(setup.pat),
            )
            assert full.status_code == 409
            rotated = client.post(
                f"/tokens/{issued['token_id']}/rotate", headers=bearer(setup.pat)
            ).json()
            with pytest.raises(InvalidToken):
                auth.authenticate(issued["value"])
            auth.verify(rotated["value"], setup.tid, Permission.VIEW)
            revoked = client.post(
                f"/tokens/{issued['token_id']}/revoke", headers=bearer(setup.pat)
            )
            assert revoked.status_code == 204
            assert auth.seats(setup.account.id).free == 1


class TestPackaging:
    """The templates and static files ship with the package."""

    def test_resources_are_package_data(self):
        """importlib.resources finds every template and static file."""
        files = importlib.resources.files(troopauth.http)
        for name in SHIPPED:
            assert (files / name).is_file(), name

    @pytest.mark.slow
    def test_wheel_holds_them(self, tmp_path: Path):
        """A wheel built from the tree holds the http package's data files."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "-w",
                str(tmp_path),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = tmp_path.glob("troopauth-*.whl")
        names = set(zipfile.ZipFile(wheel).namelist())
        for name in SHIPPED:
            assert f"troopauth/http/{name}" in names


def test_public_names():
    """troopauth.http re-exports its public names, each listed in __all__."""
    public = {n for n in vars(troopauth.http) if not n.startswith("_")}
    modules = {
        "app",
        "bodies",
        "openapi",
        "pages",
        "problems",
        "routes",
        "scanning",
        "server",
    }
    assert public - modules == set(troopauth.http.__all__)
    assert callable(troopauth.http.create_app)
    assert callable(troopauth.http.serve)
