"""The conformance kit catches broken adapters: each deliberately broken store
in tests/broken_stores.py, run against the kit tests that check the promise it
breaks, fails every one of them (all fixed scenarios, so on every run), while
a correct store passes the whole kit."""

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


def run_kit(
    tmp_path: Path,
    store: str,
    capabilities: str = "Capabilities()",
    select: set[str] | None = None,
) -> dict:
    """Run the kit against *store* in a fresh pytest (only the tests named in
    *select*, if given); outcome per test."""
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
            *(["-k", " or ".join(sorted(select))] if select else []),
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
                {
                    "test_threads_racing_for_the_last_seat",
                    "test_one_account_loses_no_update",
                },
                id="seat-count-not-isolated",
            ),
            pytest.param(
                "partial(broken_stores.RevokeNotPersisted, tmp_path / 'x.db')",
                "Capabilities(shared=True, durable=True)",
                {"test_changes_survive_a_reopen"},
                id="revoke-not-persisted",
            ),
            pytest.param(
                "broken_stores.PersonalTokenKeptAfterReplacement()",
                "Capabilities()",
                {
                    "test_replaced_personal_token_is_refused",
                    "test_every_change_reads_back_whole",
                },
                id="replaced-pat-still-resolves",
            ),
            pytest.param(
                "broken_stores.AccountLockedSnapshotStore()",
                "Capabilities()",
                {"test_two_accounts_commit_side_by_side"},
                id="one-account-commit-undoes-another",
            ),
            pytest.param(
                "partial(broken_stores.AccountCachingSQLiteStore, tmp_path / 'x.db')",
                "Capabilities(shared=True)",
                {"test_a_store_object_rereads_what_another_changed"},
                id="store-object-caches-the-account",
            ),
            pytest.param(
                "broken_stores.AccountLogSharedByAllAccounts()",
                "Capabilities()",
                {
                    "test_account_logs_are_kept_apart",
                    "test_reads_are_scoped_to_the_account",
                },
                id="account-log-not-scoped",
            ),
            pytest.param(
                "broken_stores.MembersKeyedByIdAlone()",
                "Capabilities()",
                {"test_reads_are_scoped_to_the_account"},
                id="member-read-through-another-account",
            ),
            pytest.param(
                "broken_stores.ExpiryScanAcrossAccounts()",
                "Capabilities()",
                {"test_reads_are_scoped_to_the_account"},
                id="expired-token-read-through-another-account",
            ),
            pytest.param(
                "broken_stores.AuditLogAliased()",
                "Capabilities()",
                {"test_returned_collections_are_copies"},
                id="returned-list-aliases-the-store",
            ),
            pytest.param(
                "broken_stores.CloseKeepsLookups()",
                "Capabilities()",
                {"test_close_ends_lookup_and_verify"},
                id="close-keeps-lookups",
            ),
            pytest.param(
                "broken_stores.RotationKeepsOldHint()",
                "Capabilities()",
                {
                    "test_rotation_rewrites_the_whole_record",
                    "test_every_change_reads_back_whole",
                },
                id="rotation-keeps-old-hint",
            ),
            pytest.param(
                "broken_stores.MemberGrantsMerged()",
                "Capabilities()",
                {
                    "test_member_grants_follow_every_change",
                    "test_every_change_reads_back_whole",
                },
                id="member-grants-never-shrink",
            ),
        ],
    )
    def test_kit_catches_it(
        self, tmp_path: Path, store: str, capabilities: str, must_fail: set[str]
    ) -> None:
        """Each named test, run against the broken adapter, fails."""
        outcomes = run_kit(tmp_path, store, capabilities, select=must_fail)
        assert set(outcomes) == must_fail, outcomes
        assert failed(outcomes) == must_fail, outcomes
