"""The benchmark entry points run: a smoke test, never a timing assertion.

Each entry point runs once in ``--quick`` mode in a subprocess (all at once,
to save wall time); the tests read what they printed and wrote. How fast
anything was is the benchmarks' business (``benchmarks/README.md``), not the
test suite's: nothing here compares a duration.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.conftest import POSTGRES_DSN, postgres_unreachable

ROOT = Path(__file__).resolve().parent.parent
#: A whole token value (the hint, ``cpt_pat_Ab…yz``, does not match).
TOKEN_VALUE = re.compile(r"cpt_pat_[0-9A-Za-z]{36}")
#: Generous: a wedged run fails the test instead of hanging CI.
TIMEOUT = 600


@attrs.frozen
class Run:
    """One finished entry point run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def _start(args: list[str], tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmp)},
    )


def _drop_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def _schema_exists(schema: str) -> bool:
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return bool(row and row[0])


def _databases_named(prefix: str) -> list[str]:
    import psycopg

    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
            (prefix,),
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every entry point, run at once in --quick mode; their outputs by name."""
    tmp = tmp_path_factory.mktemp("bench")
    schema = f"troopauth_bench_test_{secrets.token_hex(4)}"
    postgres = postgres_unreachable() is None
    pg_args = ["--postgres", POSTGRES_DSN, "--schema", schema]
    commands = {
        "suite": [
            "-m",
            "benchmarks",
            "--quick",
            "--json",
            str(tmp / "suite.json"),
            "--plot",
            str(tmp / "scale.png"),
            "--tmpdir",
            str(tmp),
            *(pg_args if postgres else ["--no-postgres"]),
        ],
        "verify": [
            "-m",
            "benchmarks.verify",
            "--quick",
            "--json",
            str(tmp / "verify.json"),
            "--tmpdir",
            str(tmp),
        ],
        "one section": ["-m", "benchmarks", "middleware", "--quick", "--no-postgres"],
        "bad section": ["-m", "benchmarks", "nonsense", "--quick"],
    }
    started = {name: (args, _start(args, tmp)) for name, args in commands.items()}
    done: dict[str, Any] = {"tmp": tmp, "schema": schema, "postgres": postgres}
    try:
        for name, (args, proc) in started.items():
            out, err = proc.communicate(timeout=TIMEOUT)
            done[name] = Run(tuple(args), proc.returncode, out, err)
        yield done
    finally:
        for _, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        if postgres:
            _drop_schema(schema)


def _ok(run: Run) -> Run:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr
    return run


class TestSuiteEntryPoint:
    """``python -m benchmarks --quick`` runs every section and writes its files."""

    def test_exits_zero(self, runs: dict[str, Any]) -> None:
        """The whole suite finishes with status 0 and no traceback."""
        _ok(runs["suite"])

    @pytest.mark.parametrize(
        "header",
        [
            "troopauth benchmarks",
            "PEERS: verify() vs the floor and other libraries",
            "SCALE: verify() and memory as the store grows",
            "WRITES: operations per second, one process",
            "WRITES: issue_token from several processes at once",
            "MIDDLEWARE: an ASGI app called in-process",
            "DJANGO: a DRF view called in-process, per request",
            "Target: troopauth's DRF authentication + permission faster than both",
            "Phases (wall clock)",
        ],
    )
    def test_prints_each_table_title(self, runs: dict[str, Any], header: str) -> None:
        """Each section prints its table's title."""
        assert header in _ok(runs["suite"]).stdout

    @pytest.mark.parametrize(
        "columns",
        [
            r"check\s+calls/pass\s+distinct\s+median ns\s+min ns\s+x floor\s+x verify",
            r"store\s+tokens\s+load s\s+calls/pass\s+verify us\s+min us\s+RSS MiB",
            r"target\s+at tokens\s+measured\s+mark",
            r"store\s+operation\s+batches\s+ops/s\s+min\.\.max\s+us/op",
            r"store\s+processes\s+accounts\s+issues\s+seconds\s+issues/s",
            r"application\s+requests/s\s+us/request\s+overhead us",
            r"database\s+check\s+median us\s+min us\s+x troopauth",
        ],
    )
    def test_prints_each_table_header(self, runs: dict[str, Any], columns: str) -> None:
        """Each table prints its column headers."""
        assert re.search(columns, _ok(runs["suite"]).stdout)

    @pytest.mark.parametrize(
        "name", ["floor", "verify", "PyJWT", "itsdangerous", "casbin"]
    )
    def test_peers_table_names_every_check(
        self, runs: dict[str, Any], name: str
    ) -> None:
        """The peers table has a row for the floor, verify and each peer."""
        stdout = _ok(runs["suite"]).stdout
        peers = stdout.split("PEERS:", 1)[1].split("SCALE:", 1)[0]
        assert re.search(rf"^{re.escape(name)}\s", peers, re.MULTILINE)

    @pytest.mark.parametrize(
        "name", ["DRF, no auth", "troopauth", "knox", "api-key", "DjangoStore verify"]
    )
    def test_django_table_names_every_check(
        self, runs: dict[str, Any], name: str
    ) -> None:
        """The django table has a SQLite row for the bare view, troopauth,
        each peer and the verify alone."""
        stdout = _ok(runs["suite"]).stdout
        django = stdout.split("DJANGO:", 1)[1].split("Phases (wall clock)", 1)[0]
        assert re.search(rf"^SQLite\s+{re.escape(name)}\s", django, re.MULTILINE)

    def test_django_json_holds_every_pass(self, runs: dict[str, Any]) -> None:
        """The django figures come back from its child process: one pass per
        repeat for each check."""
        _ok(runs["suite"])
        document = json.loads((runs["tmp"] / "suite.json").read_text())
        rows = document["django"]["databases"]["SQLite"]
        assert {r["check"] for r in rows} == {
            "DRF, no auth",
            "troopauth",
            "knox",
            "api-key",
            "DjangoStore verify",
        }
        assert all(len(r["passes_ns"]) == document["django"]["repeats"] for r in rows)

    def test_json_holds_every_section(self, runs: dict[str, Any]) -> None:
        """--json writes the machine, the options and every section's figures."""
        _ok(runs["suite"])
        document = json.loads((runs["tmp"] / "suite.json").read_text())
        sections = {"peers", "scale", "writes", "middleware", "listings", "django"}
        assert {"machine", "options", *sections} <= set(document)
        assert {r["store"] for r in document["scale"]["rows"]} >= {
            "MemoryStore",
            "SQLiteStore",
        }

    def test_plot_is_a_small_png(self, runs: dict[str, Any]) -> None:
        """--plot writes a PNG image, small enough to commit."""
        _ok(runs["suite"])
        image = (runs["tmp"] / "scale.png").read_bytes()
        assert image.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(image) < 100_000

    def test_no_token_value_is_printed_or_written(self, runs: dict[str, Any]) -> None:
        """No whole token value reaches stdout, stderr or the JSON file."""
        run = _ok(runs["suite"])
        document = (runs["tmp"] / "suite.json").read_text()
        for text in (run.stdout, run.stderr, document):
            assert TOKEN_VALUE.search(text) is None


class TestSuitePostgres:
    """With PostgreSQL reachable, the suite measures PostgresStore and cleans up."""

    @pytest.fixture(autouse=True)
    def _needs_postgres(self, runs: dict[str, Any]) -> None:
        if not runs["postgres"]:
            if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
                pytest.fail(f"{postgres_unreachable()} (CI=true: must run)")
            pytest.skip(str(postgres_unreachable()))

    def test_scale_and_writes_include_postgres(self, runs: dict[str, Any]) -> None:
        """PostgresStore has rows in the scale and the writes results."""
        _ok(runs["suite"])
        document = json.loads((runs["tmp"] / "suite.json").read_text())
        assert "PostgresStore" in {r["store"] for r in document["scale"]["rows"]}
        assert "PostgresStore" in {r["store"] for r in document["writes"]["single"]}
        assert "PostgresStore" in {m["store"] for m in document["writes"]["multi"]}

    def test_counts_one_round_trip_per_verify(self, runs: dict[str, Any]) -> None:
        """The scale section counts the statements verify sends: exactly one."""
        _ok(runs["suite"])
        document = json.loads((runs["tmp"] / "suite.json").read_text())
        rows = [r for r in document["scale"]["rows"] if r["store"] == "PostgresStore"]
        assert rows[-1]["round_trips_per_verify"] == 1.0

    def test_django_runs_on_postgres_and_drops_its_database(
        self, runs: dict[str, Any]
    ) -> None:
        """The django section measures PostgreSQL too, in a database of its
        own that is gone when the run ends."""
        _ok(runs["suite"])
        document = json.loads((runs["tmp"] / "suite.json").read_text())
        assert "PostgreSQL" in document["django"]["databases"]
        assert not _databases_named(f"{runs['schema']}_django_")

    def test_drops_its_schema(self, runs: dict[str, Any]) -> None:
        """The benchmark schema is gone when the run ends."""
        _ok(runs["suite"])
        assert not _schema_exists(runs["schema"])

    def test_json_withholds_the_dsn_password(self, runs: dict[str, Any]) -> None:
        """The options in the JSON file name the server without a password."""
        _ok(runs["suite"])
        document = json.loads((runs["tmp"] / "suite.json").read_text())
        assert "password" not in (document["options"]["postgres"] or "")


class TestVerifyEntryPoint:
    """``python -m benchmarks.verify --quick`` keeps its two tables."""

    def test_exits_zero(self, runs: dict[str, Any]) -> None:
        """It finishes with status 0 and no traceback."""
        _ok(runs["verify"])

    @pytest.mark.parametrize(
        "header",
        [
            "troopauth verify benchmark",
            "1. verify() on MemoryStore vs the bare floor",
            "stored tokens  distinct values  floor ns  verify ns  verify/floor",
            "2. issue_token throughput",
            "store        tokens before  batches x issues  issues/s",
        ],
    )
    def test_prints_its_tables(self, runs: dict[str, Any], header: str) -> None:
        """Its table titles and column headers are printed."""
        assert header in _ok(runs["verify"]).stdout

    def test_json_is_written(self, runs: dict[str, Any]) -> None:
        """--json writes the verify and issue figures."""
        _ok(runs["verify"])
        document = json.loads((runs["tmp"] / "verify.json").read_text())
        assert {"machine", "verify", "issue"} <= set(document)


class TestSectionChoice:
    """Naming sections runs only those; a wrong name is a usage error."""

    def test_named_section_runs_alone(self, runs: dict[str, Any]) -> None:
        """``python -m benchmarks middleware`` prints that table and no other."""
        stdout = _ok(runs["one section"]).stdout
        assert "MIDDLEWARE:" in stdout
        assert "PEERS:" not in stdout
        assert "SCALE:" not in stdout
        assert "WRITES:" not in stdout
        assert "LISTINGS:" not in stdout
        assert "DJANGO:" not in stdout

    def test_unknown_section_is_a_usage_error(self, runs: dict[str, Any]) -> None:
        """An unknown section name exits with status 2 and names the choices."""
        run = runs["bad section"]
        assert run.returncode == 2
        assert "unknown section 'nonsense'" in run.stderr
        assert "peers, scale, writes, middleware, listings" in run.stderr
