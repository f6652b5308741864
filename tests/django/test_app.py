"""The app around the store: migrations, settings, system checks, the
store's own refusals, and a new account's creators serialised."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.apps import apps
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import override_settings

from troopauth import Grant, InvalidArgument, MemoryStore, TroopAuth
from troopauth.django import get_auth, troopauth_settings
from troopauth.django.store import DjangoStore
from troopauth.store import AccountRecord

from .conftest import empty, migrated

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class TestMigrations:
    """The committed migration matches the models."""

    def test_no_missing_migration(self) -> None:
        """makemigrations --check finds nothing to write."""
        out = io.StringIO()
        call_command("makemigrations", "troopauth", "--check", "--dry-run", stdout=out)
        assert "No changes detected" in out.getvalue()


class TestSettings:
    """TROOPAUTH is read lazily, checked, and re-read when it changes."""

    def test_defaults_and_overrides(self) -> None:
        """Keys left out keep their defaults; override_settings is seen."""
        assert troopauth_settings.KEYWORD == "Bearer"
        assert troopauth_settings.REALM == "tests"
        with override_settings(TROOPAUTH={}):
            assert troopauth_settings.REALM == "api"
        assert troopauth_settings.REALM == "tests"

    @pytest.mark.parametrize(
        "given",
        [
            {"REALMS": "x"},
            {"REALM": 'a"b'},
            {"KEYWORD": "two words"},
            {"STORE": "troopauth.nowhere.Store"},
            {"STORE": 42},
        ],
    )
    def test_bad_settings_are_refused(self, given: dict[str, Any]) -> None:
        """Unknown keys, a realm that is no quoted-string, a keyword of two
        words and a store that cannot be built: ImproperlyConfigured."""
        with override_settings(TROOPAUTH=given), pytest.raises(ImproperlyConfigured):
            get_auth()

    def test_store_is_a_callable(self) -> None:
        """STORE may be a callable; get_auth builds one facade over it, and a
        settings change closes that store."""
        made: list[MemoryStore] = []

        def factory() -> MemoryStore:
            made.append(MemoryStore())
            return made[-1]

        with override_settings(TROOPAUTH={"STORE": factory}):
            auth = get_auth()
            assert isinstance(auth, TroopAuth)
            assert auth.store is made[0]
            assert get_auth() is auth
        assert get_auth().store is not made[0]
        with pytest.raises(Exception, match="closed"):
            made[0].transaction("acct").__enter__()

    def test_use_tz_is_checked(self) -> None:
        """USE_TZ = False: the system check troopauth.E001, and DjangoStore
        refuses to be built."""
        assert not [e for e in run_checks() if e.id == "troopauth.E001"]
        with override_settings(USE_TZ=False):
            assert [e.id for e in run_checks() if e.id.startswith("troopauth")] == [
                "troopauth.E001"
            ]
            with pytest.raises(InvalidArgument):
                DjangoStore()


class TestDjangoStoreArguments:
    """What DjangoStore refuses when built."""

    def test_unknown_alias(self) -> None:
        """A database alias not in settings.DATABASES: InvalidArgument."""
        with pytest.raises(InvalidArgument):
            DjangoStore(using="nowhere")

    def test_repr_names_the_alias(self) -> None:
        """repr shows the alias, nothing of the connection."""
        assert repr(DjangoStore()) == "DjangoStore(using='default')"


@pytest.mark.parametrize("alias", ["default", "immediate", "postgres"])
def test_creators_of_one_new_account_are_serialised(alias: str) -> None:
    """Two transactions on an account that does not exist yet: the second
    waits for the first and then sees the account it created (no lost
    creation, on each backend)."""
    empty(migrated(alias))
    store = DjangoStore(using=alias)
    first_read = threading.Event()
    seen: list[Any] = []
    failures: list[BaseException] = []

    def second() -> None:
        try:
            first_read.wait(10)
            with store.transaction("acct_new") as tx:
                seen.append(tx.get_account())
        except BaseException as exc:  # the main thread reports it
            failures.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    with store.transaction("acct_new") as tx:
        assert tx.get_account() is None
        first_read.set()
        thread.join(0.5)
        assert thread.is_alive(), "the second creator did not wait"
        tx.put_account(AccountRecord("acct_new", 3, audit_log=False, created_at=T0))
    thread.join(30)
    assert not failures, failures
    assert len(seen) == 1
    assert seen[0] is not None
    assert seen[0].seats == 3


@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_no_value_in_any_column(alias: str) -> None:
    """After issue, rotate (with an overlap), member changes and a leak
    report, no row of any troopauth table holds a token value, nor its
    random part."""
    empty(migrated(alias))
    auth = TroopAuth(DjangoStore(using=alias))
    acct = auth.create_account(seats=3, audit_log=True)
    troop = auth.create_troop(acct.id, "t").id
    pat = auth.issue_personal_token(acct.id).value
    owner = auth.authenticate(pat)
    first = auth.issue_token(owner, troop, Grant.full(), name="ci")
    again = auth.rotate(owner, first.token_id, overlap=timedelta(hours=1))
    auth.add_member(owner, troop, "alice", Grant.full())
    other = auth.issue_token(owner, troop, Grant.full())
    auth.report_leak(other.value)
    values = [pat, first.value, again.value, other.value]
    rows = [
        repr(row)
        for model in apps.get_app_config("troopauth").get_models()
        for row in model.objects.using(alias).values_list()
    ]
    assert len(rows) > 10
    text = "\n".join(rows)
    for value in values:
        assert value not in text
        assert value[8:38] not in text
