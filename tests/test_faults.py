"""SIGKILL in the middle of a stream of changes, on SQLiteStore and PostgresStore.

A child process issues, attaches, detaches, rotates and revokes tokens and
records each change before it starts and after it returned (unbuffered, one
line per write). The parent kills it with SIGKILL at a random point, reopens
the store and checks that every change is wholly there with its audit events
or wholly absent: the one change in flight either way, every returned change
present, seats used equal to the live seated tokens, and every value the child
saw returned (and did not later rotate or revoke) still verifies.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from troopauth import (
    AccessDenied,
    AuditAction,
    Grant,
    InvalidToken,
    SeatsExhausted,
    SQLiteStore,
    TroopAuth,
)

from .conftest import empty_postgres_schema

#: Child processes killed per store, one after the other (each on a new account).
ROUNDS = 8
#: The most changes a child makes; it is always killed long before.
MAX_CHANGES = 5000
#: The child is killed once it has reported between these many changes.
KILL_AFTER = (5, 60)
SEATS = 5
TROOPS = 3
GRANTS = (Grant.parse("view"), Grant.parse("view,edit"), Grant.parse("view,use"))
PATIENCE = 120.0
CHILD_APP = "troopauth-fault-child"


@attrs.frozen
class Target:
    """Where the store lives; picklable, so a spawned child can open it too."""

    kind: str
    where: str
    schema: str = ""

    def open(self) -> Any:
        """A new store on the target."""
        if self.kind == "sqlite":
            return SQLiteStore(self.where)
        from troopauth.postgres import PostgresStore

        return PostgresStore(self.where, schema=self.schema, min_size=1, max_size=1)


@attrs.frozen
class World:
    """One account for one round: its troops and PAT value."""

    account_id: str
    troop_ids: tuple[str, ...]
    pat_value: str


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """Each durable store, empty."""
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "faults.db"))
        return
    from psycopg.conninfo import make_conninfo

    pool = request.getfixturevalue("postgres_pool")
    schema = request.getfixturevalue("postgres_schema")
    from troopauth.postgres import PostgresStore

    PostgresStore(pool=pool, schema=schema).close()
    empty_postgres_schema(pool, schema)
    dsn = request.getfixturevalue("postgres_dsn")
    yield Target("postgres", make_conninfo(dsn, application_name=CHILD_APP), schema)


# -- the child -----------------------------------------------------------------------


def _churn(target: Target, world: World, log_path: str, seed: int) -> None:
    """Child process: make changes until killed, logging each before and after."""
    rng = random.Random(seed)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def log(**entry: Any) -> None:
        os.write(fd, (json.dumps(entry) + "\n").encode())

    store = target.open()
    auth = TroopAuth(store)
    actor = auth.authenticate(world.pat_value)
    # token id -> (value, {troop id: grant index}): what the child holds live.
    live: dict[str, tuple[str, dict[str, int]]] = {}
    log(state="ready")
    for n in range(MAX_CHANGES):
        if len(live) < SEATS and (not live or rng.random() < 0.35):
            troop, g = rng.choice(world.troop_ids), rng.randrange(len(GRANTS))
            log(state="begin", n=n, op="issue", troop=troop, grant=g)
            try:
                issued = auth.issue_token(actor, troop, GRANTS[g])
            except SeatsExhausted:  # pragma: no cover (the child counts seats)
                log(state="refused", n=n)
                continue
            live[issued.token_id] = (issued.value, {troop: g})
            log(state="done", n=n, token=issued.token_id, value=issued.value)
            continue
        token = rng.choice(sorted(live))
        troops = live[token][1]
        free = [t for t in world.troop_ids if t not in troops]
        op = rng.choice(["rotate", "revoke", "attach", "detach"])
        if op == "attach" and free:
            troop, g = rng.choice(free), rng.randrange(len(GRANTS))
            log(state="begin", n=n, op="attach", token=token, troop=troop, grant=g)
            auth.attach(actor, token, troop, GRANTS[g])
            troops[troop] = g
            log(state="done", n=n)
        elif op == "detach" and len(troops) > 1:
            troop = rng.choice(sorted(troops))
            log(state="begin", n=n, op="detach", token=token, troop=troop)
            auth.detach(actor, token, troop)
            del troops[troop]
            log(state="done", n=n)
        elif op == "revoke":
            log(state="begin", n=n, op="revoke", token=token)
            auth.revoke(actor, token)
            del live[token]
            log(state="done", n=n)
        else:
            log(state="begin", n=n, op="rotate", token=token)
            renewed = auth.rotate(actor, token)
            live[token] = (renewed.value, troops)
            log(state="done", n=n, value=renewed.value)


# -- the parent ------------------------------------------------------------------------


def _entries(log_path: Path) -> list[dict[str, Any]]:
    """The complete lines of the child's log (a torn last line is left out)."""
    if not log_path.exists():
        return []
    text = log_path.read_text()
    lines = text.split("\n")[:-1]  # the part after the last newline is torn
    return [json.loads(line) for line in lines]


def _kill_mid_stream(target: Target, world: World, log_path: Path, seed: int) -> int:
    """Run the child; SIGKILL it after a random number of changes; return how
    many it reported done."""
    kill_after = random.Random(seed).randint(*KILL_AFTER)
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_churn, args=(target, world, str(log_path), seed))
    child.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            done = sum(1 for e in _entries(log_path) if e["state"] == "done")
            if done >= kill_after:
                break
            assert child.is_alive(), "the child stopped before it was killed"
            assert time.monotonic() < deadline, "the child made too few changes"
            time.sleep(0.002)
        os.kill(child.pid or 0, signal.SIGKILL)
    finally:
        child.join(timeout=PATIENCE)
        if child.is_alive():  # pragma: no cover (only if the kill failed)
            child.kill()
            child.join()
    assert child.exitcode == -signal.SIGKILL
    return done


def _wait_for_child_backends(target: Target) -> None:
    """PostgreSQL: wait until the killed child's backend has gone (and with it
    any transaction it had open), so the state checked is final."""
    if target.kind != "postgres":
        return
    import psycopg

    from .conftest import POSTGRES_DSN

    deadline = time.monotonic() + PATIENCE
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (CHILD_APP,),
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            assert time.monotonic() < deadline, "the child's backend lingers"
            time.sleep(0.01)


@attrs.define
class Model:
    """What the store must hold, replayed from the child's log."""

    world: World
    #: token id -> {troop id: grant index}, live tokens only.
    troops_of: dict[str, dict[str, int]] = attrs.Factory(dict)
    #: token id -> its latest value the child saw (None: rotated, value unseen).
    value_of: dict[str, str | None] = attrs.Factory(dict)
    dead_values: list[str] = attrs.Factory(list)
    #: troop id -> [(action, token id)], in order.
    events: dict[str, list[tuple[str, str | None]]] = attrs.Factory(dict)

    def effects(self, entry: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
        """The audit event each troop gets from the change *entry* begins."""
        op = entry["op"]
        if op == "issue":
            return {entry["troop"]: (AuditAction.ISSUE.value, None)}
        token: str = entry["token"]
        if op in {"attach", "detach"}:
            action = AuditAction.ATTACH if op == "attach" else AuditAction.DETACH
            return {entry["troop"]: (action.value, token)}
        action = AuditAction.ROTATE if op == "rotate" else AuditAction.REVOKE
        return dict.fromkeys(self.troops_of[token], (action.value, token))

    def apply(self, entry: dict[str, Any], token: str, value: str | None) -> None:
        """Record the change *entry* begins as made (*token*: the token it made
        or changed; *value*: the value it returned, if seen)."""
        for troop, event in self.effects(entry).items():
            self.events.setdefault(troop, []).append((event[0], token))
        op = entry["op"]
        if op == "issue":
            self.troops_of[token] = {entry["troop"]: entry["grant"]}
            self.value_of[token] = value
        elif op == "attach":
            self.troops_of[token][entry["troop"]] = entry["grant"]
        elif op == "detach":
            del self.troops_of[token][entry["troop"]]
        elif op == "rotate":
            self._bury(token)
            self.value_of[token] = value
        else:
            self._bury(token)
            del self.troops_of[token], self.value_of[token]

    def _bury(self, token: str) -> None:
        old = self.value_of.get(token)
        if old is not None:
            self.dead_values.append(old)


def _replay(world: World, entries: list[dict[str, Any]]) -> tuple[Model, Any]:
    """The model after every change reported done, and the change in flight."""
    model = Model(world)
    begun: dict[str, Any] | None = None
    for entry in entries:
        if entry["state"] == "begin":
            begun = entry
        elif entry["state"] == "done":
            assert begun is not None
            assert begun["n"] == entry["n"]
            token: str = entry["token"] if "token" in entry else begun["token"]
            model.apply(begun, token, entry.get("value"))
            begun = None
        elif entry["state"] == "refused":  # pragma: no cover (never expected)
            begun = None
    return model, begun


def _check(auth: TroopAuth, model: Model, in_flight: dict[str, Any] | None) -> str:
    """Compare the reopened store with the model; return how the change in
    flight ended ("none", "absent" or "applied")."""
    world = model.world
    actual = {
        t: [(e.action.value, e.token_id) for e in auth.audit_log(t)]
        for t in world.troop_ids
    }
    expected = {t: model.events.get(t, []) for t in world.troop_ids}
    fate = "none"
    if in_flight is not None:
        effects = model.effects(in_flight)
        present = {t: len(actual[t]) > len(expected[t]) for t in effects}
        assert len(set(present.values())) == 1, (
            f"the change in flight left events in some troops only: {present}"
        )
        fate = "applied" if all(present.values()) else "absent"
        if fate == "applied":
            # An issue that committed made a token id nobody saw: its event has it.
            made = in_flight.get("token") or actual[next(iter(effects))][-1][1]
            assert made is not None
            # A rotate that committed returned a value nobody saw.
            model.apply(in_flight, made, None)
    assert actual == {t: model.events.get(t, []) for t in world.troop_ids}
    for troop in world.troop_ids:
        assert auth.check_audit_log(troop) is None
    assert auth.check_account_audit_log(world.account_id) is None

    listed: dict[str, dict[str, Grant]] = {}
    for troop in world.troop_ids:
        for info in auth.tokens(troop):
            listed.setdefault(info.token_id, {})[troop] = info.grants[troop]
    wanted = {
        token: {t: GRANTS[g] for t, g in troops.items()}
        for token, troops in model.troops_of.items()
    }
    assert listed == wanted
    assert auth.seats(world.account_id).used == len(wanted)

    for token, value in model.value_of.items():
        if value is None:
            continue
        for troop, g in model.troops_of[token].items():
            principal = auth.verify(value, troop, GRANTS[g].permission)
            assert principal.token_id == token
        for troop in set(world.troop_ids) - set(model.troops_of[token]):
            with pytest.raises(AccessDenied):
                auth.verify(value, troop, GRANTS[0].permission)
    for value in model.dead_values:
        with pytest.raises(InvalidToken):
            auth.authenticate(value)
    assert auth.authenticate(world.pat_value).account_id == world.account_id
    return fate


class TestSigkillMidStream:
    """A writer killed with SIGKILL leaves whole changes only."""

    @pytest.mark.slow
    def test_killed_writer_leaves_whole_changes(
        self, target: Target, tmp_path: Path
    ) -> None:
        """8 child processes, each SIGKILLed after 5 to 60 returned changes:
        every returned change is there with its events, the one in flight is
        wholly there or wholly absent, seats match the live tokens, and every
        value still held verifies."""
        fates: list[str] = []
        for round_ in range(ROUNDS):
            with target.open() as store:
                auth = TroopAuth(store)
                account = auth.create_account(seats=SEATS, audit_log=True)
                troops = tuple(
                    auth.create_troop(account.id, f"troop-{i}").id
                    for i in range(TROOPS)
                )
                pat = auth.issue_personal_token(account.id)
            world = World(account.id, troops, pat.value)
            log_path = tmp_path / f"round-{round_}.jsonl"
            done = _kill_mid_stream(target, world, log_path, seed=1000 + round_)
            _wait_for_child_backends(target)
            model, in_flight = _replay(world, _entries(log_path))
            assert sum(len(v) for v in model.events.values()) >= done
            with target.open() as store:
                fates.append(_check(TroopAuth(store), model, in_flight))
        assert len(fates) == ROUNDS
