"""The ``troopauth`` command, driven as users run it: in a subprocess."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from troopauth import InvalidToken, SQLiteStore, TroopAuth
from troopauth.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "troopauth", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
