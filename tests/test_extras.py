"""Optional integrations and their extras: what a user without them is told.

Each integration that needs a third-party library names the extra that brings
it when that library is missing, in both install forms (a package index and a
checkout); the documentation's install lines name extras that exist.
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import troopauth

ROOT = Path(__file__).resolve().parent.parent

#: The extras pyproject.toml defines.
EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
        "optional-dependencies"
    ]
)

#: ``pip install 'troopauth[x]'`` (a package index) and ``'.[x]'`` (a checkout).
_INDEX_LINE = re.compile(r"pip install 'troopauth\[([a-z,]+)\]'")
_CHECKOUT_LINE = re.compile(r"pip install '\.\[([a-z,]+)\]'")


def fresh_import(monkeypatch: pytest.MonkeyPatch, module: str, *blocked: str) -> Any:
    """Import *module* anew with the top-level packages *blocked* unimportable.

    ``sys.modules[name] = None`` makes ``import name`` raise ImportError; the
    blocked packages' submodules and *module* itself are dropped from the
    cache, and all of it (and the package attribute) is restored afterwards.
    """
    for name in list(sys.modules):
        if name.split(".")[0] in blocked:
            monkeypatch.delitem(sys.modules, name)
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    attribute = module.rsplit(".", 1)[1]
    if hasattr(troopauth, attribute):
        monkeypatch.setattr(troopauth, attribute, getattr(troopauth, attribute))
    return importlib.import_module(module)


class TestMissingExtra:
    """Importing an integration without its extra names the extra to install."""

    @pytest.mark.parametrize(
        ("module", "blocked", "extra"),
        [
            ("troopauth.postgres", "psycopg", "postgres"),
            ("troopauth.postgres", "psycopg_pool", "postgres"),
            ("troopauth.mcp", "mcp", "mcp"),
            ("troopauth.fastapi", "fastapi", "fastapi"),
        ],
    )
    def test_import_error_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch, module: str, blocked: str, extra: str
    ) -> None:
        """ImportError says pip install 'troopauth[extra]' and the checkout form."""
        with pytest.raises(ImportError) as info:
            fresh_import(monkeypatch, module, blocked)
        message = str(info.value)
        assert f"pip install 'troopauth[{extra}]'" in message
        assert f"pip install '.[{extra}]'" in message
        assert module in message
        assert extra in EXTRAS
        assert (info.value.name or "").split(".")[0] == blocked  # what is missing
        assert isinstance(info.value.__cause__, ImportError)  # the original kept

    def test_asgi_and_wsgi_need_no_framework(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """troopauth.asgi and troopauth.wsgi import with no web framework at all."""
        frameworks = ("starlette", "fastapi", "flask", "werkzeug")
        asgi = fresh_import(monkeypatch, "troopauth.asgi", *frameworks)
        wsgi = fresh_import(monkeypatch, "troopauth.wsgi", *frameworks)
        assert callable(asgi.TroopAuthMiddleware)
        assert callable(wsgi.TroopAuthMiddleware)


def install_lines(path: Path) -> tuple[list[str], list[str]]:
    """The extras *path* installs from a package index, and from a checkout."""
    text = path.read_text("utf-8")
    index = [e for m in _INDEX_LINE.findall(text) for e in m.split(",")]
    checkout = [e for m in _CHECKOUT_LINE.findall(text) for e in m.split(",")]
    return index, checkout


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


class TestInstallLines:
    """The documentation's install lines for extras work in both places."""

    @pytest.mark.parametrize("path", DOC_PAGES, ids=lambda p: p.name)
    def test_extras_exist_and_the_checkout_form_is_shown(self, path: Path) -> None:
        """Every extra a page installs exists, in both the index and checkout form."""
        index, checkout = install_lines(path)
        assert set(index) | set(checkout) <= EXTRAS
        assert set(index) == set(checkout), path.name

    def test_each_integration_is_documented(self) -> None:
        """The postgres, mcp and fastapi extras each have an install line."""
        shown = {e for p in DOC_PAGES for e in install_lines(p)[0]}
        assert {"postgres", "mcp", "fastapi"} <= shown
