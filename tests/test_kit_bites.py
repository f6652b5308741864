"""The conformance kit catches broken adapters: each deliberately broken store
in tests/broken_stores.py fails the kit, in the tests that check the promise
it breaks, while a correct store passes the same run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MODULE = """
from functools import partial

import pytest

from troopauth import MemoryStore
from troopauth.testing import Capabilities, StoreContract
from tests import broken_stores


class TestAdapter(StoreContract):
    capabilities = {capabilities}

    @pytest.fixture
    def store(self, tmp_path):
        return {store}
"""


def run_kit(tmp_path: Path, store: str, capabilities: str = "Capabilities()") -> dict:
    """Run the whole kit against *store* in a fresh pytest; outcome per test."""
    test_file = tmp_path / "test_adapter.py"
    test_file.write_text(
        textwrap.dedent(MODULE).format(store=store, capabilities=capabilities)
    )
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYPOTHESIS_PROFILE": "default"}
    env.pop("CI", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            f"--junitxml={report}",
            f"--rootdir={tmp_path}",
            str(test_file),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    outcomes = {}
    tree = ET.parse(report)  # noqa: S314 (our own pytest run's report)
    for case in tree.getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def failed(outcomes: dict) -> set[str]:
    """The names of the tests that failed."""
    return {name for name, result in outcomes.items() if result == "failed"}


class TestCorrectStoresPass:
    """The harness itself: a correct store passes every test it runs."""

    def test_memory_store_passes(self, tmp_path: Path) -> None:
        """MemoryStore: no failure, and the core tests ran."""
        outcomes = run_kit(tmp_path, "MemoryStore()")
        assert failed(outcomes) == set()
        assert outcomes["test_rotation_replaces_the_digest_atomically"] == "passed"
        assert outcomes["test_threads_racing_for_the_last_seat"] == "passed"


class TestBrokenStoresFail:
    """Each broken adapter fails the tests of the promise it breaks."""

    @pytest.mark.parametrize(
        ("store", "capabilities", "must_fail"),
        [
            pytest.param(
                "broken_stores.RotationKeepsOldDigest()",
                "Capabilities()",
                {
                    "test_rotation_replaces_the_digest_atomically",
                    "test_rotation_kills_the_old_value",
                },
                id="rotation-keeps-old-digest",
            ),
            pytest.param(
                "broken_stores.NonAtomicMemoryStore()",
                "Capabilities()",
                {"test_a_transaction_that_raises_leaves_nothing"},
                id="transaction-not-atomic",
            ),
            pytest.param(
                "broken_stores.UnisolatedMemoryStore()",
                "Capabilities()",
                {"test_threads_racing_for_the_last_seat"},
                id="seat-count-not-isolated",
            ),
            pytest.param(
                "partial(broken_stores.RevokeNotPersisted, tmp_path / 'x.db')",
                "Capabilities(shared=True, durable=True)",
                {"test_changes_survive_a_reopen"},
                id="revoke-not-persisted",
            ),
        ],
    )
    def test_kit_catches_it(
        self, tmp_path: Path, store: str, capabilities: str, must_fail: set[str]
    ) -> None:
        """The named tests fail (others may fail too)."""
        outcomes = run_kit(tmp_path, store, capabilities)
        assert must_fail <= failed(outcomes), outcomes
