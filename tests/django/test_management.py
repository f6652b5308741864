"""``manage.py troopauth``: the troopauth command line over DjangoStore."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from troopauth import InvalidToken, Permission
from troopauth.cli import ExitCode
from troopauth.django import get_auth

from .conftest import empty, migrated


def manage(*words: str) -> tuple[int, str, str]:
    """Run ``troopauth *words*`` through call_command: exit code, stdout,
    stderr."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("troopauth", words=list(words), stdout=out, stderr=err)
    except SystemExit as exc:
        code = int(exc.code or 0)
    else:
        code = 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def fresh() -> None:
    """Empty troopauth tables."""
    empty(migrated("default"))


@pytest.mark.usefixtures("fresh")
class TestManageTroopauth:
    """The CLI's commands, output and exit codes, on the project's store."""

    def test_the_story(self, tmp_path: Path) -> None:
        """Account, troop, PAT, issue, verify, revoke and audit: each answers
        as the CLI does, and the records are in the Django database."""
        code, out, _ = manage(
            "--json", "account", "create", "--seats", "2", "--audit-log"
        )
        assert code == 0
        account_id = json.loads(out)["id"]
        code, out, _ = manage("--json", "troop", "create", account_id, "payments")
        troop_id = json.loads(out)["id"]
        code, out, err = manage("pat", "issue", account_id)
        assert code == 0
        owner_file = tmp_path / "owner.token"
        owner_file.write_text(out.strip())
        assert "shown this once" in err
        code, out, _ = manage(
            "token", "issue", troop_id, "--permission", "edit", "--scope",
            "key:deploy", "--name", "ci", "--token-file", str(owner_file),
        )  # fmt: skip
        assert code == 0
        ci_file = tmp_path / "ci.token"
        ci_file.write_text(out.strip())
        ci_value = out.strip()
        # The value works through the project's facade: one store.
        principal = get_auth().verify(ci_value, troop_id, Permission.EDIT, key="deploy")
        assert principal.token_id is not None
        code, out, _ = manage(
            "verify", troop_id, "--permission", "edit", "--key", "deploy",
            "--token-file", str(ci_file),
        )  # fmt: skip
        assert (code, out.startswith("allowed")) == (0, True)
        code, _, err = manage(
            "verify", troop_id, "--permission", "edit", "--key", "billing",
            "--token-file", str(ci_file),
        )  # fmt: skip
        assert code == ExitCode.ACCESS_DENIED
        assert "AccessDenied" in err
        code, out, _ = manage("--json", "token", "list", troop_id)
        assert [t["token_id"] for t in json.loads(out)] == [principal.token_id]
        code, _, _ = manage(
            "token", "revoke", principal.token_id, "--token-file", str(owner_file)
        )
        assert code == 0
        with pytest.raises(InvalidToken):
            get_auth().authenticate(ci_value)
        code, out, _ = manage("--json", "audit", troop_id)
        assert [e["action"] for e in json.loads(out)["events"]] == [
            "token.issue",
            "token.revoke",
        ]

    def test_a_dead_token_is_not_echoed(self, tmp_path: Path) -> None:
        """A dead value: the InvalidToken exit code, and the value nowhere."""
        code, out, _ = manage("--json", "account", "create", "--seats", "1")
        troop = json.loads(
            manage("--json", "troop", "create", json.loads(out)["id"], "t")[1]
        )
        dead = get_auth().issue_personal_token(troop["account_id"]).value
        get_auth().report_leak(dead)
        token_file = tmp_path / "dead.token"
        token_file.write_text(dead)
        code, out, err = manage(
            "verify",
            troop["id"],
            "--permission",
            "view",
            "--token-file",
            str(token_file),
        )
        assert code == ExitCode.INVALID_TOKEN
        assert dead not in out + err

    @pytest.mark.parametrize(
        "words",
        [("demo",), ("serve",), ("--db", "x.db", "token", "list", "troop_x")],
    )
    def test_file_commands_are_refused(self, words: tuple[str, ...]) -> None:
        """demo, serve and --db work on a SQLite file: a usage error here."""
        code, _, err = manage(*words)
        assert code == ExitCode.USAGE
        assert "manage.py troopauth" in err
