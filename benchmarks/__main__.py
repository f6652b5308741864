"""``python -m benchmarks [SECTION ...]``: the side-by-side benchmarks.

Sections: ``peers`` (verify against the floor, PyJWT, itsdangerous, casbin),
``scale`` (verify and memory per adapter up to a million tokens), ``writes``
(issue, rotate, revoke; several processes), ``middleware`` (ASGI overhead),
``listings`` (scope parsing, a troop's tokens listed and paged), ``fleet``
(verify through CachedStore against MemoryStore; how soon a revoke in one
process is refused by 4 others), ``django`` (a DRF view behind troopauth,
django-rest-knox and djangorestframework-api-key, in a child process).
Default: all of them. ``--quick`` runs each in seconds; ``--json PATH`` keeps
every figure, ``--plot PATH`` draws the scale figure. ``benchmarks/README.md``
says what each measures; ``python -m benchmarks.verify`` is the older verify
and issue benchmark.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from . import django_views, fleet, listings, middleware, peers, scale, writes
from ._common import Phases, machine, print_machine, source_digest, table
from .options import parse

_MODULES = {
    "peers": peers,
    "scale": scale,
    "writes": writes,
    "middleware": middleware,
    "listings": listings,
    "fleet": fleet,
    "django": django_views,
}


def _redacted(dsn: str | None) -> str | None:
    """The DSN without its password, for the JSON file."""
    if dsn is None:
        return None
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        parts = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 (any failure: withhold it all)
        return "(withheld)"
    parts.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in parts.items()})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections; 0 even when a target is missed."""
    opts = parse(argv)
    started = time.perf_counter()
    phases = Phases()
    about = machine()
    print_machine("troopauth benchmarks", about)
    print(f"  sections:  {' '.join(opts.sections)}{' (--quick)' if opts.quick else ''}")
    results: dict[str, Any] = {}
    for name in opts.sections:
        module = _MODULES[name]
        results[name] = module.run(opts, phases)
        module.report(results[name])
        sys.stdout.flush()
    if opts.plot:
        if "scale" in results:
            scale.plot(results["scale"], opts.plot)
            print(f"\nplot written to {opts.plot}")
        else:
            print("\n--plot draws the scale section, which did not run")
    total = time.perf_counter() - started
    if source_digest() != about["source_digest"]:
        print(
            "\nWARNING: troopauth's source changed during the run "
            f"(src {about['source_digest']} -> {source_digest()}): run again"
        )
    print("\nPhases (wall clock)\n")
    print(
        table(
            ["phase", "seconds"],
            [[name, f"{took:.1f}"] for name, took in phases.done]
            + [["total", f"{total:.1f}"]],
        )
    )
    if opts.json:
        document = {
            "machine": about,
            "options": {**attrs.asdict(opts), "postgres": _redacted(opts.postgres)},
            **results,
            "phases": [{"phase": n, "seconds": s} for n, s in phases.done],
            "total_seconds": total,
        }
        Path(opts.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults written to {opts.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
