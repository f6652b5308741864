"""The hash-chained audit logs: intact chains pass, tampered ones name the
first broken event, on every store and in audit.first_broken itself."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from troopauth import (
    AuditAction,
    AuditEvent,
    Grant,
    MemoryStore,
    NotFound,
    SQLiteStore,
    TroopAuth,
)
from troopauth.audit import first_broken, seal
from troopauth.postgres import PostgresStore
from troopauth.serialization import converter
from troopauth.store import GENESIS

from .strategies import grants

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

#: The actions the chain fixture performs in the troop, in order.
CHAIN_ACTIONS = [
    AuditAction.ISSUE,
    AuditAction.MEMBER_ADD,
    AuditAction.ATTACH,
    AuditAction.ROTATE,
    AuditAction.MEMBER_REMOVE,
    AuditAction.REVOKE,
]
N = len(CHAIN_ACTIONS)
FORGED_ID = "tok_forged"


# -- direct access to a stored log, bypassing troopauth ---------------------


class RawLog:
    """One stored audit log, read and rewritten behind troopauth's back."""

    def events(self) -> list[AuditEvent]:
        """The stored events, in stored order."""
        raise NotImplementedError

    def edit(self, seq: int, /, **changes: Any) -> None:
        """Change fields of the event stored at *seq*."""
        raise NotImplementedError

    def drop(self, seq: int) -> None:
        """Delete the event stored at *seq*."""
        raise NotImplementedError

    def swap(self, i: int, j: int) -> None:
        """Exchange the events stored at *i* and *j*."""
        raise NotImplementedError

    def rewrite(self, events: list[AuditEvent]) -> None:
        """Replace the whole log with *events*."""
        raise NotImplementedError


class MemoryLog(RawLog):
    """A MemoryStore log: ``store._audit[(account_id, troop_id)]``."""

    def __init__(self, store: MemoryStore, account_id: str, troop_id: str | None):
        self._list = store._audit[(account_id, troop_id)]

    def events(self) -> list[AuditEvent]:
        return list(self._list)

    def _index(self, seq: int) -> int:
        return next(i for i, e in enumerate(self._list) if e.seq == seq)

    def edit(self, seq: int, /, **changes: Any) -> None:
        i = self._index(seq)
        self._list[i] = attrs.evolve(self._list[i], **changes)

    def drop(self, seq: int) -> None:
        del self._list[self._index(seq)]

    def swap(self, i: int, j: int) -> None:
        a, b = self._index(i), self._index(j)
        self._list[a], self._list[b] = self._list[b], self._list[a]

    def rewrite(self, events: list[AuditEvent]) -> None:
        self._list[:] = events


class SQLiteLog(RawLog):
    """A SQLiteStore log: rows of ``audit(log, seq, account_id, event JSON)``,
    changed through a raw sqlite3 connection to the file."""

    def __init__(self, store: SQLiteStore, account_id: str, troop_id: str | None):
        self._path = store._path
        self._account_id = account_id
        self._log = troop_id if troop_id is not None else f"account:{account_id}"

    def _run(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self._path)) as conn:
            rows = conn.execute(sql, args).fetchall()
            conn.commit()
        return rows

    def _rows(self) -> list[tuple[int, str]]:
        return [
            (r[0], r[1])
            for r in self._run(
                "SELECT seq, event FROM audit WHERE log = ? ORDER BY seq", self._log
            )
        ]

    def events(self) -> list[AuditEvent]:
        return [
            converter.structure(json.loads(text), AuditEvent)
            for _, text in self._rows()
        ]

    def _put(self, seq: int, event: AuditEvent) -> None:
        self._run(
            "UPDATE audit SET event = ? WHERE log = ? AND seq = ?",
            json.dumps(converter.unstructure(event)),
            self._log,
            seq,
        )

    def edit(self, seq: int, /, **changes: Any) -> None:
        event = next(e for e in self.events() if e.seq == seq)
        self._put(seq, attrs.evolve(event, **changes))

    def drop(self, seq: int) -> None:
        self._run("DELETE FROM audit WHERE log = ? AND seq = ?", self._log, seq)

    def swap(self, i: int, j: int) -> None:
        texts = dict(self._rows())
        self._run(
            "UPDATE audit SET event = ? WHERE log = ? AND seq = ?",
            texts[j],
            self._log,
            i,
        )
        self._run(
            "UPDATE audit SET event = ? WHERE log = ? AND seq = ?",
            texts[i],
            self._log,
            j,
        )

    def rewrite(self, events: list[AuditEvent]) -> None:
        self._run("DELETE FROM audit WHERE log = ?", self._log)
        for position, event in enumerate(events, start=1):
            self._run(
                "INSERT INTO audit VALUES (?, ?, ?, ?)",
                self._log,
                position,
                self._account_id,
                json.dumps(converter.unstructure(event)),
            )


class PostgresLog(RawLog):
    """A PostgresStore log: rows of ``<schema>.audit(log, seq, account_id, event
    JSONB)``, changed through a connection of the store's pool."""

    def __init__(self, store: PostgresStore, account_id: str, troop_id: str | None):
        self._pool = store._pool
        self._table = f'"{store.schema}".audit'
        self._account_id = account_id
        self._log = troop_id if troop_id is not None else f"account:{account_id}"

    def _run(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        with self._pool.connection() as conn:
            cur = conn.execute(query.replace("audit", self._table, 1), args)
            return cur.fetchall() if cur.description else []

    def _rows(self) -> list[tuple[int, Any]]:
        return [
            (r[0], r[1])
            for r in self._run(
                "SELECT seq, event FROM audit WHERE log = %s ORDER BY seq", self._log
            )
        ]

    def events(self) -> list[AuditEvent]:
        return [converter.structure(data, AuditEvent) for _, data in self._rows()]

    def _put(self, seq: int, data: Any) -> None:
        self._run(
            "UPDATE audit SET event = %s WHERE log = %s AND seq = %s",
            Jsonb(data),
            self._log,
            seq,
        )

    def edit(self, seq: int, /, **changes: Any) -> None:
        event = next(e for e in self.events() if e.seq == seq)
        self._put(seq, converter.unstructure(attrs.evolve(event, **changes)))

    def drop(self, seq: int) -> None:
        self._run("DELETE FROM audit WHERE log = %s AND seq = %s", self._log, seq)

    def swap(self, i: int, j: int) -> None:
        rows = dict(self._rows())
        self._put(i, rows[j])
        self._put(j, rows[i])

    def rewrite(self, events: list[AuditEvent]) -> None:
        self._run("DELETE FROM audit WHERE log = %s", self._log)
        for position, event in enumerate(events, start=1):
            self._run(
                "INSERT INTO audit VALUES (%s, %s, %s, %s)",
                self._log,
                position,
                self._account_id,
                Jsonb(converter.unstructure(event)),
            )


def raw_log(store: object, account_id: str, troop_id: str | None) -> RawLog:
    """The raw view of a log in any built-in store."""
    if isinstance(store, MemoryStore):
        return MemoryLog(store, account_id, troop_id)
    if isinstance(store, PostgresStore):
        return PostgresLog(store, account_id, troop_id)
    assert isinstance(store, SQLiteStore)
    return SQLiteLog(store, account_id, troop_id)


@attrs.frozen
class Chain:
    """An Apex account whose troop log holds the CHAIN_ACTIONS events."""

    auth: TroopAuth
    account_id: str
    troop_id: str
    other_troop_id: str
    values: tuple[str, ...]
    log: RawLog
    account_log: RawLog


@pytest.fixture
def chain(auth, store, clock) -> Chain:
    """Six changes in one troop of an account that keeps its audit log."""
    acct = auth.create_account(seats=3, audit_log=True)
    troop = auth.create_troop(acct.id, "payments")
    other = auth.create_troop(acct.id, "other")
    pat = auth.issue_personal_token(acct.id)
    owner = auth.authenticate(pat.value)
    ci = auth.issue_token(owner, troop.id, Grant.parse("edit", "key:deploy"), name="ci")
    clock.advance(seconds=1)
    auth.add_member(owner, troop.id, "alice", Grant.parse("view"))
    clock.advance(seconds=1)
    auth.attach(owner, ci.token_id, troop.id, Grant.parse("view,edit", "key:prod/*"))
    clock.advance(seconds=1)
    rotated = auth.rotate(owner, ci.token_id)
    clock.advance(minutes=5)
    auth.remove_member(owner, troop.id, "alice")
    clock.advance(seconds=1)
    auth.revoke(owner, ci.token_id)
    return Chain(
        auth,
        acct.id,
        troop.id,
        other.id,
        (pat.value, ci.value, rotated.value),
        raw_log(store, acct.id, troop.id),
        raw_log(store, acct.id, None),
    )


# -- the chain through TroopAuth ---------------------------------------------


class TestIntactChain:
    """check_audit_log on untouched logs."""

    def test_events_recorded_in_order(self, chain):
        """Each change appended one event, seq 1..n, oldest first."""
        events = chain.auth.audit_log(chain.troop_id)
        assert [e.seq for e in events] == list(range(1, N + 1))
        assert [e.action for e in events] == CHAIN_ACTIONS
        assert chain.log.events() == events

    def test_intact_chain_passes(self, chain):
        """An untouched log checks out: None."""
        assert chain.auth.check_audit_log(chain.troop_id) is None

    def test_empty_log_passes(self, chain):
        """A troop with no events checks out."""
        assert chain.auth.audit_log(chain.other_troop_id) == []
        assert chain.auth.check_audit_log(chain.other_troop_id) is None

    def test_events_link_to_previous(self, chain):
        """Each event is chained onto the one before it, from the genesis hash."""
        events = chain.auth.audit_log(chain.troop_id)
        prev = GENESIS
        for event in events:
            again = seal(
                prev,
                event.seq,
                event.at,
                account_id=event.account_id,
                troop_id=event.troop_id,
                action=event.action,
                actor=event.actor,
                token_id=event.token_id,
                member_id=event.member_id,
                grant=event.grant,
            )
            assert again == event
            prev = event.hash

    def test_no_secret_in_events(self, chain):
        """No event, in any form, holds a token value."""
        for events in (chain.log.events(), chain.account_log.events()):
            text = json.dumps(converter.unstructure(events)) + repr(events)
            for value in chain.values:
                assert value not in text
                assert value[8:38] not in text

    def test_plan_without_audit_log(self, auth):
        """An account whose plan keeps no log records nothing and checks out."""
        acct = auth.create_account(seats=1, audit_log=False)
        troop = auth.create_troop(acct.id, "t")
        owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
        auth.issue_token(owner, troop.id, Grant.parse("view"))
        assert auth.audit_log(troop.id) == []
        assert auth.check_audit_log(troop.id) is None
        assert auth.account_audit_log(acct.id) == []
        assert auth.check_account_audit_log(acct.id) is None

    def test_unknown_troop_or_account(self, auth):
        """Checking a log that does not exist is NotFound."""
        with pytest.raises(NotFound):
            auth.check_audit_log("troop_nope")
        with pytest.raises(NotFound):
            auth.check_account_audit_log("acct_nope")


class TestTamperedChain:
    """check_audit_log names the first broken seq after direct storage edits."""

    @pytest.mark.parametrize("seq", range(1, N + 1))
    @pytest.mark.parametrize(
        "changes",
        [
            {"actor": "member:mallory"},
            {"action": AuditAction.ATTACH},
            {"token_id": "tok_forged"},
            {"grant": Grant.full()},
            {"at": T0 - timedelta(days=1)},
            {"member_id": "mallory"},
            {"account_id": "acct_other"},
            {"hash": "f" * 64},
        ],
        ids=[
            "actor",
            "action",
            "token_id",
            "grant",
            "at",
            "member_id",
            "account",
            "hash",
        ],
    )
    def test_edited_event(self, chain, seq, changes):
        """Editing any field of event k breaks the chain at k."""
        event = next(e for e in chain.log.events() if e.seq == seq)
        changes = {k: v for k, v in changes.items() if getattr(event, k) != v} or {
            "actor": "member:mallory"
        }
        chain.log.edit(seq, **changes)
        assert chain.auth.check_audit_log(chain.troop_id) == seq

    @pytest.mark.parametrize("seq", range(1, N + 1))
    def test_edited_seq(self, chain, seq):
        """An event claiming another seq breaks the chain at its place."""
        chain.log.edit(seq, seq=seq + 100)
        assert chain.auth.check_audit_log(chain.troop_id) == seq

    @pytest.mark.parametrize("seq", range(1, N))
    def test_dropped_event(self, chain, seq):
        """Dropping event k (not the last) breaks the chain at k."""
        chain.log.drop(seq)
        assert chain.auth.check_audit_log(chain.troop_id) == seq

    @pytest.mark.parametrize(
        ("i", "j"), [(1, 2), (2, 3), (2, 5), (1, N), (N - 1, N), (3, 4)]
    )
    def test_swapped_events(self, chain, i, j):
        """Swapping events i < j breaks the chain at i."""
        chain.log.swap(i, j)
        assert chain.auth.check_audit_log(chain.troop_id) == i

    def test_dropped_tail(self, chain):
        """Dropping the last event is caught at its seq."""
        chain.log.drop(N)
        assert chain.auth.check_audit_log(chain.troop_id) == N

    def test_dropped_tail_of_three(self, chain):
        """Dropping the last three events names the first missing one."""
        for seq in (N, N - 1, N - 2):
            chain.log.drop(seq)
        assert chain.auth.check_audit_log(chain.troop_id) == N - 2

    def test_dropped_everything(self, chain):
        """An emptied log is broken at 1."""
        chain.log.rewrite([])
        assert chain.auth.check_audit_log(chain.troop_id) == 1

    def test_forged_extra_event(self, chain):
        """A well-sealed event appended past the head is caught at head + 1."""
        events = chain.log.events()
        last = events[-1]
        forged = seal(
            last.hash,
            last.seq + 1,
            last.at,
            account_id=last.account_id,
            troop_id=last.troop_id,
            action=AuditAction.MEMBER_ADD,
            actor="personal:forged",
            member_id="mallory",
            grant=Grant.full(),
        )
        chain.log.rewrite([*events, forged])
        assert chain.auth.check_audit_log(chain.troop_id) == N + 1

    def test_resealed_rewrite_caught_at_head(self, chain):
        """Editing an event and re-sealing every later one is caught against
        the head kept on the troop (named at the last seq)."""
        events = chain.log.events()
        rebuilt: list[AuditEvent] = []
        prev = GENESIS
        for event in events:
            actor = "member:mallory" if event.seq == 2 else event.actor
            sealed = seal(
                prev,
                event.seq,
                event.at,
                account_id=event.account_id,
                troop_id=event.troop_id,
                action=event.action,
                actor=actor,
                token_id=event.token_id,
                member_id=event.member_id,
                grant=event.grant,
            )
            rebuilt.append(sealed)
            prev = sealed.hash
        chain.log.rewrite(rebuilt)
        assert first_broken(rebuilt, N, rebuilt[-1].hash) is None  # self-consistent
        assert chain.auth.check_audit_log(chain.troop_id) == N

    def test_event_from_another_troop(self, chain, store):
        """Splicing in another troop's event is caught where it lands."""
        auth = chain.auth
        acct = auth.create_account(seats=1, audit_log=True)
        troop = auth.create_troop(acct.id, "x")
        owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
        auth.add_member(owner, troop.id, "bob", Grant.parse("view"))
        stranger = raw_log(store, acct.id, troop.id).events()[0]
        events = chain.log.events()
        events[0] = stranger
        chain.log.rewrite(events)
        assert chain.auth.check_audit_log(chain.troop_id) == 1

    def test_other_logs_unaffected(self, chain):
        """Tampering with one troop's log leaves the account log intact."""
        chain.log.edit(3, actor="member:mallory")
        assert chain.auth.check_audit_log(chain.troop_id) == 3
        assert chain.auth.check_account_audit_log(chain.account_id) is None


class TestAccountLog:
    """The account's own log: PAT issue and replacement."""

    def test_pat_issue_and_replace(self, auth, store):
        """Issuing then replacing the PAT appends pat.issue then pat.replace."""
        acct = auth.create_account(seats=1, audit_log=True)
        first = auth.issue_personal_token(acct.id)
        second = auth.issue_personal_token(acct.id)
        events = auth.account_audit_log(acct.id)
        assert [e.action for e in events] == [
            AuditAction.PAT_ISSUE,
            AuditAction.PAT_REPLACE,
        ]
        assert [e.seq for e in events] == [1, 2]
        assert [e.token_id for e in events] == [first.token_id, second.token_id]
        assert all(e.troop_id is None for e in events)
        assert auth.check_account_audit_log(acct.id) is None
        assert raw_log(store, acct.id, None).events() == events

    def test_pat_events_stay_out_of_troop_logs(self, auth):
        """PAT events go to the account log only."""
        acct = auth.create_account(seats=1, audit_log=True)
        troop = auth.create_troop(acct.id, "t")
        auth.issue_personal_token(acct.id)
        auth.issue_personal_token(acct.id)
        assert auth.audit_log(troop.id) == []
        assert len(auth.account_audit_log(acct.id)) == 2

    @pytest.fixture
    def account_chain(self, auth, store, clock):
        """An account log of three PAT events, and its raw view."""
        acct = auth.create_account(seats=1, audit_log=True)
        for _ in range(3):
            auth.issue_personal_token(acct.id)
            clock.advance(seconds=1)
        return acct.id, raw_log(store, acct.id, None)

    @pytest.mark.parametrize("seq", [1, 2, 3])
    def test_edited_account_event(self, auth, account_chain, seq):
        """Editing account event k breaks the account log at k."""
        account_id, log = account_chain
        log.edit(seq, token_id=FORGED_ID)
        assert auth.check_account_audit_log(account_id) == seq

    def test_dropped_account_tail(self, auth, account_chain):
        """Dropping the last PAT event is caught."""
        account_id, log = account_chain
        log.drop(3)
        assert auth.check_account_audit_log(account_id) == 3

    def test_swapped_account_events(self, auth, account_chain):
        """Swapping two PAT events is caught at the first."""
        account_id, log = account_chain
        log.swap(1, 2)
        assert auth.check_account_audit_log(account_id) == 1


# -- audit.first_broken on hand-built chains --------------------------------


def build(n: int, grant_list: list[Grant | None] | None = None) -> list[AuditEvent]:
    """A sealed chain of *n* events."""
    events: list[AuditEvent] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        grant = grant_list[seq - 1] if grant_list else None
        event = seal(
            prev,
            seq,
            T0 + timedelta(seconds=seq),
            account_id="acct_a",
            troop_id="troop_t",
            action=AuditAction.ATTACH,
            actor="personal:tok_p",
            token_id=f"tok_{seq}",
            grant=grant,
        )
        events.append(event)
        prev = event.hash
    return events


def check(events: list[AuditEvent], intact: list[AuditEvent]) -> int | None:
    """first_broken against the head of the intact chain."""
    head_seq = len(intact)
    head_hash = intact[-1].hash if intact else GENESIS
    return first_broken(events, head_seq, head_hash)


chain_sizes = st.integers(1, 8)


class TestFirstBroken:
    """audit.first_broken."""

    def test_empty_log_at_genesis(self):
        """No events and a head at genesis: intact."""
        assert first_broken([], 0, GENESIS) is None

    def test_empty_log_with_head(self):
        """No events but a head at 3: the first event is missing."""
        assert first_broken([], 3, "a" * 64) == 1

    @given(chain_sizes)
    def test_intact(self, n):
        """An untouched chain is intact."""
        events = build(n)
        assert check(events, events) is None

    @given(
        st.integers(1, 8).flatmap(
            lambda n: st.tuples(
                st.just(n), st.lists(st.none() | grants, min_size=n, max_size=n)
            )
        )
    )
    def test_intact_with_grants(self, n_grants):
        """Chains whose events carry grants are intact too."""
        n, grant_list = n_grants
        events = build(n, grant_list)
        assert check(events, events) is None

    @given(chain_sizes, st.data())
    def test_edited(self, n, data):
        """Editing event k breaks the chain at k."""
        events = build(n)
        k = data.draw(st.integers(1, n), label="k")
        field = data.draw(
            st.sampled_from(["actor", "token_id", "grant", "at", "member_id", "hash"]),
            label="field",
        )
        new_value = {
            "actor": "member:m",
            "token_id": "tok_x",
            "grant": Grant.full(),
            "at": T0,
            "member_id": "m",
            "hash": "0" * 64,
        }[field]
        tampered = list(events)
        tampered[k - 1] = attrs.evolve(events[k - 1], **{field: new_value})
        assert check(tampered, events) == k

    @given(chain_sizes, st.data())
    def test_dropped(self, n, data):
        """Dropping event k breaks the chain at k (the tail too)."""
        events = build(n)
        k = data.draw(st.integers(1, n), label="k")
        tampered = events[: k - 1] + events[k:]
        assert check(tampered, events) == k

    @given(st.integers(2, 8), st.data())
    def test_swapped(self, n, data):
        """Swapping events i < j breaks the chain at i."""
        events = build(n)
        i = data.draw(st.integers(1, n - 1), label="i")
        j = data.draw(st.integers(i + 1, n), label="j")
        tampered = list(events)
        tampered[i - 1], tampered[j - 1] = tampered[j - 1], tampered[i - 1]
        assert check(tampered, events) == i

    @given(chain_sizes, st.data())
    def test_truncated(self, n, data):
        """Keeping only the first m < n events names m + 1."""
        events = build(n)
        m = data.draw(st.integers(0, n - 1), label="m")
        assert check(events[:m], events) == m + 1

    @given(chain_sizes)
    def test_extra_event_past_head(self, n):
        """A chain longer than its head names head + 1."""
        longer = build(n + 1)
        assert first_broken(longer, n, longer[n - 1].hash) == n + 1

    @given(chain_sizes)
    def test_wrong_head_hash(self, n):
        """A consistent chain that does not end at the head hash is caught at
        the head's seq."""
        events = build(n)
        assert first_broken(events, n, "e" * 64) == n

    def test_seal_normalises_time_to_utc(self):
        """seal stores the time in UTC, the same instant."""
        local = datetime(
            2026, 1, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))
        )
        event = seal(
            GENESIS,
            1,
            local,
            account_id="a",
            troop_id="t",
            action=AuditAction.ISSUE,
            actor="personal:p",
        )
        assert event.at == local
        assert event.at.utcoffset() == timedelta(0)
        assert first_broken([event], 1, event.hash) is None
