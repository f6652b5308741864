"""What ``TroopAuthMiddleware`` costs per request, driven in-process.

Section ``middleware`` of ``python -m benchmarks``. A minimal ASGI application
(one ``http.response.start``, one ``http.response.body``) is called directly
with prebuilt scopes, a ``receive`` and a ``send`` that do nothing: no server,
no HTTP parsing, no client. What is left is the application and, when
wrapped, the middleware (and a per-route ``require``) over a ``MemoryStore``.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Sequence
from typing import Any

from troopauth import MemoryStore, TroopAuth
from troopauth.asgi import ASGIApp, Message, Scope, TroopAuthMiddleware, require

from ._common import KEY, PERMISSION, BulkLoader, Phases, sample, summary, table
from .options import Options

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
}
_BODY = {"type": "http.response.body", "body": b"ok"}


async def hello(scope: Scope, receive: Any, send: Any) -> None:
    """The application: ``200 ok``, nothing else."""
    await send(_START)
    await send(_BODY)


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Message) -> None:
    return None


def scope_for(value: str) -> Scope:
    """An HTTP request scope as a server builds one, with a bearer token."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/keys/{KEY}",
        "raw_path": f"/keys/{KEY}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"api.example"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            (b"authorization", b"Bearer " + value.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _drive(app: ASGIApp, scopes: Sequence[Scope]) -> int:
    """Nanoseconds to serve every scope once, one after the other."""
    receive, send = _receive, _send
    clock = time.perf_counter_ns
    start = clock()
    for scope in scopes:
        await app(scope, receive, send)
    return clock() - start


async def _statuses(app: ASGIApp, scopes: Sequence[Scope]) -> set[int]:
    """The statuses the app answers (the warm-up proves they are all 200)."""
    seen: set[int] = set()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            seen.add(message["status"])

    for scope in scopes:
        await app(scope, _receive, send)
    return seen


def run(opts: Options, phases: Phases) -> dict[str, Any]:
    """Requests per second of the application bare, behind the middleware, and
    behind the middleware with a per-route requirement."""
    rng = random.Random(opts.seed)
    calls = 2_000 if opts.quick else 10_000
    repeats = opts.repeats or (3 if opts.quick else 15)
    with phases("middleware: build"):
        auth = TroopAuth(MemoryStore())
        loader = BulkLoader(auth, seats=calls + 1, batch=10_000)
        loader.grow(calls, "MemoryStore")
        values = sample([v for _, v in loader.kept.values()], rng, calls)
        scopes = [scope_for(v) for v in values]
        guarded = require(troop=loader.troop_id, permission=PERMISSION, key=KEY)
        apps: dict[str, ASGIApp] = {
            "bare app": hello,
            "TroopAuthMiddleware": TroopAuthMiddleware(hello, auth=auth),
            "middleware + require()": TroopAuthMiddleware(
                guarded.wrap(hello), auth=auth
            ),
        }
    loop = asyncio.new_event_loop()
    try:
        for name, app in apps.items():
            seen = loop.run_until_complete(_statuses(app, scopes))
            if seen != {200}:
                raise RuntimeError(f"{name}: answered {sorted(seen)}, expected 200")
        passes: dict[str, list[float]] = {name: [] for name in apps}
        order = list(apps.items())
        with phases(f"middleware: {repeats} interleaved passes"):
            gc.collect()
            gc.disable()
            try:
                for r in range(repeats):
                    for name, app in order if r % 2 == 0 else reversed(order):
                        took = loop.run_until_complete(_drive(app, scopes))
                        passes[name].append(took / len(scopes))
            finally:
                gc.enable()
    finally:
        loop.close()
        auth.store.close()
    bare = statistics.median(passes["bare app"])
    rows = []
    for name, xs in passes.items():
        s = summary(xs)
        rows.append(
            {
                "app": name,
                **{f"{k}_ns": v for k, v in s.items()},
                "requests_per_s": 1e9 / s["median"],
                "overhead_ns": s["median"] - bare,
                "passes_ns": xs,
            }
        )
    return {
        "requests_per_pass": len(scopes),
        "distinct_tokens": len(set(values)),
        "repeats": repeats,
        "rows": rows,
    }


def report(result: dict[str, Any]) -> None:
    """Print the middleware table."""
    print(
        "\nMIDDLEWARE: an ASGI app called in-process, bare and behind "
        "TroopAuthMiddleware (MemoryStore)"
    )
    print(
        f"   {result['requests_per_pass']:,} requests per pass over "
        f"{result['distinct_tokens']:,} distinct bearer tokens; median of "
        f"{result['repeats']} interleaved passes; no server, no HTTP parsing\n"
    )
    print(
        table(
            ["application", "requests/s", "us/request", "overhead us"],
            [
                [
                    r["app"],
                    f"{r['requests_per_s']:,.0f}",
                    f"{r['median_ns'] / 1000:.2f}",
                    f"{r['overhead_ns'] / 1000:+.2f}",
                ]
                for r in result["rows"]
            ],
        )
    )
