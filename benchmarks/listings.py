"""Scope parsing and a troop's listings as they grow.

Section ``listings`` of ``python -m benchmarks``.

* **Scope parsing**: ``Scope.parse`` of scope texts of 4, 16 and 64 KiB made of
  short prefixes and exact keys (the costliest shape to minimise), and the
  time per pattern. O(n log n) parsing keeps the time per pattern nearly flat
  as the text grows four-fold; the quadratic parsing of troopauth 0.1 took
  about 39 s of CPU at 64 KiB.
* **A troop's tokens**: on a troop holding N tokens, ``tokens(troop)`` listing
  all of them, and a page of 100 read at the start and at the end of the
  listing (``limit=100, after=...``). A page reads from an index by (troop,
  age): its cost must not grow with N, nor with how deep into the listing it
  starts (the end/start ratio stays near 1).
"""

from __future__ import annotations

import random
import statistics
import string
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from troopauth import MemoryStore, Scope, SQLiteStore, TroopAuth
from troopauth.scope import MAX_SCOPE_TEXT

from ._common import BulkLoader, Phases, table
from .options import Options

PAGE = 100


def scope_text(length: int, seed: int = 1) -> str:
    """Comma-separated patterns, ~70% short prefixes, filling *length* chars."""
    rnd = random.Random(seed)
    patterns: list[str] = []
    total = -1
    while True:
        name = "".join(rnd.choice(string.ascii_lowercase) for _ in range(6))
        pattern = f"key:{name}*" if rnd.random() < 0.7 else f"key:{name}"
        if total + len(pattern) + 1 > length:
            return ",".join(patterns)
        patterns.append(pattern)
        total += len(pattern) + 1


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _scopes(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for length in (4 * 1024, 16 * 1024, MAX_SCOPE_TEXT):
        text = scope_text(length)
        patterns = text.count(",") + 1
        took = _median_seconds(lambda text=text: Scope.parse(text), repeats)
        rows.append(
            {
                "chars": len(text),
                "patterns": patterns,
                "ms": took * 1e3,
                "us_per_pattern": took * 1e6 / patterns,
            }
        )
    return rows


def _listing(auth: TroopAuth, size: int, repeats: int) -> dict[str, Any]:
    loader = BulkLoader(auth, seats=size + 10, batch=1000)
    loader.grow(size, f"listing {size:,}")
    troop = loader.troop_id
    everything = auth.tokens(troop)
    assert len(everything) == size
    deep = everything[-PAGE - 1].token_id
    whole = _median_seconds(lambda: auth.tokens(troop), max(3, repeats // 3))
    first = _median_seconds(lambda: auth.tokens(troop, limit=PAGE), repeats)
    last = _median_seconds(lambda: auth.tokens(troop, limit=PAGE, after=deep), repeats)
    return {
        "tokens": size,
        "all_s": whole,
        "page_first_ms": first * 1e3,
        "page_last_ms": last * 1e3,
    }


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """Parse the scopes, then list troops of growing size on Memory and SQLite."""
    repeats = opts.repeats or (3 if opts.quick else 11)
    sizes = (1_000,) if opts.quick else (10_000, 100_000)
    results: dict[str, Any] = {"scope_parse": [], "listings": {}}
    with phases("listings: scope parsing"):
        results["scope_parse"] = _scopes(repeats)
    for name in ("memory", "sqlite"):
        rows = []
        for size in sizes:
            with (
                phases(f"listings: {name} {size:,}"),
                tempfile.TemporaryDirectory() as d,
            ):
                store: Any = (
                    MemoryStore() if name == "memory" else SQLiteStore(Path(d) / "l.db")
                )
                with store:
                    rows.append(_listing(TroopAuth(store), size, repeats))
        results["listings"][name] = rows
    return results


def report(results: dict[str, Any]) -> None:
    """Print the two tables."""
    print("\nLISTINGS: Scope.parse of scope texts made of short patterns (median)\n")
    rows = results["scope_parse"]
    print(
        table(
            ["text", "patterns", "parse", "per pattern", "vs 4 KiB"],
            [
                [
                    f"{r['chars']:,} chars",
                    f"{r['patterns']:,}",
                    f"{r['ms']:.1f} ms",
                    f"{r['us_per_pattern']:.2f} µs",
                    f"{r['us_per_pattern'] / rows[0]['us_per_pattern']:.2f}x",
                ]
                for r in rows
            ],
        )
    )
    print(f"\nLISTINGS: a troop's tokens, all of them and a page of {PAGE} (median)\n")
    print(
        table(
            [
                "store",
                "tokens",
                "tokens(troop)",
                "first page",
                "last page",
                "last/first",
            ],
            [
                [
                    name,
                    f"{r['tokens']:,}",
                    f"{r['all_s']:.2f} s",
                    f"{r['page_first_ms']:.2f} ms",
                    f"{r['page_last_ms']:.2f} ms",
                    f"{r['page_last_ms'] / r['page_first_ms']:.2f}",
                ]
                for name, listing in results["listings"].items()
                for r in listing
            ],
        )
    )
