"""verify() against the bare floor, and issue_token throughput.

Run ``python -m benchmarks.verify`` (``--quick`` for a short run, ``--sizes``
to choose the store sizes, ``--json PATH`` to keep the results). What each
table measures and how to read it: ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from troopauth import (
    Grant,
    MemoryStore,
    Permission,
    SQLiteStore,
    TroopAuth,
    core,
)
from troopauth.tokens import digest, hint, new_value

from ._common import (
    GRANT_MIX,
    KEY,
    PERMISSION,
    SAMPLE,
    SHARED_GRANTS,
    Call,
    Phases,
    allowed_sets,
    filesystem,
    machine,
    make_floor,
    mark,
    print_machine,
    progress,
    sample,
    table,
)
from ._common import token_id as _token_id

#: verify() may cost at most this many times the floor (DESIGN.md section 7).
VERIFY_TARGET = 2.0
#: verify() must stay within this fraction of itself from the smallest to the
#: largest store; issue throughput may fall by at most this fraction.
FLAT_TOLERANCE = 0.25
#: Issues per second, with 100,000 tokens already in the account.
ISSUE_TARGETS = {"MemoryStore": 20_000.0, "SQLiteStore": 1_000.0}

# Bulk loading commits this many tokens per transaction. MemoryStore's
# transaction looks through its own buffered writes for expired seated tokens
# each time a seat is taken, so one huge transaction would be quadratic there.
MEMORY_LOAD_BATCH = 1_000
SQLITE_LOAD_BATCH = 10_000

# -- building a store fast ---------------------------------------------------


class Loader:
    """One account and troop, filled with tokens fast but faithfully.

    The public ``issue_token`` opens one transaction per token; the loader
    commits ``batch`` tokens per transaction, each made by the same rule
    function (``troopauth.core.issue_token``, seat counting included) with a
    value from ``troopauth.tokens.new_value``.

    By default each token gets a Grant object of its own, parsed from text as
    a host application would build it per request (``fresh_grants=False``:
    tokens share one Grant object per entry of the mix).
    """

    def __init__(
        self, auth: TroopAuth, *, seats: int, batch: int, fresh_grants: bool = True
    ) -> None:
        self.auth = auth
        self.batch = batch
        self.fresh_grants = fresh_grants
        account = auth.create_account(seats=seats)
        self.troop_id = auth.create_troop(account.id, "bench").id
        pat = auth.issue_personal_token(account.id)
        self.owner = auth.authenticate(pat.value)
        self.pat_digest = digest(pat.value)
        #: Value, digest and grant-mix index of every token, in issue order.
        self.values: list[str] = []
        self.digests: list[bytes] = []
        self.kinds: list[int] = []

    def grow(self, total: int, label: str) -> None:
        """Issue tokens until the troop holds *total* of them."""
        store = self.auth.store
        start = time.perf_counter()
        report_every = max(total // 5, self.batch)
        next_report = len(self.values) + report_every
        while len(self.values) < total:
            first = len(self.values)
            count = min(self.batch, total - first)
            todo = []
            for i in range(first, first + count):
                value = new_value()
                kind = i % len(GRANT_MIX)
                if self.fresh_grants:
                    _, permissions, scope = GRANT_MIX[kind]
                    grant = Grant.parse(permissions, scope)
                else:
                    grant = SHARED_GRANTS[kind]
                todo.append((_token_id(), digest(value), hint(value), kind, grant))
                self.values.append(value)
            now = datetime.now(UTC)
            with store.transaction(self.owner.account_id) as tx:
                for token_id, token_digest, token_hint, _, grant in todo:
                    core.issue_token(
                        tx,
                        self.owner,
                        self.troop_id,
                        grant,
                        token_id=token_id,
                        digest=token_digest,
                        hint=token_hint,
                        name="",
                        expires_at=None,
                        now=now,
                    )
            self.digests += [t[1] for t in todo]
            self.kinds += [t[3] for t in todo]
            if len(self.values) >= next_report or len(self.values) == total:
                took = time.perf_counter() - start
                progress(
                    f"{label}: {len(self.values):,}/{total:,} tokens ({took:.1f} s)"
                )
                next_report += report_every


# -- table 1: verify() against the floor -------------------------------------


def call_only(value: str, troop_id: str, permission: Permission, key: str) -> object:
    """Does nothing: the loop and call overhead that both sides pay."""
    return None


def timed_pass(f: Call, values: Sequence[str], troop_id: str) -> int:
    """Nanoseconds for one call per value; the same loop for every function."""
    clock = time.perf_counter_ns
    permission = PERMISSION
    key = KEY
    start = clock()
    for v in values:
        f(v, troop_id, permission, key)
    return clock() - start


def compare(
    functions: dict[str, Call], values: Sequence[str], troop_id: str, repeats: int
) -> dict[str, list[float]]:
    """Mean ns per call of each pass, passes interleaved (order alternating)."""
    for f in functions.values():  # warm up, and prove every call succeeds
        timed_pass(f, values, troop_id)
    order = list(functions.items())
    per_call: dict[str, list[float]] = {name: [] for name in functions}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            for name, f in order if r % 2 == 0 else reversed(order):
                per_call[name].append(timed_pass(f, values, troop_id) / len(values))
    finally:
        gc.enable()
    return per_call


def verify_table(
    sizes: Sequence[int],
    repeats: int,
    phases: Phases,
    rng: random.Random,
    *,
    fresh_grants: bool,
) -> dict[str, Any]:
    """Table 1: verify() on MemoryStore against the floor, as the store grows;
    with last-use recording on (the default) and off, over the same store."""
    auth = TroopAuth(MemoryStore())
    loader = Loader(
        auth,
        seats=max(sizes) + 1,
        batch=MEMORY_LOAD_BATCH,
        fresh_grants=fresh_grants,
    )
    sets = allowed_sets()
    floor_table: dict[bytes, frozenset[Permission]] = {loader.pat_digest: sets[-1]}
    floor = make_floor(floor_table)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        with phases(f"load MemoryStore to {size:,} tokens"):
            gc.disable()  # the records hold no cycles; collections only slow loading
            try:
                loader.grow(size, "MemoryStore")
            finally:
                gc.enable()
            # The floor's dict holds the same digests as the store (PAT included).
            known = len(floor_table) - 1
            for d, k in zip(loader.digests[known:], loader.kinds[known:], strict=True):
                floor_table[d] = sets[k]
        values = sample(loader.values[:size], rng)
        unrecorded = TroopAuth(auth.store, last_used_interval=None)
        with phases(f"verify vs floor at {size:,} tokens"):
            per_call = compare(
                {
                    "floor": floor,
                    "verify": auth.verify,
                    "verify_off": unrecorded.verify,
                    "call": call_only,
                },
                values,
                loader.troop_id,
                repeats,
            )
        med = {name: statistics.median(xs) for name, xs in per_call.items()}
        low = {name: min(xs) for name, xs in per_call.items()}
        rows.append(
            {
                "tokens": size,
                "distinct_values": len(set(values)),
                "calls_per_pass": len(values),
                "repeats": repeats,
                "floor_ns": med["floor"],
                "verify_ns": med["verify"],
                "call_ns": med["call"],
                "ratio": med["verify"] / med["floor"],
                "verify_off_ns": med["verify_off"],
                "ratio_off": med["verify_off"] / med["floor"],
                "ratio_of_minimums": low["verify"] / low["floor"],
                "pass": med["verify"] / med["floor"] <= VERIFY_TARGET,
                "passes_ns": per_call,
            }
        )
    auth.store.close()
    first, last = rows[0], rows[-1]
    flat = {
        "from_tokens": first["tokens"],
        "to_tokens": last["tokens"],
        "verify_growth": last["verify_ns"] / first["verify_ns"],
        "floor_growth": last["floor_ns"] / first["floor_ns"],
        # DESIGN section 7: the ratio stays flat; the floor itself slows as a
        # large dict leaves the CPU caches.
        "ratio_growth": last["ratio"] / first["ratio"],
    }
    flat["pass"] = abs(flat["ratio_growth"] - 1) <= FLAT_TOLERANCE
    return {"rows": rows, "flat": flat, "fresh_grants": fresh_grants}


def print_verify(result: dict[str, Any]) -> None:
    """Print table 1."""
    rows = result["rows"]
    print(
        "\n1. verify() on MemoryStore vs the bare floor "
        f"(median ns per call, target verify/floor <= {VERIFY_TARGET})"
    )
    print(
        "   verify records last use (the default: a note per call, written "
        "off the hot path); 'last-use off' is verify/floor with "
        "last_used_interval=None"
    )
    print(
        f"   {rows[0]['calls_per_pass']:,} calls per pass, median of "
        f"{rows[0]['repeats']} passes; EDIT on key {KEY!r}; grants mixed "
        "exact / prefix / whole troop,"
    )
    print(
        "   "
        + (
            "one Grant object per token (as issued one by one)\n"
            if result["fresh_grants"]
            else "tokens share 6 Grant objects (--shared-grants)\n"
        )
    )
    print(
        table(
            [
                "stored tokens",
                "distinct values",
                "floor ns",
                "verify ns",
                "verify/floor",
                "target",
                "last-use off",
                "ratio of minimums",
                "loop+call ns",
            ],
            [
                [
                    f"{r['tokens']:,}",
                    f"{r['distinct_values']:,}",
                    f"{r['floor_ns']:.0f}",
                    f"{r['verify_ns']:.0f}",
                    f"{r['ratio']:.2f}",
                    mark(r["pass"]),
                    f"{r['ratio_off']:.2f}",
                    f"{r['ratio_of_minimums']:.2f}",
                    f"{r['call_ns']:.0f}",
                ]
                for r in rows
            ],
        )
    )
    flat = result["flat"]
    if flat["from_tokens"] != flat["to_tokens"]:
        print(
            f"\n   flatness, {flat['from_tokens']:,} -> {flat['to_tokens']:,} tokens: "
            f"verify/floor x{flat['ratio_growth']:.2f} "
            f"(target within +-{FLAT_TOLERANCE:.0%}: {mark(flat['pass'])}); "
            f"verify x{flat['verify_growth']:.2f}, floor x{flat['floor_growth']:.2f}"
        )


# -- table 2: issue_token throughput -------------------------------------------


def issue_rates(loader: Loader, batches: int, batch_size: int) -> list[float]:
    """Issues per second of each batch of public ``issue_token`` calls."""
    auth, owner, troop_id = loader.auth, loader.owner, loader.troop_id
    grants = SHARED_GRANTS
    auth.issue_token(owner, troop_id, grants[0])  # warm up
    rates = []
    for _ in range(batches):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            for i in range(batch_size):
                auth.issue_token(owner, troop_id, grants[i % len(grants)])
            took = time.perf_counter_ns() - start
        finally:
            gc.enable()
        rates.append(batch_size * 1e9 / took)
    return rates


def issue_table(
    sizes: Sequence[int],
    plan: dict[str, tuple[int, int]],
    tmpdir: str,
    phases: Phases,
) -> dict[str, Any]:
    """Table 2: issue_token throughput on each store as the account grows."""
    rows: list[dict[str, Any]] = []
    for store_name, (batches, batch_size) in plan.items():
        for size in sizes:
            seats = size + (batches + 1) * batch_size + 1
            if store_name == "MemoryStore":
                store: MemoryStore | SQLiteStore = MemoryStore()
                load_batch = MEMORY_LOAD_BATCH
            else:
                store = SQLiteStore(Path(tmpdir) / f"issue-{size}.db")
                load_batch = SQLITE_LOAD_BATCH
            with store:
                loader = Loader(TroopAuth(store), seats=seats, batch=load_batch)
                with phases(f"load {store_name} to {size:,} tokens"):
                    gc.disable()
                    try:
                        loader.grow(size, store_name)
                    finally:
                        gc.enable()
                with phases(f"issue_token on {store_name} at {size:,} tokens"):
                    rates = issue_rates(loader, batches, batch_size)
            target = ISSUE_TARGETS[store_name]
            rows.append(
                {
                    "store": store_name,
                    "tokens_before": size,
                    "batches": batches,
                    "batch_size": batch_size,
                    "issues_per_s": statistics.median(rates),
                    "min": min(rates),
                    "max": max(rates),
                    "target": target,
                    "pass": statistics.median(rates) >= target,
                    "rates": rates,
                }
            )
    growth: list[dict[str, Any]] = []
    for store_name in plan:
        mine = [r for r in rows if r["store"] == store_name]
        ratio = mine[-1]["issues_per_s"] / mine[0]["issues_per_s"]
        growth.append(
            {
                "store": store_name,
                "from_tokens": mine[0]["tokens_before"],
                "to_tokens": mine[-1]["tokens_before"],
                "ratio": ratio,
                "pass": ratio >= 1 - FLAT_TOLERANCE,
            }
        )
    return {"rows": rows, "growth": growth, "tmpdir_filesystem": filesystem(tmpdir)}


def print_issue(result: dict[str, Any]) -> None:
    """Print table 2."""
    rows = result["rows"]
    print(
        "\n2. issue_token throughput (public API, one transaction per issue; "
        "median of batches)"
    )
    print(
        "   SQLite file on "
        f"{result['tmpdir_filesystem']} (synchronous=FULL: one fsync per issue)\n"
    )
    print(
        table(
            [
                "store",
                "tokens before",
                "batches x issues",
                "issues/s",
                "min..max",
                "target",
                "mark",
            ],
            [
                [
                    r["store"],
                    f"{r['tokens_before']:,}",
                    f"{r['batches']} x {r['batch_size']:,}",
                    f"{r['issues_per_s']:,.0f}",
                    f"{r['min']:,.0f}..{r['max']:,.0f}",
                    f">= {r['target']:,.0f}",
                    mark(r["pass"]),
                ]
                for r in rows
            ],
        )
    )
    print()
    for g in result["growth"]:
        if g["from_tokens"] == g["to_tokens"]:
            continue
        print(
            f"   {g['store']}: issues/s at {g['to_tokens']:,} / at "
            f"{g['from_tokens']:,} tokens = {g['ratio']:.2f} "
            f"(must not fall by more than {FLAT_TOLERANCE:.0%}: {mark(g['pass'])})"
        )


# -- main ----------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a list of whole numbers: {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are whole numbers, 1 or more")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.verify",
        description="verify() against the bare floor, and issue_token throughput.",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        help="stored tokens for the verify table (default 1000,100000,1000000)",
    )
    parser.add_argument(
        "--issue-sizes",
        type=_sizes,
        default=None,
        help="tokens already in the account for the issue table (default 1000,100000)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed passes per function and size (default 15)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repeats (seconds)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    parser.add_argument(
        "--tmpdir", metavar="DIR", help="where the SQLite files go (default: TMPDIR)"
    )
    parser.add_argument(
        "--shared-grants",
        action="store_true",
        help="verify table: tokens share 6 Grant objects (default: one each)",
    )
    parser.add_argument("--seed", type=int, default=2024, help="sampling seed")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [1_000, 10_000] if args.quick else [1_000, 100_000, 1_000_000]
    if args.issue_sizes is None:
        args.issue_sizes = [1_000, 10_000] if args.quick else [1_000, 100_000]
    if args.repeats is None:
        args.repeats = 5 if args.quick else 15
    if args.repeats < 1:
        parser.error("--repeats must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run both tables and print them; 0 even when a target is missed."""
    args = parse_args(argv)
    started = time.perf_counter()
    phases = Phases()
    rng = random.Random(args.seed)
    about = machine()
    print_machine("troopauth verify benchmark", about)

    plan = (
        {"MemoryStore": (5, 500), "SQLiteStore": (3, 100)}
        if args.quick
        else {"MemoryStore": (7, 1_000), "SQLiteStore": (5, 200)}
    )
    verify = verify_table(
        args.sizes, args.repeats, phases, rng, fresh_grants=not args.shared_grants
    )
    print_verify(verify)
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="troopauth-bench-", dir=args.tmpdir) as tmp:
        issue = issue_table(args.issue_sizes, plan, tmp, phases)
    print_issue(issue)

    total = time.perf_counter() - started
    print("\nPhases (wall clock)\n")
    print(
        table(
            ["phase", "seconds"],
            [[name, f"{took:.1f}"] for name, took in phases.done]
            + [["total", f"{total:.1f}"]],
        )
    )
    if args.json:
        results = {
            "machine": about,
            "options": {
                "sizes": args.sizes,
                "issue_sizes": args.issue_sizes,
                "repeats": args.repeats,
                "quick": args.quick,
                "seed": args.seed,
                "shared_grants": args.shared_grants,
                "sample": SAMPLE,
                "verify_target": VERIFY_TARGET,
                "flat_tolerance": FLAT_TOLERANCE,
                "issue_targets": ISSUE_TARGETS,
            },
            "verify": verify,
            "issue": issue,
            "phases": [{"phase": n, "seconds": s} for n, s in phases.done],
            "total_seconds": total,
        }
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
