"""Fleets: verify through `troopauth.cache.CachedStore`, and how soon a revoke
made in one process is refused by the others.

Section ``fleet`` of ``python -m benchmarks``.

1. Cached verify: one account and troop per store, filled by the bulk loader
   (100,000 tokens; ``--quick``: 5,000); verify timed on a sample of distinct
   values through ``TroopAuth(CachedStore(store))`` once the cache is warm,
   against ``TroopAuth(MemoryStore())`` holding as many tokens, in the same
   run, passes interleaved. The figure is cached / MemoryStore (medians).
2. Revocation visibility: one process revokes tokens one at a time; 4 other
   processes (each with its own CachedStore, cache warm) verify the value
   being revoked in a loop and note when each first refuses it. The figure
   per (revoke, process) is that moment less the moment the revoke returned
   (``time.monotonic``: one clock for every process of the machine); a
   process that saw it before the call returned counts 0.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from troopauth import InvalidToken, MemoryStore, SQLiteStore, TroopAuth
from troopauth.cache import CachedStore

from ._common import (
    BulkLoader,
    Phases,
    drop_schema,
    mark,
    postgres_unreachable,
    progress,
    sample,
    summary,
    table,
    timed_pass,
)
from .options import Options

#: cached verify / MemoryStore verify: the target and the bar.
RATIO_TARGET = 1.3
RATIO_BAR = 1.5
#: Revocation visibility p99 (ms): targets (PostgreSQL) and bars.
VISIBILITY_TARGET_MS = {"PostgresStore": 50.0, "SQLiteStore": 100.0}
VISIBILITY_BAR_MS = 100.0
#: How many processes verify while one revokes.
VERIFIERS = 4


def _open(kind: str, where: str, opts: Options) -> Any:
    if kind == "SQLiteStore":
        return SQLiteStore(where)
    from troopauth.postgres import PostgresStore

    return PostgresStore(where, schema=opts.schema + "_fleet", max_size=4)


def _backends(opts: Options, tmp: str) -> list[tuple[str, str]]:
    found = [("SQLiteStore", str(Path(tmp) / "fleet.db"))]
    reason = postgres_unreachable(opts.postgres)
    if opts.postgres is not None and reason is None:
        found.append(("PostgresStore", opts.postgres))
    elif opts.postgres is not None:
        progress(f"PostgresStore left out: {reason}")
    return found


# -- 1. cached verify ----------------------------------------------------------------


def _cached_verify(
    opts: Options, phases: Phases, backends: list[tuple[str, str]]
) -> dict[str, Any]:
    size = 5_000 if opts.quick else 100_000
    calls = 1_000 if opts.quick else 10_000
    repeats = opts.repeats or (3 if opts.quick else 11)
    rng = random.Random(opts.seed)
    cases: dict[str, tuple[Callable[..., object], list[str], str]] = {}
    opened: list[Any] = []
    try:
        with phases(f"fleet: load MemoryStore to {size:,} tokens"):
            memory = TroopAuth(MemoryStore(), last_used_interval=None)
            opened.append(memory.store)
            loader = BulkLoader(memory, seats=size + 10, batch=10_000)
            loader.grow(size, "MemoryStore")
            values = [v for _, v in loader.kept.values()]
            cases["MemoryStore"] = (
                memory.verify,
                sample(values, rng, calls),
                loader.troop_id,
            )
        for kind, where in backends:
            with phases(f"fleet: load {kind} to {size:,} tokens"):
                plain = _open(kind, where, opts)
                opened.append(plain)
                loader = BulkLoader(
                    TroopAuth(plain, last_used_interval=None),
                    seats=size + 10,
                    batch=20_000 if kind == "SQLiteStore" else 5_000,
                )
                loader.grow(size, kind)
                cache = CachedStore(_open(kind, where, opts))
                opened.append(cache)
                _wait(lambda c=cache: c.healthy, f"{kind}: the feed never came up")
                auth = TroopAuth(cache, last_used_interval=None)
                values = [v for _, v in loader.kept.values()]
                cases[f"cached {kind}"] = (
                    auth.verify,
                    sample(values, rng, calls),
                    loader.troop_id,
                )
        with phases("fleet: cached verify timed"):
            per_call = _interleaved(cases, repeats)
    finally:
        for store in reversed(opened):
            store.close()
    memory_median = statistics.median(per_call["MemoryStore"])
    rows = []
    for name, passes in per_call.items():
        stats = summary(passes)
        rows.append(
            {
                "store": name,
                "tokens": size,
                "calls": calls,
                "repeats": repeats,
                **stats,
                "ratio": stats["median"] / memory_median,
            }
        )
    return {"tokens": size, "rows": rows}


def _interleaved(
    cases: dict[str, tuple[Callable[..., object], list[str], str]], repeats: int
) -> dict[str, list[float]]:
    """Mean ns per call of each pass; passes interleaved, order alternating."""
    import gc

    for f, values, troop_id in cases.values():  # warm up: fills the caches
        timed_pass(f, values, troop_id)
    order = list(cases.items())
    per_call: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            for name, (f, values, troop_id) in order if r % 2 == 0 else order[::-1]:
                per_call[name].append(timed_pass(f, values, troop_id) / len(values))
    finally:
        gc.enable()
    return per_call


def _wait(check: Callable[[], bool], what: str, patience: float = 30.0) -> None:
    deadline = time.monotonic() + patience
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(0.005)


# -- 2. revocation visibility ------------------------------------------------------


def _verifier(
    kind: str,
    where: str,
    opts: Options,
    values: list[str],
    troop_id: str,
    current: Any,
    ready: Any,
    results: Any,
) -> None:
    """In a child process: warm a cache, then refuse each value in turn."""
    from troopauth import Permission

    cache = CachedStore(_open(kind, where, opts))
    try:
        _wait(lambda: cache.healthy, "the feed never came up")
        auth = TroopAuth(cache, last_used_interval=None)
        for value in values:
            auth.verify(value, troop_id, Permission.VIEW)
        ready.release()
        done = -1
        while done < len(values) - 1:
            i = current.value
            if i <= done:
                time.sleep(0.0002)
                continue
            value = values[i]
            while True:
                try:
                    auth.verify(value, troop_id, Permission.VIEW)
                except InvalidToken:
                    results.put((os.getpid(), i, time.monotonic()))
                    break
                time.sleep(0.0002)
            done = i
    finally:
        cache.close()


def _visibility(opts: Options, phases: Phases, kind: str, where: str) -> dict[str, Any]:
    revokes = 20 if opts.quick else 200
    writer_store = _open(kind, where, opts)
    ctx = get_context("spawn")
    try:
        writer = TroopAuth(writer_store, last_used_interval=None)
        account = writer.create_account(seats=revokes + 5)
        troop = writer.create_troop(account.id, "fleet")
        owner = writer.authenticate(writer.issue_personal_token(account.id).value)
        from troopauth import Grant

        issued = [
            writer.issue_token(owner, troop.id, Grant.parse("view", "*"))
            for _ in range(revokes)
        ]
        values = [t.value for t in issued]
        current = ctx.Value("i", -1)
        ready = ctx.Semaphore(0)
        results = ctx.Queue()
        children = [
            ctx.Process(
                target=_verifier,
                args=(kind, where, opts, values, troop.id, current, ready, results),
            )
            for _ in range(VERIFIERS)
        ]
        with phases(f"fleet: {kind} revocation visibility ({revokes} revokes)"):
            for child in children:
                child.start()
            for _ in children:
                if not ready.acquire(timeout=120):
                    raise RuntimeError("a verifier process never got ready")
            returned: list[float] = []
            seen: list[float] = []
            for i, token in enumerate(issued):
                current.value = i
                time.sleep(0.002)  # let the verifiers start on this value
                writer.revoke(owner, token.token_id)
                returned.append(time.monotonic())
                for _ in children:
                    _, index, at = results.get(timeout=60)
                    seen.append(max(0.0, at - returned[index]))
            for child in children:
                child.join(60)
    finally:
        writer_store.close()
    ms = sorted(s * 1000 for s in seen)
    return {
        "store": kind,
        "revokes": revokes,
        "processes": VERIFIERS,
        "samples": len(ms),
        "p50_ms": _percentile(ms, 0.50),
        "p99_ms": _percentile(ms, 0.99),
        "max_ms": ms[-1],
    }


def _percentile(ordered: list[float], q: float) -> float:
    """The nearest-rank percentile of a sorted list."""
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- the section ----------------------------------------------------------------------


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """Cached verify against MemoryStore, then revocation visibility per store."""
    with tempfile.TemporaryDirectory(dir=opts.tmpdir) as tmp:
        backends = _backends(opts, tmp)
        try:
            verify = _cached_verify(opts, phases, backends)
            for kind, where in backends:
                if kind == "PostgresStore":
                    drop_schema(where, opts.schema + "_fleet")
            visibility = [_visibility(opts, phases, k, w) for k, w in backends]
        finally:
            for kind, where in backends:
                if kind == "PostgresStore":
                    drop_schema(where, opts.schema + "_fleet")
    return {"verify": verify, "visibility": visibility}


def report(results: dict[str, Any]) -> None:
    """Print the two tables."""
    verify = results["verify"]
    print(
        f"\nFLEET 1. verify through CachedStore vs MemoryStore "
        f"({verify['tokens']:,} tokens each; median ns per call; "
        f"target <= {RATIO_TARGET}, bar <= {RATIO_BAR})\n"
    )
    rows = []
    for row in verify["rows"]:
        cached = row["store"] != "MemoryStore"
        rows.append(
            [
                row["store"],
                f"{row['tokens']:,}",
                f"{row['calls']:,} x {row['repeats']}",
                f"{row['median']:.0f}",
                f"{row['min']:.0f}..{row['max']:.0f}",
                f"{row['ratio']:.2f}",
                mark(row["ratio"] <= RATIO_TARGET) if cached else "",
                mark(row["ratio"] <= RATIO_BAR) if cached else "",
            ]
        )
    print(
        table(
            ["store", "tokens", "calls", "ns", "min..max", "ratio", "target", "bar"],
            rows,
        )
    )
    print(
        f"\nFLEET 2. revocation visibility: 1 process revokes, {VERIFIERS} "
        "others verify the value (CachedStore, max_staleness 1 s); ms from the "
        "revoke's return to each one's first refusal\n"
    )
    print(
        table(
            [
                *("store", "revokes", "samples"),
                *("p50 ms", "p99 ms", "max ms", "target", "bar"),
            ],
            [
                [
                    row["store"],
                    str(row["revokes"]),
                    str(row["samples"]),
                    f"{row['p50_ms']:.1f}",
                    f"{row['p99_ms']:.1f}",
                    f"{row['max_ms']:.1f}",
                    mark(row["p99_ms"] <= VISIBILITY_TARGET_MS[row["store"]]),
                    mark(row["p99_ms"] <= VISIBILITY_BAR_MS),
                ]
                for row in results["visibility"]
            ],
        )
    )
