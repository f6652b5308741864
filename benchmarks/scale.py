"""verify() time and memory as each store grows, up to a million tokens.

Section ``scale`` of ``python -m benchmarks``. Each adapter runs in a fresh
process of its own (so that its peak memory is its own): one account and
troop grown to each size in turn by the bulk loader, then verify timed on a
random sample of the stored tokens, distinct values, cycling.
"""

from __future__ import annotations

import gc
import os
import random
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from troopauth import MemoryStore, SQLiteStore, TroopAuth

from ._common import (
    KEY,
    PERMISSION,
    BulkLoader,
    Phases,
    compare,
    counting_pool,
    drop_schema,
    keep_indices,
    mark,
    mib,
    micros,
    peak_rss_bytes,
    postgres_unreachable,
    progress,
    rss_bytes,
    sample,
    schema_bytes,
    summary,
    table,
)
from .options import Options

#: verify() on SQLiteStore with 1,000,000 tokens: median under this (ns).
SQLITE_TARGET_NS = 15_000
#: MemoryStore: at most this many bytes per token at 1,000,000 tokens.
MEMORY_TARGET_BYTES = 1024
#: verify() on MemoryStore stays within this fraction from the smallest to
#: the largest store.
FLAT_TOLERANCE = 0.25
#: Statements (round trips) per verify on PostgresStore.
POSTGRES_ROUND_TRIPS = 1

STORES = ("MemoryStore", "SQLiteStore", "PostgresStore")
#: Tokens per store transaction when loading.
LOAD_BATCH = {"MemoryStore": 10_000, "SQLiteStore": 20_000, "PostgresStore": 5_000}


def _calls(store: str, quick: bool) -> int:
    """Calls per timed pass (distinct values when the store holds enough)."""
    if quick:
        return 500
    return 2_000 if store == "PostgresStore" else 10_000


def _repeats(store: str, opts: Options) -> int:
    if opts.repeats:
        return opts.repeats
    if opts.quick:
        return 3
    return 7 if store == "PostgresStore" else 11


def _open(store: str, where: str) -> Any:
    if store == "MemoryStore":
        return MemoryStore()
    if store == "SQLiteStore":
        return SQLiteStore(where)
    from troopauth.postgres import PostgresStore

    dsn, schema = where.split("\n")
    return PostgresStore(dsn, schema=schema)


def _disk_bytes(store: str, where: str) -> int | None:
    if store == "SQLiteStore":
        return sum(
            os.path.getsize(p)
            for p in (where, where + "-wal", where + "-shm")
            if os.path.exists(p)
        )
    if store == "PostgresStore":
        dsn, schema = where.split("\n")
        return schema_bytes(dsn, schema)
    return None


def _round_trips(where: str, troop_id: str, values: list[str]) -> float:
    """Statements per verify, counted at the connection of a second store."""
    from troopauth.postgres import PostgresStore

    dsn, schema = where.split("\n")
    pool, count = counting_pool(dsn)
    try:
        with PostgresStore(pool=pool, schema=schema) as store:
            verify = TroopAuth(store).verify
            verify(values[0], troop_id, PERMISSION, KEY)  # prepares the statement
            before = count()
            for v in values:
                verify(v, troop_id, PERMISSION, KEY)
            return (count() - before) / len(values)
    finally:
        pool.close()


def measure_store(
    store: str, sizes: list[int], where: str, opts: Options
) -> dict[str, Any]:
    """In a fresh process: grow one store through *sizes*, timing verify and
    reading memory at each. Returns the rows."""
    rng = random.Random(opts.seed)
    calls = _calls(store, opts.quick)
    repeats = _repeats(store, opts)
    gc.collect()
    rss_start = rss_bytes()
    auth = TroopAuth(_open(store, where))
    loader = BulkLoader(auth, seats=max(sizes) + 1, batch=LOAD_BATCH[store])
    gc.collect()
    rss_empty = rss_bytes()
    picks = keep_indices(sizes, rng, calls)
    wanted = set().union(*map(set, picks.values()))
    rows = []
    try:
        for size in sizes:
            took = loader.grow(size, store, keep=wanted.__contains__)
            gc.collect()
            rss = rss_bytes()
            values = sample([loader.kept[i][1] for i in picks[size]], rng, calls)
            progress(f"{store}: timing verify at {size:,} tokens")
            passes = compare(
                {"verify": (auth.verify, values)}, loader.troop_id, repeats
            )["verify"]
            row: dict[str, Any] = {
                "store": store,
                "tokens": size,
                "load_seconds": took,
                "calls_per_pass": len(values),
                "distinct_values": len(set(values)),
                "repeats": repeats,
                **{f"{k}_ns": v for k, v in summary(passes).items()},
                "passes_ns": passes,
                "rss_bytes": rss,
                "peak_rss_bytes": peak_rss_bytes(),
                "store_rss_bytes": rss - rss_empty,
                "bytes_per_token": (rss - rss_empty) / size,
                "disk_bytes": _disk_bytes(store, where),
                "round_trips_per_verify": None,
            }
            rows.append(row)
        if store == "PostgresStore":
            values = [v for _, v in loader.kept.values()][:200]
            rows[-1]["round_trips_per_verify"] = _round_trips(
                where, loader.troop_id, values
            )
    finally:
        auth.store.close()
    return {"rows": rows, "rss_at_start": rss_start, "rss_empty_store": rss_empty}


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """Measure every adapter, each in a fresh process."""
    sizes = list(
        opts.sizes or ((1_000, 5_000) if opts.quick else (1_000, 100_000, 1_000_000))
    )
    pg_sizes = list(opts.postgres_sizes or sizes)
    skipped: dict[str, str] = {}
    reason = postgres_unreachable(opts.postgres)
    if reason is not None:
        skipped["PostgresStore"] = reason
    results: dict[str, Any] = {}
    context = get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="troopauth-bench-", dir=opts.tmpdir) as tmp:
        for store in STORES:
            if store in skipped:
                progress(f"scale: {store} skipped: {skipped[store]}")
                continue
            store_sizes = pg_sizes if store == "PostgresStore" else sizes
            if store == "PostgresStore":
                dsn = opts.postgres or ""  # reachable, so given
                where = f"{dsn}\n{opts.schema}"
                drop_schema(dsn, opts.schema)
            else:
                where = str(Path(tmp) / "scale.db")
            try:
                with (
                    phases(f"scale: {store} to {store_sizes[-1]:,} tokens"),
                    ProcessPoolExecutor(1, mp_context=context) as pool,
                ):
                    results[store] = pool.submit(
                        measure_store, store, store_sizes, where, opts
                    ).result()
            finally:
                if store == "PostgresStore" and opts.postgres is not None:
                    drop_schema(opts.postgres, opts.schema)
    rows = [r for s in results.values() for r in s["rows"]]
    return {
        "sizes": sizes,
        "postgres_sizes": pg_sizes,
        "skipped": skipped,
        "rows": rows,
        "stores": results,
        "targets": judge(rows),
    }


def judge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The section 7 targets this section can judge, from its rows."""
    by_store: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_store.setdefault(r["store"], []).append(r)
    out: list[dict[str, Any]] = []
    memory = by_store.get("MemoryStore")
    if memory:
        last = memory[-1]
        out.append(
            {
                "target": f"MemoryStore bytes per token < {MEMORY_TARGET_BYTES:,}",
                "at": last["tokens"],
                "value": f"{last['bytes_per_token']:,.0f} B",
                "pass": last["bytes_per_token"] < MEMORY_TARGET_BYTES,
            }
        )
        if len(memory) > 1:
            growth = last["median_ns"] / memory[0]["median_ns"]
            out.append(
                {
                    "target": f"MemoryStore verify flat within "
                    f"+-{FLAT_TOLERANCE:.0%} from {memory[0]['tokens']:,}",
                    "at": last["tokens"],
                    "value": f"x{growth:.2f}",
                    "pass": abs(growth - 1) <= FLAT_TOLERANCE,
                }
            )
    sqlite = by_store.get("SQLiteStore")
    if sqlite:
        last = sqlite[-1]
        out.append(
            {
                "target": f"SQLiteStore verify median < {SQLITE_TARGET_NS / 1000:g} us",
                "at": last["tokens"],
                "value": f"{micros(last['median_ns'])} us",
                "pass": last["median_ns"] < SQLITE_TARGET_NS,
            }
        )
    postgres = by_store.get("PostgresStore")
    if postgres and postgres[-1]["round_trips_per_verify"] is not None:
        last = postgres[-1]
        trips = last["round_trips_per_verify"]
        out.append(
            {
                "target": "PostgresStore round trips per verify = 1",
                "at": last["tokens"],
                "value": f"{trips:.2f}",
                "pass": trips == POSTGRES_ROUND_TRIPS,
            }
        )
    return out


def report(result: dict[str, Any]) -> None:
    """Print the scale tables."""
    print(
        "\nSCALE: verify() and memory as the store grows "
        "(verify: median of per-pass means, us per call)"
    )
    print(
        "   one account, one troop; values sampled at random from the whole "
        "store, distinct when it holds enough;"
    )
    print(
        "   RSS: this process, read after loading (each store in a fresh "
        "process); store RSS = RSS - RSS of the empty store\n"
    )
    print(
        table(
            [
                "store",
                "tokens",
                "load s",
                "calls/pass",
                "verify us",
                "min us",
                "RSS MiB",
                "peak MiB",
                "store MiB",
                "B/token",
                "disk MiB",
            ],
            [
                [
                    r["store"],
                    f"{r['tokens']:,}",
                    f"{r['load_seconds']:.1f}",
                    f"{r['calls_per_pass']:,}",
                    micros(r["median_ns"]),
                    micros(r["min_ns"]),
                    mib(r["rss_bytes"]),
                    mib(r["peak_rss_bytes"]),
                    mib(r["store_rss_bytes"]),
                    f"{r['bytes_per_token']:,.0f}",
                    "" if r["disk_bytes"] is None else mib(r["disk_bytes"]),
                ]
                for r in result["rows"]
            ],
        )
    )
    for store, reason in result["skipped"].items():
        print(f"\n   {store}: skipped: {reason}")
    if result["targets"]:
        print()
        print(
            table(
                ["target", "at tokens", "measured", "mark"],
                [
                    [t["target"], f"{t['at']:,}", t["value"], mark(t["pass"])]
                    for t in result["targets"]
                ],
            )
        )


def plot(result: dict[str, Any], path: str) -> None:
    """verify median against store size, one line per adapter, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    styles = {"MemoryStore": "o-", "SQLiteStore": "s-", "PostgresStore": "^-"}
    for store in STORES:
        rows = [r for r in result["rows"] if r["store"] == store]
        if not rows:
            continue
        xs = [r["tokens"] for r in rows]
        ys = [r["median_ns"] / 1000 for r in rows]
        ax.plot(xs, ys, styles[store], label=store)
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(
                f"{y:.3g}",
                (x, y),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize="x-small",
            )
    ax.axhline(
        SQLITE_TARGET_NS / 1000,
        color="grey",
        linestyle="--",
        linewidth=1,
        label=f"SQLite target ({SQLITE_TARGET_NS / 1000:g} µs at 1M)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens in the store")
    ax.set_ylabel("verify median (µs per call)")
    ax.set_title("troopauth verify() as the store grows")
    ax.grid(visible=True, which="major", linewidth=0.5, alpha=0.5)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 2.5)  # room for the labels above the top line
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
