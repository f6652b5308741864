"""Write throughput: issue, rotate and revoke per adapter, and issue from
several processes at once.

Section ``writes`` of ``python -m benchmarks``. Every operation goes through
the public API (one transaction, one durable commit per call), by the
account's personal token.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from troopauth import MemoryStore, SQLiteStore, TroopAuth

from ._common import (
    SHARED_GRANTS,
    BulkLoader,
    Phases,
    counting_pool,
    drop_schema,
    filesystem,
    mark,
    postgres_settings,
    postgres_unreachable,
    progress,
    summary,
    table,
)
from .options import Options

#: Issues per second with 100,000 tokens already in the account (DESIGN.md 7).
ISSUE_TARGETS = {"MemoryStore": 20_000.0, "SQLiteStore": 1_000.0}
OPERATIONS = ("issue", "rotate", "revoke")
LOAD_BATCH = {"MemoryStore": 10_000, "SQLiteStore": 20_000, "PostgresStore": 5_000}


def _plan(store: str, quick: bool) -> tuple[int, int]:
    """(batches, operations per batch) for each operation on *store*."""
    if quick:
        return (3, 200) if store == "MemoryStore" else (3, 20)
    return (7, 1_000) if store == "MemoryStore" else (5, 200)


def _open(store: str, where: str) -> Any:
    if store == "MemoryStore":
        return MemoryStore()
    if store == "SQLiteStore":
        return SQLiteStore(where)
    from troopauth.postgres import PostgresStore

    dsn, schema = where.split("\n")
    return PostgresStore(dsn, schema=schema)


def _timed(batch: Callable[[], int]) -> float:
    """Operations per second of one batch."""
    start = time.perf_counter_ns()
    done = batch()
    return done * 1e9 / (time.perf_counter_ns() - start)


def one_process(store: str, where: str, preload: int, opts: Options) -> dict[str, Any]:
    """Issue, rotate and revoke rates on one store, batches interleaved."""
    batches, size = _plan(store, opts.quick)
    ops = batches * size + 1  # one warm-up call each
    rng = random.Random(opts.seed)
    with _open(store, where) as s:
        auth = TroopAuth(s)
        loader = BulkLoader(auth, seats=preload + 3 * ops + 1, batch=LOAD_BATCH[store])
        targets = set(rng.sample(range(preload), min(preload, 2 * ops)))
        took = loader.grow(preload, store, keep=targets.__contains__)
        kept = [loader.kept[i][0] for i in sorted(loader.kept)]
        rng.shuffle(kept)
        # Rotate and revoke reach distinct existing tokens; with too few
        # preloaded, fresh ones are issued for them (untimed).
        while len(kept) < 2 * ops:
            kept.append(
                auth.issue_token(
                    loader.owner, loader.troop_id, SHARED_GRANTS[0]
                ).token_id
            )
        to_rotate, to_revoke = iter(kept[:ops]), iter(kept[ops : 2 * ops])
        owner, troop_id, grants = loader.owner, loader.troop_id, SHARED_GRANTS

        def issue() -> int:
            for i in range(size):
                auth.issue_token(owner, troop_id, grants[i % len(grants)])
            return size

        def rotate() -> int:
            for _ in range(size):
                auth.rotate(owner, next(to_rotate))
            return size

        def revoke() -> int:
            for _ in range(size):
                auth.revoke(owner, next(to_revoke))
            return size

        auth.issue_token(owner, troop_id, grants[0])  # warm up
        auth.rotate(owner, next(to_rotate))
        auth.revoke(owner, next(to_revoke))
        rates: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        progress(f"writes: {store}: {batches} x {size} of each operation")
        for _ in range(batches):
            rates["issue"].append(_timed(issue))
            rates["rotate"].append(_timed(rotate))
            rates["revoke"].append(_timed(revoke))
    return {
        "store": store,
        "tokens_before": preload,
        "load_seconds": took,
        "batches": batches,
        "batch_size": size,
        "rates": rates,
        "summary": {op: summary(xs) for op, xs in rates.items()},
    }


def statements_per_op(dsn: str, schema: str) -> dict[str, float]:
    """PostgresStore: statements (round trips) each operation sends, counted
    at the connection, BEGIN and COMMIT included."""
    from troopauth.postgres import PostgresStore

    pool, count = counting_pool(dsn)
    n = 20
    try:
        with PostgresStore(pool=pool, schema=schema) as s:
            auth = TroopAuth(s)
            loader = BulkLoader(auth, seats=3 * n + 3, batch=100)
            owner, troop_id = loader.owner, loader.troop_id
            grant = SHARED_GRANTS[0]
            ids = [auth.issue_token(owner, troop_id, grant).token_id for _ in range(2)]
            auth.rotate(owner, ids[0])
            auth.revoke(owner, ids[1])  # every statement is prepared now
            out = {}
            before = count()
            ids = [auth.issue_token(owner, troop_id, grant).token_id for _ in range(n)]
            out["issue"] = (count() - before) / n
            before = count()
            for token_id in ids:
                auth.rotate(owner, token_id)
            out["rotate"] = (count() - before) / n
            before = count()
            for token_id in ids:
                auth.revoke(owner, token_id)
            out["revoke"] = (count() - before) / n
            return out
    finally:
        pool.close()


# -- several processes -------------------------------------------------------------


def _issuer(
    store: str,
    where: str,
    pat_value: str,
    troop_id: str,
    count: int,
    barrier: Any,
    results: Any,
) -> None:
    """One process: open its own store, wait for the others, issue *count*."""
    with _open(store, where) as s:
        auth = TroopAuth(s)
        owner = auth.authenticate(pat_value)
        grants = SHARED_GRANTS
        auth.issue_token(owner, troop_id, grants[0])  # warm up, connect
        barrier.wait()
        start = time.monotonic()
        for i in range(count):
            auth.issue_token(owner, troop_id, grants[i % len(grants)])
        results.put((start, time.monotonic(), count))


def many_processes(
    store: str, where: str, processes: int, shared_account: bool, count: int
) -> dict[str, Any]:
    """Issues per second of *processes* processes at once, each with its own
    store on the same database."""
    context = get_context("spawn")
    accounts = []
    with _open(store, where) as s:
        auth = TroopAuth(s)
        for _ in range(1 if shared_account else processes):
            account = auth.create_account(seats=processes * (count + 1) + 1)
            troop = auth.create_troop(account.id, "bench")
            accounts.append((auth.issue_personal_token(account.id).value, troop.id))
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_issuer,
            args=(store, where, *accounts[i % len(accounts)], count, barrier, results),
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    done = [results.get(timeout=600) for _ in workers]
    for w in workers:
        w.join()
        if w.exitcode != 0:
            raise RuntimeError(f"an issuing process failed (exit code {w.exitcode})")
    start = min(d[0] for d in done)
    end = max(d[1] for d in done)
    total = sum(d[2] for d in done)
    return {
        "store": store,
        "processes": processes,
        "accounts": "one shared" if shared_account else "one each",
        "issues": total,
        "seconds": end - start,
        "issues_per_s": total / (end - start),
    }


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """Single-process rates per adapter, then several processes at once."""
    preload = (
        opts.write_tokens
        if opts.write_tokens is not None
        else (1_000 if opts.quick else 100_000)
    )
    skipped: dict[str, str] = {}
    reason = postgres_unreachable(opts.postgres)
    if reason is not None:
        skipped["PostgresStore"] = reason
    dsn = opts.postgres or ""
    pg_where = f"{dsn}\n{opts.schema}"
    single: list[dict[str, Any]] = []
    multi: list[dict[str, Any]] = []
    statements: dict[str, float] | None = None
    settings: dict[str, str] | None = None
    with tempfile.TemporaryDirectory(prefix="troopauth-bench-", dir=opts.tmpdir) as tmp:
        fs = filesystem(tmp)
        try:
            if "PostgresStore" not in skipped:
                drop_schema(dsn, opts.schema)
                settings = postgres_settings(dsn)
            for store in ("MemoryStore", "SQLiteStore", "PostgresStore"):
                if store in skipped:
                    continue
                where = (
                    pg_where
                    if store == "PostgresStore"
                    else str(Path(tmp) / f"writes-{store}.db")
                )
                with phases(f"writes: {store}, {preload:,} tokens before"):
                    single.append(one_process(store, where, preload, opts))
            if "PostgresStore" not in skipped:
                with phases("writes: statements per operation on PostgresStore"):
                    statements = statements_per_op(dsn, opts.schema)
            count = 20 if opts.quick else 1_000
            plan = [("SQLiteStore", str(Path(tmp) / "many.db"))]
            if "PostgresStore" not in skipped:
                plan.append(("PostgresStore", pg_where))
            modes = (True,) if opts.quick else (True, False)
            for store, where in plan:
                for shared in modes:
                    for n in sorted({1, opts.processes}):
                        if n == 1 and not shared:
                            continue
                        label = "one shared account" if shared else "one account each"
                        with phases(f"writes: {n} process(es) on {store}, {label}"):
                            multi.append(many_processes(store, where, n, shared, count))
        finally:
            if "PostgresStore" not in skipped:
                drop_schema(dsn, opts.schema)
    return {
        "tokens_before": preload,
        "filesystem": fs,
        "postgres_settings": settings,
        "skipped": skipped,
        "single": single,
        "statements_per_op": statements,
        "multi": multi,
        "issue_targets": ISSUE_TARGETS,
    }


def report(result: dict[str, Any]) -> None:
    """Print the writes tables."""
    print(
        "\nWRITES: operations per second, one process "
        "(public API, one transaction and one durable commit per call)"
    )
    pg = result["postgres_settings"]
    print(
        f"   {result['tokens_before']:,} tokens already in the account; median "
        f"(min..max) over batches; SQLite on {result['filesystem']} "
        "(synchronous=FULL)"
        + (
            f"; PostgreSQL {pg['server_version']} "
            f"(synchronous_commit={pg['synchronous_commit']}, fsync={pg['fsync']})"
            if pg
            else ""
        )
        + "\n"
    )
    rows = []
    for r in result["single"]:
        for op in OPERATIONS:
            s = r["summary"][op]
            target = result["issue_targets"].get(r["store"]) if op == "issue" else None
            rows.append(
                [
                    r["store"],
                    op,
                    f"{r['batches']} x {r['batch_size']:,}",
                    f"{s['median']:,.0f}",
                    f"{s['min']:,.0f}..{s['max']:,.0f}",
                    f"{1e6 / s['median']:,.0f}",
                    "" if target is None else f">= {target:,.0f}",
                    "" if target is None else mark(s["median"] >= target),
                ]
            )
    print(
        table(
            [
                "store",
                "operation",
                "batches",
                "ops/s",
                "min..max",
                "us/op",
                "target",
                "mark",
            ],
            rows,
        )
    )
    if result["statements_per_op"]:
        per = result["statements_per_op"]
        print(
            "\n   PostgresStore statements (round trips) per operation, BEGIN and "
            "COMMIT included: " + ", ".join(f"{op} {per[op]:.1f}" for op in OPERATIONS)
        )
    for store, reason in result["skipped"].items():
        print(f"\n   {store}: skipped: {reason}")
    if result["multi"]:
        print(
            "\nWRITES: issue_token from several processes at once "
            "(spawned; each opens its own store on the same database)\n"
        )
        print(
            table(
                ["store", "processes", "accounts", "issues", "seconds", "issues/s"],
                [
                    [
                        m["store"],
                        str(m["processes"]),
                        m["accounts"],
                        f"{m['issues']:,}",
                        f"{m['seconds']:.2f}",
                        f"{m['issues_per_s']:,.0f}",
                    ]
                    for m in result["multi"]
                ],
            )
        )
