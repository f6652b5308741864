"""The ``troopauth`` command, driven as users run it: in a subprocess.

State is set up through the library (fast) and every command under test runs
as ``python -m troopauth``; its effect is read back through the library.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from troopauth import (
    AccessDenied,
    Grant,
    InvalidToken,
    IssuedToken,
    Kind,
    Permission,
    SQLiteStore,
    TroopAuth,
)
from troopauth.cli import ENV_DB, ENV_TOKEN, EXIT_CODES, ExitCode, _parser, main

from .conftest import FrozenClock

VALUE = re.compile(r"cpt_pat_[0-9A-Za-z]{36}")
WARNING = "shown this once and never again"


def _env(**extra: str) -> dict[str, str]:
    """The test process's environment without troopauth's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TROOPAUTH_")}
    env.update(extra)
    return env


def _run(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str = "",
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "troopauth", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=_env() if env is None else env,
        input=stdin,
        cwd=cwd,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr
    return result.stdout


def _assert_secret_once(result: subprocess.CompletedProcess[str], value: str) -> None:
    """The value is on stdout once, never on stderr, which carries the warning."""
    assert VALUE.fullmatch(value)
    assert result.stdout.count(value) == 1
    assert value not in result.stderr
    assert WARNING in result.stderr


class World:
    """An account (2 seats, audit log on), troops 'payments' and 'infra', and
    its personal token in a mode-600 token file, all made through the library
    on a SQLite file the commands share."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "cli.db"
        self.store = SQLiteStore(self.db)
        self.auth = TroopAuth(self.store)
        self.account_id = self.auth.create_account(seats=2, audit_log=True).id
        self.troop_id = self.auth.create_troop(self.account_id, "payments").id
        self.other_id = self.auth.create_troop(self.account_id, "infra").id
        self.pat = self.auth.issue_personal_token(self.account_id)
        self.owner = self.auth.authenticate(self.pat.value)
        self.owner_file = self.token_file("owner", self.pat.value)
        self.env = _env(TROOPAUTH_DB=str(self.db))

    def token_file(self, name: str, value: str) -> Path:
        path = self.tmp / f"{name}.token"
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def issue_ci(self, **kwargs: Any) -> IssuedToken:
        """A troop token 'ci' with EDIT on key:deploy,key:prod/* in payments."""
        grant = Grant.parse("edit", "key:deploy,key:prod/*")
        return self.auth.issue_token(
            self.owner, self.troop_id, grant, name="ci", **kwargs
        )

    def run(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on this world's database (plus *env*)."""
        return _run(*args, env={**self.env, **(env or {})}, stdin=stdin)

    def as_owner(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command with the personal token as the actor (from its file)."""
        return self.run(*args, "--token-file", str(self.owner_file))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh account on a SQLite file, set up through the library."""
    made = World(tmp_path)
    try:
        yield made
    finally:
        made.store.close()


class TestDemo:
    """``troopauth demo`` tells the whole story with real calls."""

    def test_exits_zero_and_shows_every_step(self) -> None:
        """The demo exits 0 and shows issue, verify, denial, rotation, revoke,
        seats and the audit trail."""
        result = _run("demo")
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "verify EDIT on key 'deploy'  -> allowed" in out
        assert "verify EDIT on key 'billing' -> AccessDenied" in out
        assert "old value on 'deploy' -> InvalidToken" in out
        assert "new value on 'deploy' -> allowed" in out
        assert "revoked 'ci' -> verify says InvalidToken" in out
        assert "seats used 0 of 2, 2 free" in out
        assert "seats used 1 of 2" in out
        assert re.search(r"#1 .* token\.issue", out)
        assert re.search(r"#3 .* token\.revoke", out)
        assert "chain check: intact" in out
        assert result.stderr == ""

    def test_console_script_is_installed(self) -> None:
        """The ``troopauth`` console script runs the same demo."""
        exe = shutil.which("troopauth", path=str(Path(sys.executable).parent))
        assert exe is not None
        result = subprocess.run(
            [exe, "demo"], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "chain check: intact" in result.stdout

    def test_db_option_keeps_a_real_database(self, tmp_path: Path) -> None:
        """``--db PATH`` leaves a SQLite file whose state matches the story."""
        db = tmp_path / "demo.db"
        result = _run("demo", "--db", str(db))
        assert result.returncode == 0, result.stderr
        value = re.search(r"value \(shown once\): (cpt_pat_\w{36})", result.stdout)
        assert value is not None
        with closing(sqlite3.connect(db)) as conn:
            (troops,) = conn.execute("SELECT count(*) FROM troops").fetchone()
            (revoked,) = conn.execute(
                "SELECT count(*) FROM tokens WHERE revoked = 1 AND kind = 'troop'"
            ).fetchone()
        assert (troops, revoked) == (2, 1)
        with SQLiteStore(db) as store, pytest.raises(InvalidToken):
            TroopAuth(store).authenticate(value.group(1))

    def test_main_returns_exit_code(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``main()`` returns 0 for the demo (in-process, for coverage)."""
        assert main(["demo"]) == 0
        assert "done:" in capsys.readouterr().out


class TestUsage:
    """Bad command lines fail with argparse's usage, not a traceback."""

    def test_unknown_command(self) -> None:
        """An unknown command exits 2 with a usage line and no traceback."""
        result = _run("frobnicate")
        assert result.returncode == 2
        assert "usage:" in result.stderr
        assert "Traceback" not in result.stderr

    def test_version(self) -> None:
        """``--version`` prints the package version."""
        result = _run("--version")
        assert result.returncode == 0
        assert result.stdout.strip()


class TestAccountCommands:
    """``account create``, ``troop create`` and ``pat issue`` need no actor."""

    def test_account_create_text_and_json(self, tmp_path: Path) -> None:
        """``account create`` makes the database and the account; ``--json``
        prints the library's Account shape."""
        db = tmp_path / "new.db"
        env = _env(TROOPAUTH_DB=str(db))
        text = _run("account", "create", "--seats", "3", "--audit-log", env=env)
        assert re.fullmatch(
            r"created account acct_\w+: 3 seats, audit log on\n", _ok(text)
        )
        assert text.stderr == ""
        data = json.loads(
            _ok(_run("--json", "account", "create", "--seats=1", env=env))
        )
        assert set(data) == {
            "id",
            "seats",
            "audit_log",
            "created_at",
            "max_token_lifetime",
            "require_expiry",
        }
        assert (data["seats"], data["audit_log"]) == (1, False)
        with SQLiteStore(db) as store:
            assert TroopAuth(store).seats(data["id"]).capacity == 1

    def test_troop_create(self, world: World) -> None:
        """``troop create`` adds a named troop to the account (text and JSON)."""
        text = _ok(world.run("troop", "create", world.account_id, "ops"))
        assert re.fullmatch(
            rf"created troop troop_\w+ 'ops' in account {world.account_id}\n", text
        )
        data = json.loads(
            _ok(world.run("troop", "create", world.account_id, "infra", "--json"))
        )
        assert (data["name"], data["account_id"]) == ("infra", world.account_id)
        assert world.auth.tokens(data["id"]) == []

    def test_pat_issue_prints_the_value_once(self, world: World) -> None:
        """``pat issue`` prints the new value alone on stdout, the warning on
        stderr, and replaces the old personal token at once."""
        result = world.run("pat", "issue", world.account_id)
        value = _ok(result).strip()
        assert result.stdout == value + "\n"
        _assert_secret_once(result, value)
        principal = world.auth.authenticate(value)
        assert principal.kind is Kind.PERSONAL
        assert principal.token_id is not None
        assert principal.token_id in result.stderr
        with pytest.raises(InvalidToken):
            world.auth.authenticate(world.pat.value)

    def test_pat_issue_json_holds_the_value(self, world: World) -> None:
        """With ``--json`` the value is in the IssuedToken JSON; the warning
        still goes to stderr."""
        result = world.run("--json", "pat", "issue", world.account_id)
        data = json.loads(_ok(result))
        assert set(data) == {"token_id", "value", "hint", "kind"}
        assert data["kind"] == "personal"
        _assert_secret_once(result, data["value"])
        assert world.auth.authenticate(data["value"]).token_id == data["token_id"]


class TestTokenCommands:
    """``token issue|attach|detach|rotate|revoke|list`` with the PAT as actor."""

    def test_issue_prints_only_the_value(self, world: World) -> None:
        """``token issue`` prints the value alone (so ``> file`` keeps just the
        token) and the token holds exactly the grant given."""
        result = world.as_owner(
            "token", "issue", world.troop_id,
            "--permission", "edit", "--scope", "key:deploy,key:prod/*",
            "--name", "ci", "--expires-in", "2d",
        )  # fmt: skip
        value = _ok(result).strip()
        _assert_secret_once(result, value)
        assert result.stdout == value + "\n"
        principal = world.auth.verify(value, world.troop_id, Permission.EDIT, "prod/db")
        assert principal.kind is Kind.TROOP
        with pytest.raises(AccessDenied):
            world.auth.verify(value, world.troop_id, Permission.EDIT, "billing")
        (info,) = world.auth.tokens(world.troop_id)
        assert info.name == "ci"
        assert info.expires_at is not None
        expected = datetime.now(UTC) + timedelta(days=2)
        assert abs(info.expires_at - expected) < timedelta(minutes=5)
        assert world.auth.seats(world.account_id).used == 1

    def test_issue_json_holds_the_value(self, world: World) -> None:
        """``token issue --json`` prints the IssuedToken with its value; an
        ``--expires-at`` time is kept as given."""
        result = world.as_owner(
            "token", "issue", world.troop_id, "--json",
            "--permission", "view,use", "--scope", "*",
            "--expires-at", "2099-01-01T00:00:00+00:00",
        )  # fmt: skip
        data = json.loads(_ok(result))
        assert set(data) == {"token_id", "value", "hint", "kind"}
        assert data["kind"] == "troop"
        _assert_secret_once(result, data["value"])
        (info,) = world.auth.tokens(world.troop_id)
        assert info.token_id == data["token_id"]
        assert info.expires_at == datetime(2099, 1, 1, tzinfo=UTC)
        assert info.grants[world.troop_id] == Grant.parse("view,use", "*")

    def test_attach_then_detach(self, world: World) -> None:
        """``attach`` adds a troop with its grant (still one seat); ``detach``
        takes it away; both print the TokenInfo, never a value."""
        ci = world.issue_ci()
        attached = world.as_owner(
            "--json", "token", "attach", ci.token_id, world.other_id,
            "--permission", "view", "--scope", "key:prod/*",
        )  # fmt: skip
        data = json.loads(_ok(attached))
        assert data["grants"] == {
            world.troop_id: {"permission": ["edit"], "scope": "key:deploy,key:prod/*"},
            world.other_id: {"permission": ["view"], "scope": "key:prod/*"},
        }
        assert "value" not in data
        assert world.auth.seats(world.account_id).used == 1
        detached = _ok(world.as_owner("token", "detach", ci.token_id, world.other_id))
        assert f"detached {ci.token_id} from {world.other_id}" in detached
        assert ci.value not in detached
        assert world.auth.tokens(world.other_id) == []
        world.auth.verify(ci.value, world.troop_id, Permission.EDIT, "deploy")

    def test_rotate(self, world: World) -> None:
        """``rotate`` prints a new value once; same token, the old value dies."""
        ci = world.issue_ci()
        result = world.as_owner("token", "rotate", ci.token_id)
        value = _ok(result).strip()
        _assert_secret_once(result, value)
        assert value != ci.value
        assert ci.value not in result.stdout + result.stderr
        assert world.auth.authenticate(value).token_id == ci.token_id
        with pytest.raises(InvalidToken):
            world.auth.authenticate(ci.value)

    def test_revoke_frees_the_seat(self, world: World) -> None:
        """``revoke`` kills the value and frees the seat; a second revoke is a
        no-op that still exits 0."""
        ci = world.issue_ci()
        data = json.loads(_ok(world.as_owner("--json", "token", "revoke", ci.token_id)))
        assert data == {"token_id": ci.token_id, "revoked": True}
        with pytest.raises(InvalidToken):
            world.auth.authenticate(ci.value)
        assert world.auth.seats(world.account_id).free == 2
        again = _ok(world.as_owner("token", "revoke", ci.token_id))
        assert f"revoked token {ci.token_id}" in again

    def test_list(self, world: World) -> None:
        """``list`` shows the attached tokens with hints and grants, never a
        value; an empty troop says so."""
        ci = world.issue_ci()
        text = _ok(world.run("token", "list", world.troop_id))
        assert text.startswith(f"{ci.token_id} 'ci' {ci.hint}")
        assert f"{world.troop_id}: edit on key:deploy,key:prod/*" in text
        data = json.loads(_ok(world.run("token", "list", world.troop_id, "--json")))
        assert [t["token_id"] for t in data] == [ci.token_id]
        assert "value" not in data[0]
        assert data[0]["hint"] == ci.hint
        assert ci.value not in text + json.dumps(data)
        empty = _ok(world.run("token", "list", world.other_id))
        assert empty == "no tokens attached\n"


class TestMemberCommands:
    """``member add`` and ``member remove``."""

    def test_add_then_remove(self, world: World) -> None:
        """A member added with a grant is authorised within it; removed, not."""
        added = world.as_owner(
            "--json", "member", "add", world.troop_id, "alice",
            "--permission", "view", "--scope", "key:deploy",
        )  # fmt: skip
        assert json.loads(_ok(added)) == {
            "troop_id": world.troop_id,
            "member_id": "alice",
            "grant": {"permission": ["view"], "scope": "key:deploy"},
        }
        alice = world.auth.member(world.account_id, "alice")
        world.auth.authorize(alice, world.troop_id, Permission.VIEW, "deploy")
        removed = _ok(world.as_owner("member", "remove", world.troop_id, "alice"))
        assert removed == f"removed member alice from troop {world.troop_id}\n"
        with pytest.raises(AccessDenied):
            world.auth.authorize(alice, world.troop_id, Permission.VIEW, "deploy")


class TestVerify:
    """``verify`` reads the value from a file, stdin or the environment."""

    def test_every_token_source(self, world: World) -> None:
        """The value is read from --token-file, --token-stdin or
        $TROOPAUTH_TOKEN; a flag wins over the environment."""
        ci = world.issue_ci()
        check = ("verify", world.troop_id, "--permission", "edit", "--key", "deploy")
        path = str(world.token_file("ci", ci.value))
        garbage_env = {ENV_TOKEN: "not a token"}
        from_file = _ok(world.run(*check, "--token-file", path, env=garbage_env))
        assert from_file.startswith(f"allowed: troop:{ci.token_id}")
        _ok(world.run(*check, "--token-stdin", stdin=ci.value + "\n"))
        result = world.run(*check, "--json", env={ENV_TOKEN: ci.value})
        data = json.loads(_ok(result))
        assert (data["kind"], data["token_id"]) == ("troop", ci.token_id)
        assert data["account_id"] == world.account_id
        assert ci.value not in result.stdout + result.stderr


class TestSeats:
    """``seats`` shows the pool, with ``free`` in the JSON too."""

    def test_text_and_json(self, world: World) -> None:
        """One live token: 1 used of 2, 1 free."""
        world.issue_ci()
        text = _ok(world.run("seats", world.account_id))
        assert text == "seats: 1 used of 2, 1 free\n"
        data = json.loads(_ok(world.run("seats", world.account_id, "--json")))
        assert data == {"capacity": 2, "used": 1, "free": 1}


class TestAudit:
    """``audit`` prints the events and the chain check; a broken chain exits 9."""

    def test_troop_log_text(self, world: World) -> None:
        """Each event on a line, oldest first, then ``chain check: intact``."""
        ci = world.issue_ci()
        world.auth.revoke(world.owner, ci.token_id)
        lines = _ok(world.run("audit", world.troop_id)).splitlines()
        assert len(lines) == 3
        assert re.match(
            rf"#1 \S+ token\.issue +by personal:\S+ on {ci.token_id}", lines[0]
        )
        assert re.match(r"#2 \S+ token\.revoke ", lines[1])
        assert lines[2] == "chain check: intact"

    def test_json_and_account_log(self, world: World) -> None:
        """``--json`` holds the events in the library's shape and the check;
        ``--account`` shows the account's own log (PAT events)."""
        world.issue_ci()
        troop = json.loads(_ok(world.run("--json", "audit", world.troop_id)))
        assert troop["troop_id"] == world.troop_id
        assert [e["action"] for e in troop["events"]] == ["token.issue"]
        assert (troop["intact"], troop["first_broken"]) == (True, None)
        account = json.loads(
            _ok(world.run("audit", "--account", world.account_id, "--json"))
        )
        assert account["account_id"] == world.account_id
        assert [e["action"] for e in account["events"]] == ["pat.issue"]
        assert account["intact"] is True

    def test_broken_chain_exits_9(self, world: World) -> None:
        """An edited event is named in the output, on stderr, and by exit 9."""
        ci = world.issue_ci()
        world.auth.revoke(world.owner, ci.token_id)
        with closing(sqlite3.connect(world.db)) as conn, conn:
            conn.execute(
                "UPDATE audit SET event = json_set(event, '$.actor', 'forged') "
                "WHERE log = ? AND seq = 1",
                (world.troop_id,),
            )
        text = world.run("audit", world.troop_id)
        assert text.returncode == 9
        assert text.stdout.splitlines()[-1] == "chain check: BROKEN at event #1"
        assert "broken at event #1" in text.stderr
        data = world.run("audit", world.troop_id, "--json")
        assert data.returncode == 9
        assert json.loads(data.stdout)["first_broken"] == 1


def _error_cases(world: World) -> dict[str, tuple[list[str], str]]:
    """Command lines (and stdin) for each error exit code. Leaves both seats
    taken by live tokens; an expired token holds none."""
    past = TroopAuth(world.store, clock=FrozenClock(datetime(2020, 1, 1, tzinfo=UTC)))
    old = past.issue_token(
        world.owner,
        world.other_id,
        Grant.parse("view"),
        expires_at=datetime(2021, 1, 1, tzinfo=UTC),
    )
    ci = world.issue_ci()
    world.issue_ci()
    ci_file = str(world.token_file("ci", ci.value))
    owner_file = str(world.owner_file)
    garbage = str(world.token_file("garbage", "cpt_pat_" + "A" * 36))
    not_a_db = world.tmp / "not-a.db"
    not_a_db.write_bytes(b"this is not a SQLite database, not at all" * 50)
    missing = str(world.tmp / "missing.db")
    verify = ["verify", world.troop_id, "--permission", "edit"]
    view_all = ["--permission", "view", "--scope", "*"]
    bad_scope = ["--permission", "view", "--scope", "key:a b"]
    owner, as_ci = ["--token-file", owner_file], ["--token-file", ci_file]
    return {
        "no-token": (["token", "revoke", ci.token_id], ""),
        "invalid-token": ([*verify, "--token-file", garbage], ""),
        "expired-token": ([*verify, "--token-stdin"], old.value),
        "denied": ([*verify, "--key", "billing", *as_ci], ""),
        "escalation": (["member", "add", world.troop_id, "bob", *view_all, *as_ci], ""),
        "not-found": (["seats", "acct_nope"], ""),
        "seats-exhausted": (
            ["token", "issue", world.other_id, *view_all, *owner],
            "",
        ),
        "invalid-scope": (
            ["token", "attach", ci.token_id, world.other_id, *bad_scope, *owner],
            "",
        ),
        "no-database": (["seats", world.account_id, "--db", missing], ""),
        "not-a-database": (["seats", world.account_id, "--db", str(not_a_db)], ""),
    }


ERRORS = {
    "no-token": (2, None),
    "invalid-token": (3, "InvalidToken"),
    "expired-token": (3, "InvalidToken"),
    "denied": (4, "AccessDenied"),
    "escalation": (4, "AccessDenied"),
    "not-found": (5, "NotFound"),
    "seats-exhausted": (6, "SeatsExhausted"),
    "invalid-scope": (7, "InvalidArgument"),
    "no-database": (8, "StoreError"),
    "not-a-database": (8, "StoreError"),
}


class TestExitCodes:
    """Each error class has its own exit code and one line on stderr."""

    @pytest.mark.parametrize("case", sorted(ERRORS))
    def test_error_exit_code(self, world: World, case: str) -> None:
        """The command fails with the class's code, nothing on stdout, and
        ``troopauth: <ErrorClass>: message`` as the only stderr line."""
        argv, stdin = _error_cases(world)[case]
        result = world.run(*argv, stdin=stdin)
        code, error = ERRORS[case]
        assert result.returncode == code, result.stderr
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        assert not VALUE.search(result.stderr)
        if error is None:
            assert "usage:" in result.stderr
            assert "needs a token value" in result.stderr
        else:
            assert result.stderr.count("\n") == 1
            assert result.stderr.startswith(f"troopauth: {error}: ")

    def test_codes_follow_the_table(self) -> None:
        """The documented numbers are the table's, one per error class."""
        table = {
            code.value: kind.__name__ if kind else None for code, kind, _ in EXIT_CODES
        }
        assert table == {
            0: None, 1: None, 2: None, 3: "InvalidToken", 4: "AccessDenied",
            5: "NotFound", 6: "SeatsExhausted", 7: "InvalidArgument",
            8: "StoreError", 9: None,
        }  # fmt: skip
        assert [code.value for code, _, _ in EXIT_CODES] == list(range(10))

    def test_help_lists_every_code(self, capsys: pytest.CaptureFixture[str]) -> None:
        """``--help`` (returned, not raised, in-process) lists each exit code,
        the environment variables and the rule on token values."""
        assert main(["--help"]) == 0
        out = capsys.readouterr().out
        for code, _, meaning in EXIT_CODES:
            assert f"  {code.value}  " in out
            assert meaning in out
        assert "TROOPAUTH_DB" in out
        assert "TROOPAUTH_TOKEN" in out
        assert "never command-line arguments" in out

    def test_unexpected_error_is_one_redacted_line(
        self, world: World, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        """A bug exits 1 with one line naming the exception, no traceback and
        no token value even if its message holds one."""
        value = world.issue_ci().value

        def broken(*_: object) -> None:
            raise RuntimeError(f"boom {value}")

        monkeypatch.setattr(TroopAuth, "seats", broken)
        code = main(["--db", str(world.db), "seats", world.account_id])
        assert code == 1
        err = capsys.readouterr().err
        assert err.startswith("troopauth: unexpected RuntimeError: boom cpt_pat_")
        assert err.count("\n") == 1
        assert value not in err

    def test_json_demo_is_a_usage_error(self, capsys: Any) -> None:
        """The demo prints text only: ``--json demo`` is refused with exit 2."""
        assert main(["--json", "demo"]) == 2
        assert "demo prints text only" in capsys.readouterr().err


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command of the parser tree, with its words."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


#: The only arguments any command takes: ids, names and options, no value.
POSITIONALS = {"account_id", "troop_id", "token_id", "member_id", "name", "words"}
OPTIONS = {
    "-h", "--help", "--db", "--json", "--token-file", "--token-stdin", "--seats",
    "--audit-log", "--permission", "--scope", "--name", "--expires-at",
    "--expires-in", "--key", "--account", "--limit", "--after", "--max-lifetime",
    "--require-expiry", "--no-max-lifetime", "--no-require-expiry", "--within",
    "--host", "--port",
}  # fmt: skip


#: A valid command line for every command (a new command must be added here).
VALID = {
    "account create": ["--seats", "1"],
    "account policy": ["acct_x"],
    "troop create": ["acct_x", "ops"],
    "troop list": ["acct_x"],
    "pat issue": ["acct_x"],
    "token issue": ["troop_x", "--permission", "view", "--scope", "*"],
    "token attach": ["tok_x", "troop_x", "--permission", "view", "--scope", "*"],
    "token detach": ["tok_x", "troop_x"],
    "token rotate": ["tok_x"],
    "token revoke": ["tok_x"],
    "token list": ["troop_x"],
    "token show": ["tok_x"],
    "token report-leak": [],
    "token expiring": ["acct_x"],
    "member add": ["troop_x", "alice", "--permission", "view", "--scope", "*"],
    "member remove": ["troop_x", "alice"],
    "member list": ["troop_x"],
    "verify": ["troop_x", "--permission", "view"],
    "seats": ["acct_x"],
    "audit": ["troop_x"],
    "demo": [],
    "serve": [],
}


class TestTokenValuesStayOffTheCommandLine:
    """No command takes a token value as an argument, and none echoes one."""

    def test_no_argument_takes_a_value(self) -> None:
        """Every command's arguments are ids, names and known options; the
        token comes only from --token-file, --token-stdin or the environment."""
        leaves = dict(_leaves(_parser()))
        assert {" ".join(words) for words in leaves} == set(VALID)
        for words, parser in leaves.items():
            for action in parser._actions:
                if action.option_strings:
                    assert set(action.option_strings) <= OPTIONS, words
                else:
                    assert action.dest in POSITIONALS, words

    @pytest.mark.parametrize("words", sorted(VALID))
    def test_a_value_given_as_argument_is_refused_unechoed(
        self, words: str, capsys: Any
    ) -> None:
        """A value typed after a valid command line is a usage error (exit 2)
        whose message redacts it and says where token values go."""
        value = "cpt_pat_" + "Q" * 36
        assert main([*words.split(), *VALID[words], value]) == 2
        err = capsys.readouterr().err
        assert value not in err
        assert "cpt_pat_<redacted>" in err
        assert "token values are never arguments" in err

    def test_value_is_not_in_ps(self, world: World) -> None:
        """While ``verify --token-stdin`` runs, ``ps`` shows its argv without
        the value, which it reads from stdin and accepts."""
        ci = world.issue_ci()
        argv = [sys.executable, "-m", "troopauth", "verify", world.troop_id,
                "--permission", "edit", "--key", "deploy", "--token-stdin"]  # fmt: skip
        with subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=world.env,
        ) as proc:
            shown = subprocess.run(
                ["ps", "-ww", "-o", "args=", "-p", str(proc.pid)],  # noqa: S607 (ps on PATH)
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            out, err = proc.communicate(ci.value, timeout=120)
        assert "verify" in shown
        assert world.troop_id in shown
        assert not VALUE.search(shown)
        assert proc.returncode == 0, err
        assert ci.value not in out + err


class TestGlobalOptions:
    """``--db`` and ``--json`` go before or after the command; defaults."""

    def test_db_option_beats_the_environment(self, world: World) -> None:
        """``--db`` after the command wins over $TROOPAUTH_DB."""
        result = world.run(
            "seats", world.account_id, "--db", str(world.db), "--json",
            env={ENV_DB: str(world.tmp / "elsewhere.db")},
        )  # fmt: skip
        assert json.loads(_ok(result))["capacity"] == 2

    def test_default_database_is_in_the_working_directory(self, tmp_path: Path) -> None:
        """Without --db or $TROOPAUTH_DB the file is ./troopauth.db."""
        _ok(_run("account", "create", "--seats", "1", cwd=tmp_path))
        assert (tmp_path / "troopauth.db").is_file()


class TestListingCommands:
    """``troop list``, ``member list``, ``token show``, ``token list`` pages and
    ``seats set``."""

    def test_troop_list(self, world: World) -> None:
        """The account's troops, oldest first, in text and JSON."""
        text = _ok(world.run("troop", "list", world.account_id))
        lines = text.splitlines()
        assert [line.split()[0] for line in lines] == [world.troop_id, world.other_id]
        assert "'payments'" in lines[0]
        data = json.loads(_ok(world.run("--json", "troop", "list", world.account_id)))
        assert [t["name"] for t in data] == ["payments", "infra"]

    def test_member_list(self, world: World) -> None:
        """A troop's members with their grants; lower-case permission names in
        text and JSON alike."""
        world.auth.add_member(
            world.owner, world.troop_id, "alice", Grant.parse("view,edit", "key:a")
        )
        text = _ok(world.run("member", "list", world.troop_id))
        assert text == "alice: view,edit on key:a\n"
        data = json.loads(_ok(world.run("--json", "member", "list", world.troop_id)))
        assert data == [
            {
                "troop_id": world.troop_id,
                "member_id": "alice",
                "grant": {"permission": ["view", "edit"], "scope": "key:a"},
            }
        ]
        assert _ok(world.run("member", "list", world.other_id)) == "no members\n"

    def test_token_show_any_state(self, world: World) -> None:
        """One token by id, revoked ones too, never its value."""
        ci = world.issue_ci()
        live = _ok(world.run("token", "show", ci.token_id))
        assert live.startswith(f"{ci.token_id} 'ci' {ci.hint}")
        assert "state: troop token" in live
        world.auth.revoke(world.owner, ci.token_id)
        data = json.loads(_ok(world.run("--json", "token", "show", ci.token_id)))
        assert (data["token_id"], data["revoked"], data["grants"]) == (
            ci.token_id,
            True,
            {},
        )
        assert ci.value not in live + json.dumps(data)

    def test_token_list_pages(self, world: World) -> None:
        """``--limit`` and ``--after`` walk the listing a page at a time."""
        first, second = world.issue_ci(), world.issue_ci()
        ordered = [
            t.token_id for t in world.auth.tokens(world.troop_id)
        ]  # same creation second: the id breaks the tie
        assert set(ordered) == {first.token_id, second.token_id}
        page = json.loads(
            _ok(world.run("--json", "token", "list", world.troop_id, "--limit", "1"))
        )
        assert [t["token_id"] for t in page] == ordered[:1]
        argv = ["--json", "token", "list", world.troop_id, "--limit", "1"]
        rest = json.loads(_ok(world.run(*argv, "--after", ordered[0])))
        assert [t["token_id"] for t in rest] == ordered[1:]

    def test_seats_set(self, world: World) -> None:
        """``seats set`` resizes the pool, never below the seats in use."""
        world.issue_ci()
        text = _ok(world.run("seats", "set", world.account_id, "5"))
        assert text == "seats: 1 used of 5, 4 free\n"
        refused = world.run("seats", "set", world.account_id, "0")
        assert refused.returncode == ExitCode.SEATS_EXHAUSTED.value
        assert world.auth.seats(world.account_id).capacity == 5
        bad = world.run("seats", "set", world.account_id, "many")
        assert bad.returncode == ExitCode.INVALID_ARGUMENT.value
        usage = world.run("seats", "set", world.account_id)
        assert usage.returncode == ExitCode.USAGE.value


class TestJsonErrors:
    """With ``--json``, errors are JSON too: on stderr, with the error class,
    the message and the exit code."""

    @pytest.mark.parametrize("case", sorted(ERRORS))
    def test_every_error_case(self, world: World, case: str) -> None:
        """Each error case gives one JSON object on stderr and nothing on stdout."""
        argv, stdin = _error_cases(world)[case]
        result = world.run("--json", *argv, stdin=stdin)
        code, error = ERRORS[case]
        assert result.returncode == code
        assert result.stdout == ""
        data = json.loads(result.stderr)
        assert data["exit_code"] == code
        assert data["error"] == (error or "UsageError")
        assert data["message"]
        assert not VALUE.search(result.stderr)

    def test_usage_error(self, capsys: Any) -> None:
        """A bad command line with --json is a JSON usage error, exit 2."""
        assert main(["--json", "token", "frobnicate"]) == 2
        data = json.loads(capsys.readouterr().err)
        assert (data["error"], data["exit_code"]) == ("UsageError", 2)


class TestDatabaseFile:
    """The database the CLI creates is private, and a refused first command
    leaves none behind."""

    def test_created_private(self, tmp_path: Path) -> None:
        """``account create`` makes the file (and its -wal/-shm) mode 0600."""
        db = tmp_path / "new.db"
        _ok(_run("account", "create", "--seats", "1", env=_env(TROOPAUTH_DB=str(db))))
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
        assert modes.pop("new.db") == 0o600
        assert set(modes.values()) <= {0o600}

    def test_refused_first_command_leaves_nothing(self, tmp_path: Path) -> None:
        """A first ``account create`` that is refused leaves no file at all."""
        db = tmp_path / "new.db"
        result = _run(
            "account", "create", "--seats", "-1", env=_env(TROOPAUTH_DB=str(db))
        )
        assert result.returncode == ExitCode.INVALID_ARGUMENT.value
        assert list(tmp_path.iterdir()) == []


class TestPolicyCommands:
    """``account create --max-lifetime/--require-expiry`` and ``account policy``."""

    def test_create_with_a_policy(self, tmp_path: Path) -> None:
        """The policy is set at creation and shown in text and JSON."""
        env = _env(TROOPAUTH_DB=str(tmp_path / "p.db"))
        text = _ok(
            _run("account", "create", "--seats", "1", "--max-lifetime", "90d", env=env)
        )
        assert "tokens live at most 90 days" in text
        data = json.loads(
            _ok(_run("--json", "account", "create", "--seats=1", "--require-expiry",
                     "--max-lifetime", "1h", env=env))
        )  # fmt: skip
        assert (data["max_token_lifetime"], data["require_expiry"]) == (3600, True)

    def test_policy_changes_keep_what_is_left_out(self, world: World) -> None:
        """Each option changes its part only; the next issue obeys it."""
        acct = world.account_id
        _ok(world.run("account", "policy", acct, "--max-lifetime", "1d"))
        shown = _ok(world.run("account", "policy", acct, "--require-expiry"))
        assert shown == (
            f"account {acct}: tokens live at most 1 day, 0:00:00, an expiry required\n"
        )
        data = json.loads(_ok(world.run("--json", "account", "policy", acct)))
        assert (data["max_token_lifetime"], data["require_expiry"]) == (86400, True)
        refused = world.as_owner(
            "token", "issue", world.troop_id, "--permission", "view", "--scope", "*",
            "--expires-in", "2d",
        )  # fmt: skip
        assert refused.returncode == ExitCode.INVALID_ARGUMENT.value
        assert "max_token_lifetime" in refused.stderr
        off = _ok(
            world.run(
                "account", "policy", acct, "--no-max-lifetime", "--no-require-expiry"
            )
        )
        assert off == f"account {acct}: no maximum lifetime, no expiry required\n"


class TestReportLeakCommand:
    """``token report-leak`` reads the value from stdin (never an argument)."""

    def test_live_then_dead(self, world: World) -> None:
        """A live value: revoked (exit 0, JSON true); again: nothing changed
        (exit 0, false); the value is echoed nowhere."""
        ci = world.issue_ci()
        first = world.run("token", "report-leak", "--token-stdin", stdin=ci.value)
        assert _ok(first).startswith("revoked:")
        with pytest.raises(InvalidToken):
            world.auth.authenticate(ci.value)
        again = world.run(
            "--json", "token", "report-leak", "--token-stdin", stdin=ci.value
        )
        assert json.loads(_ok(again)) == {"revoked": False}
        assert ci.value not in first.stdout + first.stderr + again.stdout


class TestExpiringCommand:
    """``token expiring ACCOUNT_ID --within D`` lists what expires soon."""

    def test_within(self, world: World) -> None:
        """Tokens expiring inside the window, soonest first; none outside."""
        from datetime import timedelta

        soon = world.issue_ci(expires_at=datetime.now(UTC) + timedelta(days=2))
        world.issue_ci()  # never expires
        text = _ok(world.run("token", "expiring", world.account_id, "--within", "3d"))
        assert text.startswith(soon.token_id)
        data = json.loads(
            _ok(world.run("--json", "token", "expiring", world.account_id))
        )
        assert [t["token_id"] for t in data] == [soon.token_id]
        none = _ok(world.run("token", "expiring", world.account_id, "--within", "1d"))
        assert none == "no token expires within 1d\n"


class TestServe:
    """``troopauth serve`` runs the tokens surface over the database file."""

    def test_serves_the_page_and_the_api(self, world: World) -> None:
        """The page answers at / and the API with the PAT, on a free port;
        the process stops on SIGINT."""
        import signal
        import socket
        import time

        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "troopauth", "serve", "--port", str(port)],
            env=world.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    page = httpx.get(base + "/", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                pytest.fail("troopauth serve did not answer")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            answer = httpx.get(
                f"{base}/accounts/{world.account_id}/seats",
                headers={"Authorization": f"Bearer {world.pat.value}"},
                timeout=5,
            )
            assert answer.json()["capacity"] == 2
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        assert world.pat.value not in err

    def test_missing_database(self, tmp_path: Path) -> None:
        """No database file: StoreError (exit 8), nothing served or created."""
        db = tmp_path / "none.db"
        result = _run("serve", "--db", str(db))
        assert result.returncode == ExitCode.STORE_ERROR.value
        assert not db.exists()
