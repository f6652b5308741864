"""The ``troopauth`` command (also ``python -m troopauth``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .demo import run_demo
from .errors import TroopAuthError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="troopauth",
        description="Scoped, seated API tokens: command-line tools.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run the whole token story end to end on an embedded database"
    )
    demo.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="SQLite file to use and keep (default: a temporary file)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return run_demo(args.db)
    except TroopAuthError as exc:
        print(f"troopauth: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover (argparse rejects unknown commands)
