"""What every benchmark shares: output, the machine, timing, fast store loading.

Not a benchmark itself; ``benchmarks/README.md`` says how each one measures.
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
import random
import resource
import secrets
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import troopauth
from troopauth import Grant, Permission, TroopAuth, core
from troopauth.store import AccountRecord, TokenRecord, Transaction, TroopRecord
from troopauth.tokens import base62, digest, hint, new_value

#: Every benchmark call asks for EDIT on this key of the bench troop; each
#: grant of the mix covers it, so every call succeeds.
KEY = "prod/deploy"
PERMISSION = Permission.EDIT
#: The floor's one ``str.startswith``.
FLOOR_PREFIX = "prod/"
#: How many token values one timed pass cycles over (by default).
SAMPLE = 10_000

_ALL = Permission.VIEW | Permission.USE | Permission.EDIT | Permission.MANAGE
#: The grants the bench tokens hold, in turn: (kind, permissions, scope).
GRANT_MIX: tuple[tuple[str, str, str], ...] = (
    ("exact", "edit", "key:prod/deploy"),
    ("exact", "view,edit", "key:prod/deploy,key:stripe-live"),
    ("prefix", "edit", "key:prod/*"),
    ("prefix", "use,edit", "key:prod/*,key:staging/*"),
    ("whole", "edit", "*"),
    ("whole", "view,use,edit,manage", "*"),
)
#: One shared Grant object per entry of the mix.
SHARED_GRANTS = tuple(Grant.parse(p, s) for _, p, s in GRANT_MIX)

#: Where the PostgreSQL benchmarks go unless told otherwise.
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
#: The schema they work in (created fresh, dropped at the end).
DEFAULT_SCHEMA = "troopauth_bench"

Call = Callable[[str, str, Permission, str], object]


# -- output --------------------------------------------------------------------


def progress(message: str) -> None:
    """A progress line on stderr (the tables go to stdout)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text columns: the first left-aligned, the others right-aligned."""
    widths = [
        max(len(headers[i]), *(len(r[i]) for r in rows)) if rows else len(headers[i])
        for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def mark(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def micros(ns: float) -> str:
    """Nanoseconds as microseconds, with as many decimals as they deserve."""
    us = ns / 1000
    if us < 10:
        return f"{us:.2f}"
    if us < 100:
        return f"{us:.1f}"
    return f"{us:,.0f}"


def mib(n_bytes: float) -> str:
    """Bytes as MiB, one decimal."""
    return f"{n_bytes / 2**20:,.1f}"


class Phases:
    """Wall-clock time of each phase of the run."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        progress(f"{name} ...")
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.done.append((name, took))
        progress(f"{name}: {took:.1f} s")


def source_digest() -> str:
    """A digest of troopauth's source as it is now: any edit changes it."""
    package = Path(troopauth.__file__).resolve().parent
    source = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        source.update(path.read_bytes())
    return source.hexdigest()[:8]


def source_revision() -> str:
    """The git commit of the checkout and the digest of troopauth's source:
    ``"5f1cb83, src 1a2b3c4d"``."""
    package = Path(troopauth.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 (git from PATH)
            cwd=package,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "no git"
    return f"{commit}, src {source_digest()}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "openssl": ssl.OPENSSL_VERSION,
        "sqlite": sqlite3.sqlite_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "troopauth": troopauth.__version__,
        "revision": source_revision(),
        "source_digest": source_digest(),
    }


def print_machine(title: str, about: Mapping[str, Any]) -> None:
    """The header every benchmark prints."""
    print(title)
    print(f"  platform:  {about['platform']}")
    print(
        f"  python:    {about['python']} ({about['openssl']}, SQLite {about['sqlite']})"
    )
    print(f"  cpus:      {about['cpu_count']} x {about['cpu']}")
    print(f"  load avg:  {' '.join(map(str, about['load_average']))} (at start)")
    print(f"  troopauth: {about['troopauth']} ({about['revision']})")
    sys.stdout.flush()


def filesystem(path: str) -> str:
    """The filesystem type holding *path* (Linux), for reading fsync costs."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    for entry in mounts:
        parts = entry.split()
        if len(parts) >= 3 and real.startswith(parts[1]) and len(parts[1]) > len(best):
            best, kind = parts[1], parts[2]
    return kind


# -- memory ------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc/self/statm``)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_bytes()
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# -- timing ------------------------------------------------------------------------


def timed_pass(f: Call, values: Sequence[str], troop_id: str, key: str = KEY) -> int:
    """Nanoseconds for one call per value; the same loop for every function."""
    clock = time.perf_counter_ns
    permission = PERMISSION
    start = clock()
    for v in values:
        f(v, troop_id, permission, key)
    return clock() - start


def compare(
    cases: Mapping[str, tuple[Call, Sequence[str]]],
    troop_id: str,
    repeats: int,
    key: str = KEY,
) -> dict[str, list[float]]:
    """Mean ns per call of each pass of each case (a function and the values
    it is called with); passes interleaved, order alternating, GC off."""
    for f, values in cases.values():  # warm up, and prove every call succeeds
        timed_pass(f, values, troop_id, key)
    order = list(cases.items())
    per_call: dict[str, list[float]] = {name: [] for name in cases}
    gc.collect()
    gc.disable()
    try:
        for r in range(repeats):
            for name, (f, values) in order if r % 2 == 0 else reversed(order):
                took = timed_pass(f, values, troop_id, key)
                per_call[name].append(took / len(values))
    finally:
        gc.enable()
    return per_call


def summary(passes: Sequence[float]) -> dict[str, float]:
    """Median, fastest and slowest of a list of per-pass figures."""
    return {
        "median": statistics.median(passes),
        "min": min(passes),
        "max": max(passes),
    }


def sample(values: Sequence[str], rng: random.Random, size: int = SAMPLE) -> list[str]:
    """*size* values drawn from *values*: distinct if there are enough, else
    each value about equally often; in random order either way.

    Each is a fresh copy, as a request would bring it: the loop then does not
    chase the originals, scattered across the whole store's memory.
    """
    if len(values) >= size:
        picked = rng.sample(list(values), size)
    else:
        picked = [values[i % len(values)] for i in range(size)]
        rng.shuffle(picked)
    return [v.encode().decode() for v in picked]


def make_floor(table: Mapping[bytes, frozenset[Permission]]) -> Call:
    """The bare floor, with verify's signature: one SHA-256, one dict lookup,
    one set test, one ``str.startswith``."""
    sha256 = hashlib.sha256
    prefix = FLOOR_PREFIX

    def floor(value: str, troop_id: str, permission: Permission, key: str) -> object:
        allowed = table[sha256(value.encode()).digest()]
        if permission in allowed and key.startswith(prefix):
            return allowed
        raise LookupError("floor: denied")

    return floor


def allowed_sets() -> list[frozenset[Permission]]:
    """Per grant of the mix, the permission sets it allows (the floor's set)."""
    combos = [Permission(v) for v in range(1, _ALL.value + 1)]
    return [frozenset(p for p in combos if p in g.permission) for g in SHARED_GRANTS]


# -- building a store fast ---------------------------------------------------------


def token_id() -> str:
    """A token id of the shape TroopAuth gives them."""
    return f"tok_{base62(secrets.randbits(128), 22)}"


class _BatchTransaction:
    """One store transaction that many ``core.issue_token`` calls share.

    The rule function runs unchanged for every token (actor check, no
    escalation, seat counting, the record) and each record goes to the
    adapter's own ``put_token``. Only the reads the rule repeats for every
    token of the batch (the account, the actor's token, the troop, the expiry
    index) are answered from memory after the first, and the account (its
    seat counter) is written once, at the end of the batch.
    """

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self.account_id = tx.account_id
        self._account: AccountRecord | None = tx.get_account()
        self._account_dirty = False
        self._troops: dict[str, TroopRecord | None] = {}
        self._tokens: dict[str, TokenRecord | None] = {}
        self._expiry_read = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    def get_account(self) -> AccountRecord | None:
        return self._account

    def put_account(self, record: AccountRecord) -> None:
        self._account = record
        self._account_dirty = True

    def get_troop(self, troop_id: str) -> TroopRecord | None:
        if troop_id not in self._troops:
            self._troops[troop_id] = self._tx.get_troop(troop_id)
        return self._troops[troop_id]

    def get_token(self, token_id: str) -> TokenRecord | None:
        # Only the actor's token is read (issue_token reads nothing else).
        if token_id not in self._tokens:
            self._tokens[token_id] = self._tx.get_token(token_id)
        return self._tokens[token_id]

    def expired_seated(self, now: datetime) -> list[TokenRecord]:
        # The first call reaps what had expired; the batch's own tokens never
        # expire, so every later call in the batch would find nothing.
        if self._expiry_read:
            return []
        self._expiry_read = True
        return self._tx.expired_seated(now)

    def put_token(self, record: TokenRecord) -> None:
        self._tx.put_token(record)

    def flush(self) -> None:
        """Write the account once (its seat counter) before the commit."""
        if self._account_dirty and self._account is not None:
            self._tx.put_account(self._account)
            self._account_dirty = False


class BulkLoader:
    """One account and troop, filled with troop tokens fast but faithfully.

    Each token is made by the rule function the public ``issue_token`` uses
    (``troopauth.core.issue_token``) from a value made by
    ``troopauth.tokens.new_value``, and written by the adapter's own
    ``put_token``; ``batch`` tokens share one store transaction (see
    `_BatchTransaction`). Grants cycle through `GRANT_MIX`; none expires.

    The loader keeps the values (and ids) of only the tokens whose issue
    index is in *keep*: enough to time verify on a random sample of a store
    of a million without holding a million strings itself.
    """

    def __init__(self, auth: TroopAuth, *, seats: int, batch: int) -> None:
        self.auth = auth
        self.batch = batch
        account = auth.create_account(seats=seats)
        self.account_id = account.id
        self.troop_id = auth.create_troop(account.id, "bench").id
        pat = auth.issue_personal_token(account.id)
        self.pat_value = pat.value
        self.owner = auth.authenticate(pat.value)
        self.count = 0
        #: issue index -> (token id, value) of the kept tokens.
        self.kept: dict[int, tuple[str, str]] = {}

    def grow(
        self,
        total: int,
        label: str,
        keep: Callable[[int], bool] | None = None,
    ) -> float:
        """Issue tokens until the troop holds *total*; the seconds it took."""
        store = self.auth.store
        start = time.perf_counter()
        start_count = self.count
        report_every = max((total - start_count) // 10, self.batch)
        next_report = self.count + report_every
        grants = SHARED_GRANTS
        owner, troop_id = self.owner, self.troop_id
        issue = core.issue_token
        was_enabled = gc.isenabled()
        gc.disable()  # records hold no cycles; collections only slow loading
        try:
            while self.count < total:
                first = self.count
                count = min(self.batch, total - first)
                with store.transaction(self.account_id) as tx:
                    batch = _BatchTransaction(tx)
                    for i in range(first, first + count):
                        value = new_value()
                        tid = token_id()
                        issue(
                            batch,  # a Transaction by duck typing
                            owner,
                            troop_id,
                            grants[i % len(grants)],
                            token_id=tid,
                            digest=digest(value),
                            hint=hint(value),
                            name="",
                            expires_at=None,
                            now=datetime.now(UTC),
                        )
                        if keep is None or keep(i):
                            self.kept[i] = (tid, value)
                    batch.flush()
                self.count += count
                if self.count >= next_report or self.count == total:
                    took = time.perf_counter() - start
                    rate = (self.count - start_count) / max(took, 1e-9)
                    progress(
                        f"{label}: {self.count:,}/{total:,} tokens "
                        f"({took:.1f} s, {rate:,.0f}/s)"
                    )
                    next_report += report_every
        finally:
            if was_enabled:
                gc.enable()
        return time.perf_counter() - start


def keep_indices(
    sizes: Sequence[int], rng: random.Random, per_size: int = SAMPLE
) -> dict[int, list[int]]:
    """Per store size, which issue indices to time verify on: all of them up
    to *per_size*, else a random *per_size* of those below the size."""
    return {
        size: list(range(size))
        if size <= per_size
        else rng.sample(range(size), per_size)
        for size in sizes
    }


# -- PostgreSQL --------------------------------------------------------------------


def postgres_default() -> str:
    """The DSN: $TROOPAUTH_BENCH_POSTGRES, else $TROOPAUTH_TEST_POSTGRES, else
    the local test server."""
    return (
        os.environ.get("TROOPAUTH_BENCH_POSTGRES")
        or os.environ.get("TROOPAUTH_TEST_POSTGRES")
        or DEFAULT_POSTGRES
    )


def postgres_unreachable(dsn: str | None) -> str | None:
    """Why PostgreSQL cannot be benchmarked, or None if it can."""
    if dsn is None:
        return "disabled (--no-postgres)"
    try:
        import psycopg

        import troopauth.postgres  # noqa: F401 (the adapter must import)
    except ImportError as exc:
        return f"troopauth.postgres cannot be imported ({exc})"
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"PostgreSQL is unreachable ({type(exc).__name__}: {first})"
    return None


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a benchmark schema and everything in it."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def schema_bytes(dsn: str, schema: str) -> int:
    """Bytes on disk of a schema's tables, indexes and TOAST."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return int(row[0]) if row else 0


def postgres_settings(dsn: str) -> dict[str, str]:
    """The server settings that bound its write rate."""
    import psycopg

    names = ("server_version", "synchronous_commit", "fsync", "shared_buffers")
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}  # type: ignore[index]  # SHOW returns a row


def counting_pool(dsn: str) -> tuple[Any, Callable[[], int]]:
    """A one-connection pool whose cursors count the statements they execute
    (each one round trip), and a function reading the count."""
    import psycopg
    from psycopg_pool import ConnectionPool

    counter = [0]

    class CountingCursor(psycopg.Cursor[Any]):
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            counter[0] += 1
            return super().execute(*args, **kwargs)

    pool: ConnectionPool[Any] = ConnectionPool(
        dsn,
        min_size=1,
        max_size=1,
        kwargs={"autocommit": True, "cursor_factory": CountingCursor},
        name="troopauth-bench-counting",
        open=True,
    )
    return pool, lambda: counter[0]
