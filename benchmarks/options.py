"""The command line every section shares, and the options it yields."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import attrs

from ._common import DEFAULT_SCHEMA, postgres_default

#: The sections of ``python -m benchmarks``, in the order they run.
SECTIONS = (
    "peers",
    "scale",
    "writes",
    "middleware",
    "listings",
    "fleet",
    "django",
)


@attrs.frozen
class Options:
    """What one run of the benchmarks was asked to do."""

    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    #: Timed passes per case; None: each section's default.
    repeats: int | None = None
    seed: int = 2024
    json: str | None = None
    plot: str | None = None
    tmpdir: str | None = None
    #: Store sizes for the scale section; None: its default.
    sizes: tuple[int, ...] | None = None
    #: Store sizes for PostgresStore in the scale section; None: as ``sizes``.
    postgres_sizes: tuple[int, ...] | None = None
    #: Tokens already in the account when the writes are timed; None: default.
    write_tokens: int | None = None
    processes: int = 4
    #: The PostgreSQL DSN, or None to leave PostgresStore out.
    postgres: str | None = None
    schema: str = DEFAULT_SCHEMA


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a list of whole numbers: {text!r}"
        ) from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are whole numbers, 1 or more")
    return tuple(sizes)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def parse(argv: Sequence[str] | None, prog: str = "python -m benchmarks") -> Options:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "troopauth's performance, side by side: verify against the floor "
            "and peers, verify and memory as the stores grow, write "
            "throughput, middleware overhead. See benchmarks/README.md."
        ),
    )
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"which sections to run, of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats: seconds, for a smoke test",
    )
    parser.add_argument(
        "--repeats", type=_positive, help="timed passes per case (default per section)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="sampling seed")
    parser.add_argument("--json", metavar="PATH", help="also write every figure here")
    parser.add_argument(
        "--plot",
        metavar="PATH",
        help="scale: draw verify time against store size (PNG) here",
    )
    parser.add_argument(
        "--tmpdir", metavar="DIR", help="where SQLite files go (default: TMPDIR)"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        help="scale: store sizes (default 1000,100000,1000000)",
    )
    parser.add_argument(
        "--postgres-sizes",
        type=_sizes,
        help="scale: store sizes for PostgresStore (default: as --sizes)",
    )
    parser.add_argument(
        "--write-tokens",
        type=int,
        help="writes: tokens already in the account (default 100000)",
    )
    parser.add_argument(
        "--processes",
        type=_positive,
        default=4,
        help="writes: processes issuing at once (default 4)",
    )
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        default=postgres_default(),
        help="PostgreSQL to benchmark (default: $TROOPAUTH_BENCH_POSTGRES, "
        "$TROOPAUTH_TEST_POSTGRES, or the local test server)",
    )
    parser.add_argument(
        "--no-postgres", action="store_true", help="leave PostgresStore out"
    )
    parser.add_argument(
        "--schema",
        default=DEFAULT_SCHEMA,
        help=f"PostgreSQL schema to work in, dropped at the end "
        f"(default {DEFAULT_SCHEMA})",
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(
            f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}"
        )
    if args.write_tokens is not None and args.write_tokens < 0:
        parser.error("--write-tokens must be 0 or more")
    chosen = tuple(s for s in SECTIONS if s in args.sections) or SECTIONS
    return Options(
        sections=chosen,
        quick=args.quick,
        repeats=args.repeats,
        seed=args.seed,
        json=args.json,
        plot=args.plot,
        tmpdir=args.tmpdir,
        sizes=args.sizes,
        postgres_sizes=args.postgres_sizes,
        write_tokens=args.write_tokens,
        processes=args.processes,
        postgres=None if args.no_postgres else args.postgres,
        schema=args.schema,
    )
