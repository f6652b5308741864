"""``last_used_at`` on DjangoStore: written by record_last_used only, read
back into every record, skipped (never waited for) on PostgreSQL while a
change holds the row."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.db import transaction as db_transaction

from troopauth import Grant, Permission, Scope, StoreError, TroopAuth
from troopauth.django.models import Token
from troopauth.django.store import DjangoStore

from .conftest import empty, migrated

T0 = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
EDIT_DEPLOY = Grant(Permission.EDIT, Scope.parse("key:deploy"))


@pytest.mark.parametrize("alias", ["default", "immediate", "postgres"])
def test_a_verify_is_stamped_and_read_back(alias: str) -> None:
    """A verify, flushed, stamps the token's row with the facade's clock to
    the microsecond; token() and tokens() read it back, and a later change
    (an attach, through put_token) keeps it."""
    empty(migrated(alias))
    now = [T0]
    auth = TroopAuth(DjangoStore(using=alias), clock=lambda: now[0])
    acct = auth.create_account(seats=2)
    troop = auth.create_troop(acct.id, "t").id
    owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
    issued = auth.issue_token(owner, troop, EDIT_DEPLOY, name="ci")
    auth.flush_last_used()
    assert auth.token(issued.token_id).last_used_at is None
    auth.verify(issued.value, troop, Permission.EDIT, key="deploy")
    now[0] = T0 + timedelta(seconds=5)
    auth.flush_last_used()
    row = Token.objects.using(alias).get(pk=issued.token_id)
    assert row.last_used_at == T0 + timedelta(seconds=5)
    assert auth.token(issued.token_id).last_used_at == T0 + timedelta(seconds=5)
    other = auth.create_troop(acct.id, "other").id
    auth.attach(owner, issued.token_id, other, EDIT_DEPLOY)
    listed = {t.token_id: t for t in auth.tokens(other)}
    assert listed[issued.token_id].last_used_at == T0 + timedelta(seconds=5)


@pytest.mark.parametrize("alias", ["default", "postgres"])
def test_stamps_of_many_tokens_never_move_back(alias: str) -> None:
    """More ids than one statement takes, two stamps: each row keeps the
    later of its stamps; ids that are gone are skipped."""
    empty(migrated(alias))
    auth = TroopAuth(DjangoStore(using=alias), last_used_interval=None)
    acct = auth.create_account(seats=3)
    owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
    troop = auth.create_troop(acct.id, "t").id
    ids = [
        auth.issue_token(
            owner,
            troop,
            EDIT_DEPLOY,
        ).token_id
        for _ in range(3)
    ]
    store = DjangoStore(using=alias)
    later = T0 + timedelta(minutes=1)
    gone = [f"tok_gone_{n}" for n in range(1200)]
    store.record_last_used({ids[0]: later, **dict.fromkeys(gone, T0)})
    store.record_last_used({ids[0]: T0, ids[1]: T0, **dict.fromkeys(gone, later)})
    stamps = dict(
        Token.objects.using(alias).filter(pk__in=ids).values_list("pk", "last_used_at")
    )
    assert stamps == {ids[0]: later, ids[1]: T0, ids[2]: None}


def test_postgres_skips_a_row_a_change_holds() -> None:
    """While a change holds a token's row (FOR UPDATE), a stamp skips that
    row instead of waiting for it, and stamps the others; the held row is
    stamped by the next stamp after the change ends."""
    alias = migrated("postgres")
    empty(alias)
    auth = TroopAuth(DjangoStore(using=alias), last_used_interval=None)
    acct = auth.create_account(seats=2)
    owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
    troop = auth.create_troop(acct.id, "t").id
    held, free = (
        auth.issue_token(
            owner,
            troop,
            EDIT_DEPLOY,
        ).token_id
        for _ in range(2)
    )
    locked, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        try:
            with db_transaction.atomic(using=alias):
                Token.objects.using(alias).select_for_update().get(pk=held)
                locked.set()
                release.wait(60)
        except BaseException as exc:  # the main thread reports it
            failures.append(exc)
        finally:
            locked.set()
            connections[alias].close()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(30)
        DjangoStore(using=alias).record_last_used({held: T0, free: T0})
        # the holder is still waiting for release: the stamp did not wait
        assert thread.is_alive()
    finally:
        release.set()
        thread.join(30)
    assert not failures, failures
    stamps = dict(Token.objects.using(alias).values_list("pk", "last_used_at"))
    assert (stamps[held], stamps[free]) == (None, T0)
    DjangoStore(using=alias).record_last_used({held: T0})
    assert Token.objects.using(alias).get(pk=held).last_used_at == T0


def test_a_broken_connection_is_let_go() -> None:
    """In a thread that makes no request (as the facade's writer), a stamp on
    a connection closed underneath Django fails with StoreError, and the next
    stamp reconnects and lands."""
    alias = migrated("default")
    empty(alias)
    auth = TroopAuth(DjangoStore(using=alias), last_used_interval=None)
    acct = auth.create_account(seats=1)
    owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
    troop = auth.create_troop(acct.id, "t").id
    token_id = auth.issue_token(owner, troop, EDIT_DEPLOY).token_id
    outcomes: list[object] = []

    def writer() -> None:
        store = DjangoStore(using=alias)
        try:
            store.record_last_used({token_id: T0})
            connections[alias].connection.close()  # the driver's, underneath
            try:
                store.record_last_used({token_id: T0 + timedelta(seconds=1)})
            except StoreError as exc:
                outcomes.append(exc)
            store.record_last_used({token_id: T0 + timedelta(seconds=2)})
            outcomes.append("stamped")
        except BaseException as exc:  # the main thread reports it
            outcomes.append(exc)
        finally:
            connections[alias].close()

    thread = threading.Thread(target=writer)
    thread.start()
    thread.join(60)
    assert len(outcomes) == 2, outcomes
    assert isinstance(outcomes[0], StoreError)
    assert outcomes[1] == "stamped"
    stamp = Token.objects.using(alias).get(pk=token_id).last_used_at
    assert stamp == T0 + timedelta(seconds=2)
