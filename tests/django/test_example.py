"""The example project (examples/django) runs, and docs/django.md shows it."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django"
PAGE = ROOT / "docs" / "django.md"

#: A ```py title="..."``` block of the page: its title and its body.
_BLOCK = re.compile(r'^```py title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    """The page's titled ``py`` blocks (the files of a project)."""
    return _BLOCK.findall(PAGE.read_text(encoding="utf-8"))


class TestThePage:
    """docs/django.md shows the example project's files as they are."""

    def test_blocks_are_the_example_files(self) -> None:
        """Each block titled shop/... is found verbatim in that example file,
        and every titled block is valid Python."""
        shown = blocks()
        assert {t.removesuffix(" (added)") for t, _ in shown} >= {
            "shop/settings.py",
            "shop/views.py",
            "shop/urls.py",
        }
        for title, body in shown:
            ast.parse(body)
            if title.startswith("shop/"):
                path = EXAMPLE / title.removesuffix(" (added)")
                assert body in path.read_text(encoding="utf-8"), title

    def test_the_walkthrough_is_under_40_lines(self) -> None:
        """From pip install to the protected view: under 40 lines of code."""
        text = PAGE.read_text(encoding="utf-8")
        section = text.split("## From `pip install` to a protected view", 1)[1]
        section = section.split("\n## ", 1)[0]
        fenced = re.findall(
            r"^```[^\n]*\n(.*?)^```$", section, re.MULTILINE | re.DOTALL
        )
        lines = [line for body in fenced for line in body.splitlines() if line.strip()]
        assert 20 < len(lines) < 40


def manage(env: dict[str, str], *words: str) -> str:
    """Run the example's manage.py; its stdout (a failure fails the test)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *words],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_the_example_project_runs(tmp_path: Path) -> None:
    """migrate, then manage.py troopauth makes an account, a troop, a PAT and
    a token; the DRF view answers 200 for its key, 403 for another key and
    401 without a token, with the RFC 6750 challenges."""
    env = {**os.environ, "SHOP_DB": str(tmp_path / "shop.sqlite3")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    manage(env, "migrate", "--verbosity", "0")
    account = json.loads(
        manage(env, "troopauth", "--json", "account", "create", "--seats", "2")
    )
    troop = json.loads(
        manage(env, "troopauth", "--json", "troop", "create", account["id"], "payments")
    )
    owner = tmp_path / "owner.token"
    owner.write_text(manage(env, "troopauth", "pat", "issue", account["id"]))
    ci = tmp_path / "ci.token"
    ci.write_text(
        manage(
            env, "troopauth", "token", "issue", troop["id"], "--permission", "edit",
            "--scope", "key:web", "--name", "ci", "--token-file", str(owner),
        )
    )  # fmt: skip
    script = f"""
import json
from django.test.utils import setup_test_environment
from django.test import Client
setup_test_environment()
value = open({str(ci)!r}).read().strip()
client = Client()
out = []
for key, header in (("web", True), ("db", True), ("web", False)):
    headers = {{"HTTP_AUTHORIZATION": "Bearer " + value}} if header else {{}}
    r = client.post("/troops/{troop["id"]}/keys/" + key + "/deploy", **headers)
    out.append([r.status_code, r.headers.get("WWW-Authenticate"), r.json()])
print(json.dumps(out))
"""
    answers = json.loads(manage(env, "shell", "--no-imports", "-c", script))
    value = ci.read_text().strip()
    assert answers[0][0] == 200
    assert answers[0][2]["deployed"] == "web"
    assert answers[1][:2] == [403, 'Bearer realm="shop", error="insufficient_scope"']
    assert answers[2][:2] == [401, 'Bearer realm="shop"']
    assert value not in json.dumps(answers)
