"""``python manage.py troopauth ...``: the ``troopauth`` command line over the
project's store (the ``TROOPAUTH`` settings; by default ``DjangoStore``).

The same commands, options, output (``--json`` included), token sources
(``$TROOPAUTH_TOKEN``, ``--token-file``, ``--token-stdin``) and exit codes as
``troopauth`` (see docs/cli.md), with two differences: there is no ``--db``
(the settings name the store), and ``demo`` and ``serve``, which run over a
SQLite file of their own, are left to the ``troopauth`` command.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from troopauth import cli
from troopauth.auth import TroopAuth
from troopauth.django.conf import get_auth
from troopauth.errors import TroopAuthError

#: The commands of ``troopauth`` that work on a SQLite file, not the store.
_FILE_COMMANDS = frozenset({"demo", "serve"})


def run(auth: TroopAuth, words: list[str], out: TextIO, err: TextIO) -> int:
    """Run one ``troopauth`` command line over *auth*; its exit code.

    What ``troopauth.cli.main`` does, with the facade given instead of one
    over ``--db``: the parser, handlers and error report are the CLI's own.
    """
    as_json = "--json" in words
    with redirect_stdout(out), redirect_stderr(err):
        try:
            args = cli._parser().parse_args(words)
            command: argparse.ArgumentParser = args.command_parser
            if args.command in _FILE_COMMANDS:
                command.error(
                    f"{args.command} runs over a SQLite file: use the troopauth "
                    "command; manage.py troopauth works on the project's store"
                )
            if getattr(args, "db", None) is not None:
                command.error(
                    "--db: manage.py troopauth works on the store the TROOPAUTH "
                    "settings name"
                )
            session = cli._Session(auth, args, os.environ)
            try:
                return int(args.handler(session, args))
            except cli._NoToken:
                command.error(
                    f"this command needs a token value: set ${cli.ENV_TOKEN}, or "
                    "pass --token-file PATH or --token-stdin"
                )
        except SystemExit as exc:  # argparse: --help and --version
            return exc.code if isinstance(exc.code, int) else cli.ExitCode.USAGE.value
        except cli._UsageError as exc:
            if not as_json:
                sys.stderr.write(exc.usage)
            return int(
                cli._fail(
                    cli.ExitCode.USAGE, "UsageError", exc.message, as_json=as_json
                )
            )
        except TroopAuthError as exc:
            return int(
                cli._fail(
                    cli._exit_code(exc), type(exc).__name__, str(exc), as_json=as_json
                )
            )


class Command(BaseCommand):
    """``manage.py troopauth <command> ...``; ``manage.py troopauth --help``
    is troopauth's own help. From code: ``call_command("troopauth",
    words=["--json", "seats", account_id])``."""

    help = (
        "troopauth's command line (accounts, troops, PAT, tokens, members, "
        "verify, audit, seats) over the store of the TROOPAUTH settings."
    )
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        """Everything after ``troopauth`` goes to troopauth's own parser."""
        parser.add_argument("words", nargs="*", default=[])

    def run_from_argv(self, argv: list[str]) -> None:
        """From ``manage.py``: every word after ``troopauth`` is troopauth's
        (Django's parser would take ``--json`` or ``--help`` for its own)."""
        code = run(get_auth(), argv[2:], sys.stdout, sys.stderr)
        connections.close_all()
        sys.exit(code)

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the command; exit with its code when it fails."""
        words = [*args, *options["words"]]
        out: TextIO = getattr(self.stdout, "_out", sys.stdout)
        err: TextIO = getattr(self.stderr, "_out", sys.stderr)
        code = run(get_auth(), words, out, err)
        if code:
            raise SystemExit(code)
