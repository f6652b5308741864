"""The ``troopauth`` command (also ``python -m troopauth``).

Every command but ``demo`` works on one SQLite file (``--db``, else
``$TROOPAUTH_DB``, else ``./troopauth.db``). Token values never travel as
command-line arguments, where shell history and ``ps`` would show them: the
acting token (and the one ``verify`` checks) comes from ``$TROOPAUTH_TOKEN``,
``--token-file PATH`` or ``--token-stdin``. A new secret is printed once, on
stdout, with a warning on stderr. Errors are one line on stderr and an exit
code per error class (:data:`EXIT_CODES`, the one table of them).
"""

from __future__ import annotations

import argparse
import enum
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .auth import TroopAuth
from .demo import run_demo
from .errors import (
    AccessDenied,
    InvalidArgument,
    InvalidToken,
    NotFound,
    SeatsExhausted,
    StoreError,
    TroopAuthError,
    redact,
)
from .grant import Grant
from .models import (
    Account,
    AuditEvent,
    IssuedToken,
    Member,
    Principal,
    SeatPool,
    TokenInfo,
    Troop,
)
from .permission import Permission
from .serialization import converter
from .sqlite import SQLiteStore

__all__ = ["ENV_DB", "ENV_TOKEN", "EXIT_CODES", "ExitCode", "main"]

#: The environment variable naming the database file (``--db`` overrides it).
ENV_DB = "TROOPAUTH_DB"
#: The environment variable holding the acting token's value.
ENV_TOKEN = "TROOPAUTH_TOKEN"  # noqa: S105 (a variable name, not a secret)
_DEFAULT_DB = "troopauth.db"
#: A token file or stdin holding more than this is not a token.
_MAX_TOKEN_TEXT = 4096
_TOKEN_SHAPED = re.compile(r"cpt_pat_[0-9A-Za-z]")
_DURATION = re.compile(r"([1-9][0-9]{0,5})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class ExitCode(enum.IntEnum):
    """The exit codes of the ``troopauth`` command (see :data:`EXIT_CODES`)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    INVALID_TOKEN = 3
    ACCESS_DENIED = 4
    NOT_FOUND = 5
    SEATS_EXHAUSTED = 6
    INVALID_ARGUMENT = 7
    STORE_ERROR = 8
    AUDIT_BROKEN = 9


#: The one table of exit codes: the code, the error class it stands for (if
#: any) and what it means. The ``--help`` epilog and the error handling both
#: read it.
EXIT_CODES: tuple[tuple[ExitCode, type[TroopAuthError] | None, str], ...] = (
    (ExitCode.OK, None, "success"),
    (ExitCode.UNEXPECTED, None, "an unexpected error (a bug: please report it)"),
    (ExitCode.USAGE, None, "a bad command line, or no token where one is needed"),
    (ExitCode.INVALID_TOKEN, InvalidToken, "the token value is not a live token"),
    (ExitCode.ACCESS_DENIED, AccessDenied, "the token may not do this"),
    (ExitCode.NOT_FOUND, NotFound, "no such account, troop, token or member"),
    (ExitCode.SEATS_EXHAUSTED, SeatsExhausted, "no free seat for another token"),
    (
        ExitCode.INVALID_ARGUMENT,
        InvalidArgument,
        "a malformed argument (permission, scope, name, time, token file)",
    ),
    (
        ExitCode.STORE_ERROR,
        StoreError,
        "the database is missing, unreadable, locked or too new",
    ),
    (ExitCode.AUDIT_BROKEN, None, "audit: the log's hash chain is broken"),
)

_BY_ERROR: Mapping[type[TroopAuthError], ExitCode] = {
    kind: code for code, kind, _ in EXIT_CODES if kind is not None
}


def _exit_code(exc: TroopAuthError) -> ExitCode:
    """The code of the nearest error class of *exc* in the table."""
    for kind in type(exc).__mro__:
        code = _BY_ERROR.get(kind)
        if code is not None:
            return code
    return ExitCode.UNEXPECTED


_TOKEN_RULE = (
    "Token values are never command-line arguments (shell history and `ps`\n"
    f"would show them): a token value comes from ${ENV_TOKEN},\n"
    "--token-file PATH or --token-stdin."
)


def _epilog() -> str:
    rows = "\n".join(
        f"  {code.value}  {kind.__name__ + ': ' if kind else ''}{meaning}"
        for code, kind, meaning in EXIT_CODES
    )
    return (
        f"{_TOKEN_RULE}\n\n"
        "New secrets (pat issue, token issue, token rotate) are printed once, on\n"
        "stdout, with a warning on stderr; only their hash is stored.\n\n"
        f"environment:\n  {ENV_DB}     the database file (default ./{_DEFAULT_DB})\n"
        f"  {ENV_TOKEN}  the acting (or checked) token's value\n\n"
        f"exit codes:\n{rows}"
    )


class _UsageError(Exception):
    """A bad command line: the parser's usage line and a redacted message."""

    def __init__(self, usage: str, prog: str, message: str) -> None:
        super().__init__(message)
        self.usage, self.prog, self.message = usage, prog, message


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors never echo a token value, and reach `main`
    (which prints them as text or, with ``--json``, as JSON)."""

    def error(self, message: str) -> NoReturn:
        """Raise the redacted message with this parser's usage (exit 2)."""
        hint = ""
        if _TOKEN_SHAPED.search(message):
            hint = (
                f"; {self.prog}: token values are never arguments: use "
                f"${ENV_TOKEN}, --token-file or --token-stdin; the value is "
                "now in your shell history, so rotate it"
            )
        raise _UsageError(self.format_usage(), self.prog, redact(message) + hint)


class _NoToken(Exception):  # noqa: N818 (a private signal, not an error class)
    """No token value was given to a command that needs one."""


# -- the command line ----------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    """``--db`` and ``--json``, accepted before or after the command."""
    parser.add_argument(
        "--db",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=f"SQLite database file (default: ${ENV_DB}, else ./{_DEFAULT_DB})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print machine-readable JSON on stdout",
    )


def _token_source(parser: argparse.ArgumentParser, whose: str) -> None:
    """Where *whose* token value comes from: never an argument."""
    group = parser.add_argument_group(
        f"{whose} (never a command-line argument)",
        f"From --token-file or --token-stdin, else ${ENV_TOKEN}.",
    )
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--token-file",
        metavar="PATH",
        help="read the token value from this file (keep it mode 600)",
    )
    source.add_argument(
        "--token-stdin",
        action="store_true",
        help="read the token value from stdin (prompted, unechoed, on a terminal)",
    )


class _SeatsWords(argparse.Action):
    """``seats ACCOUNT_ID`` or ``seats set ACCOUNT_ID N``; anything else is a
    usage error before the database is opened."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        words = [str(w) for w in values] if isinstance(values, list) else []
        if not (len(words) == 1 or (len(words) == 3 and words[0] == "set")):
            extra = words[3:] if words[:1] == ["set"] else words[1:]
            parser.error(
                f"unrecognized arguments: {' '.join(extra or words)} "
                "(give ACCOUNT_ID, or set ACCOUNT_ID N)"
            )
        setattr(namespace, self.dest, words)


def _policy_options(parser: argparse.ArgumentParser, *, changing: bool = False) -> None:
    lifetime = parser.add_mutually_exclusive_group()
    lifetime.add_argument(
        "--max-lifetime",
        metavar="DURATION",
        help="every token issued expires within this: a number and s, m, h or d",
    )
    expiry = parser.add_mutually_exclusive_group()
    expiry.add_argument(
        "--require-expiry",
        action="store_true",
        default=None,
        help="refuse a token issued without an expiry",
    )
    if changing:
        lifetime.add_argument(
            "--no-max-lifetime", action="store_true", help="drop the maximum lifetime"
        )
        expiry.add_argument(
            "--no-require-expiry",
            dest="require_expiry",
            action="store_false",
            help="allow tokens without an expiry again",
        )


def _grant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--permission",
        required=True,
        metavar="PERMS",
        help="comma-separated permissions: view, use, edit, manage",
    )
    parser.add_argument(
        "--scope",
        required=True,
        metavar="SCOPE",
        help="comma-separated patterns: '*' (whole troop), key:NAME, key:PREFIX*",
    )


if TYPE_CHECKING:
    _Handler = Callable[["_Session", argparse.Namespace], int]
    _Group = argparse._SubParsersAction[_Parser]
_ACTING = "the acting token"


def _leaf(
    where: _Group,
    name: str,
    help_text: str,
    handler: _Handler,
    actor: str | None = None,
) -> argparse.ArgumentParser:
    """A command with the common options, its handler and, if it acts or
    checks a token, where the token value comes from."""
    parser: argparse.ArgumentParser = where.add_parser(
        name,
        help=help_text,
        description=help_text + (f"\n\n{_TOKEN_RULE}" if actor else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    if actor is not None:
        _token_source(parser, actor)
    parser.set_defaults(handler=handler, command_parser=parser)
    return parser


def _group(top: _Group, name: str, help_text: str) -> _Group:
    parser = top.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _account_commands(top: _Group) -> None:
    account = _group(top, "account", "accounts")
    p = _leaf(account, "create", "create an account", _account_create)
    p.add_argument("--seats", type=int, required=True, metavar="N", help="seat pool")
    p.add_argument(
        "--audit-log",
        action="store_true",
        help="keep the hash-chained audit log for this account",
    )
    _policy_options(p)
    p = _leaf(
        account,
        "policy",
        "show or change an account's token policy (for tokens issued from now on)",
        _account_policy,
    )
    p.add_argument("account_id", metavar="ACCOUNT_ID")
    _policy_options(p, changing=True)
    troop = _group(top, "troop", "troops")
    p = _leaf(troop, "create", "create a troop in an account", _troop_create)
    p.add_argument("account_id", metavar="ACCOUNT_ID")
    p.add_argument("name", metavar="NAME")
    p = _leaf(troop, "list", "an account's troops, oldest first", _troop_list)
    p.add_argument("account_id", metavar="ACCOUNT_ID")
    pat = _group(top, "pat", "the account's personal access token")
    p = _leaf(
        pat,
        "issue",
        "issue the account's personal access token (replaces the old one at once)",
        _pat_issue,
    )
    p.add_argument("account_id", metavar="ACCOUNT_ID")


def _token_commands(top: _Group) -> None:
    token = _group(top, "token", "troop access tokens")
    p = _leaf(
        token, "issue", "issue a troop token (takes a seat)", _token_issue, _ACTING
    )
    p.add_argument("troop_id", metavar="TROOP_ID")
    _grant_options(p)
    p.add_argument("--name", default="", help="a label for listings")
    expiry = p.add_mutually_exclusive_group()
    expiry.add_argument(
        "--expires-at",
        metavar="TIME",
        help="ISO 8601 time with its UTC offset, e.g. 2030-01-01T00:00:00+00:00",
    )
    expiry.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="a duration from now: a number and s, m, h or d, e.g. 90d",
    )
    for name, help_text, handler in (
        (
            "attach",
            "attach a token to a troop (re-attaching replaces the grant)",
            _token_attach,
        ),
        ("detach", "detach a token from a troop", _token_detach),
    ):
        p = _leaf(token, name, help_text, handler, _ACTING)
        p.add_argument("token_id", metavar="TOKEN_ID")
        p.add_argument("troop_id", metavar="TROOP_ID")
        if name == "attach":
            _grant_options(p)
    for name, help_text, handler in (
        (
            "rotate",
            "give a token a new secret (the old value stops working now)",
            _token_rotate,
        ),
        ("revoke", "disable a token for good (frees its seat)", _token_revoke),
    ):
        p = _leaf(token, name, help_text, handler, _ACTING)
        p.add_argument("token_id", metavar="TOKEN_ID")
    p = _leaf(
        token,
        "list",
        "the tokens attached to a troop, oldest first (no secrets)",
        _token_list,
    )
    p.add_argument("troop_id", metavar="TROOP_ID")
    p.add_argument("--limit", type=int, metavar="N", help="at most N tokens (a page)")
    p.add_argument(
        "--after",
        metavar="TOKEN_ID",
        help="start after this token (the last of the previous page)",
    )
    p = _leaf(token, "show", "one token, in any state (no secret)", _token_show)
    p.add_argument("token_id", metavar="TOKEN_ID")
    p = _leaf(
        token,
        "expiring",
        "an account's live tokens that expire soon, soonest first (no secrets)",
        _token_expiring,
    )
    p.add_argument("account_id", metavar="ACCOUNT_ID")
    p.add_argument(
        "--within",
        default="7d",
        metavar="DURATION",
        help="how soon: a number and s, m, h or d (default 7d)",
    )
    _leaf(
        token,
        "report-leak",
        "revoke at once the token holding a leaked value (no actor needed); "
        "exit 0 whether or not a live token held it",
        _token_report_leak,
        "the leaked value",
    )


def _member_commands(top: _Group) -> None:
    member = _group(top, "member", "members of a troop")
    for name, help_text, handler in (
        (
            "add",
            "give a member a grant in a troop (replaces what they held there)",
            _member_add,
        ),
        ("remove", "take a member's grant in a troop away", _member_remove),
    ):
        p = _leaf(member, name, help_text, handler, _ACTING)
        p.add_argument("troop_id", metavar="TROOP_ID")
        p.add_argument("member_id", metavar="MEMBER_ID")
        if name == "add":
            _grant_options(p)
    p = _leaf(member, "list", "the members of a troop and their grants", _member_list)
    p.add_argument("troop_id", metavar="TROOP_ID")


def _read_commands(top: _Group) -> None:
    p = _leaf(
        top,
        "verify",
        "check a token for a permission in a troop (exit 0 if allowed)",
        _verify,
        "the token to check",
    )
    p.add_argument("troop_id", metavar="TROOP_ID")
    p.add_argument(
        "--permission",
        required=True,
        metavar="PERMS",
        help="comma-separated permissions, all required: view, use, edit, manage",
    )
    p.add_argument("--key", help="the key acted on (default: a troop-level action)")
    p = _leaf(
        top,
        "seats",
        "an account's seat pool; `seats set ACCOUNT_ID N` resizes it (never "
        "below the seats in use)",
        _seats,
    )
    p.add_argument(
        "words", nargs="+", metavar="[set] ACCOUNT_ID [N]", action=_SeatsWords
    )
    p = _leaf(
        top,
        "audit",
        "a troop's (or the account's) audit log and its hash-chain check "
        f"(exit {ExitCode.AUDIT_BROKEN.value} if the chain is broken)",
        _audit,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("troop_id", metavar="TROOP_ID", nargs="?")
    which.add_argument(
        "--account", metavar="ACCOUNT_ID", help="the account's own log (PAT events)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="troopauth",
        description="Scoped, seated API tokens: command-line tools over a "
        "SQLite database.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    _common(parser)
    top = parser.add_subparsers(dest="command", required=True)
    _account_commands(top)
    _token_commands(top)
    _member_commands(top)
    _read_commands(top)
    serve = top.add_parser(
        "serve",
        help="serve the tokens surface (JSON API and page) over the database "
        "(needs the http extra)",
        description="Serve the tokens surface over HTTP: the JSON API, its "
        "OpenAPI document and the page at /, over the SQLite database "
        "(--db, else $TROOPAUTH_DB). Needs the http extra: pip install "
        "'troopauth[http]'.",
    )
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="default 8000")
    serve.set_defaults(handler=None, command_parser=serve)
    demo = top.add_parser(
        "demo", help="run the whole token story end to end on an embedded database"
    )
    demo.add_argument(
        "--db",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="SQLite file to use and keep (default: a temporary file)",
    )
    demo.set_defaults(handler=None, command_parser=demo)
    return parser


# -- running a command -----------------------------------------------------------


class _Session:
    """One command's context: the facade, the output mode, the token source."""

    def __init__(
        self, auth: TroopAuth, args: argparse.Namespace, env: Mapping[str, str]
    ) -> None:
        self.auth = auth
        self.json: bool = getattr(args, "json", False)
        self._args = args
        self._env = env

    def token_value(self) -> str:
        """The token value from --token-file, --token-stdin or the environment."""
        path: str | None = getattr(self._args, "token_file", None)
        if path is not None:
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read(_MAX_TOKEN_TEXT)
            except UnicodeDecodeError:
                raise InvalidToken from None
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot read the token file {path!r}: {exc.strerror}"
                ) from None
            return text.strip()
        if getattr(self._args, "token_stdin", False):
            if sys.stdin.isatty():  # pragma: no cover (needs a terminal)
                return getpass.getpass("token value: ").strip()
            return sys.stdin.read(_MAX_TOKEN_TEXT).strip()
        value = self._env.get(ENV_TOKEN, "").strip()
        if not value:
            raise _NoToken
        return value

    def actor(self) -> Principal:
        """The principal of the acting token."""
        principal = self.auth.authenticate(self.token_value())
        self.auth.flush_last_used()  # the process ends soon: write the use now
        return principal

    def emit(self, data: object, text: str) -> None:
        """*data* as JSON, or *text*, on stdout."""
        if self.json:
            print(json.dumps(data, indent=2))
        else:
            print(text)

    def secret(self, issued: IssuedToken, note: str) -> None:
        """A new secret, once, on stdout; the note and the warning on stderr.

        In text mode stdout holds the value alone, so ``> file`` keeps exactly
        the token and ``--token-file file`` reads it back.
        """
        if self.json:
            print(json.dumps(converter.unstructure(issued), indent=2))
        else:
            _note(note)
            print(issued.value)
        _note(
            "warning: the token value on stdout is shown this once and never "
            "again (only its hash is stored): copy it now"
        )


def _note(text: str) -> None:
    print(f"troopauth: {text}", file=sys.stderr)


def _grant(args: argparse.Namespace) -> Grant:
    return Grant.parse(args.permission, args.scope)


def _when(moment: datetime | None) -> str:
    return "never" if moment is None else moment.isoformat(timespec="seconds")


def _token_text(info: TokenInfo) -> str:
    name = f" {info.name!r}" if info.name else ""
    used = "" if info.last_used_at is None else f"  used {_when(info.last_used_at)}"
    head = (
        f"{info.token_id}{name} {info.hint}  created {_when(info.created_at)}  "
        f"expires {_when(info.expires_at)}{used}"
    )
    lines = [head]
    lines += [f"    {troop}: {grant}" for troop, grant in info.grants.items()]
    if not info.grants:
        lines.append("    attached to no troop (takes no seat)")
    return "\n".join(lines)


def _duration(option: str, text: str) -> timedelta:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidArgument(
            f"{option} {text[:40]!r} is not a duration such as 30m, 12h or 90d"
        )
    amount, unit = int(match.group(1)), _UNITS[match.group(2)]
    return timedelta(**{unit: amount})


def _policy_text(account: Account) -> str:
    lifetime = account.max_token_lifetime
    most = (
        "no maximum lifetime" if lifetime is None else f"tokens live at most {lifetime}"
    )
    need = "an expiry required" if account.require_expiry else "no expiry required"
    return f"{most}, {need}"


def _expiry(args: argparse.Namespace) -> datetime | None:
    if args.expires_at is not None:
        try:
            moment = datetime.fromisoformat(args.expires_at)
        except ValueError:
            raise InvalidArgument(
                f"--expires-at {args.expires_at[:40]!r} is not an ISO 8601 time"
            ) from None
        if moment.utcoffset() is None:
            raise InvalidArgument(
                "--expires-at needs a UTC offset, e.g. 2030-01-01T00:00:00+00:00"
            )
        return moment
    if args.expires_in is not None:
        return datetime.now(UTC) + _duration("--expires-in", args.expires_in)
    return None


# -- the commands ------------------------------------------------------------------


def _account_create(s: _Session, args: argparse.Namespace) -> int:
    lifetime = (
        None
        if args.max_lifetime is None
        else _duration("--max-lifetime", args.max_lifetime)
    )
    account = s.auth.create_account(
        seats=args.seats,
        audit_log=args.audit_log,
        max_token_lifetime=lifetime,
        require_expiry=bool(args.require_expiry),
    )
    kept = "on" if account.audit_log else "off"
    seats = f"{account.seats} seat{'' if account.seats == 1 else 's'}"
    policy = ""
    if lifetime is not None or account.require_expiry:
        policy = f"; {_policy_text(account)}"
    s.emit(
        converter.unstructure(account),
        f"created account {account.id}: {seats}, audit log {kept}{policy}",
    )
    return ExitCode.OK


def _account_policy(s: _Session, args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.max_lifetime is not None:
        changes["max_token_lifetime"] = _duration("--max-lifetime", args.max_lifetime)
    elif args.no_max_lifetime:
        changes["max_token_lifetime"] = None
    if args.require_expiry is not None:
        changes["require_expiry"] = args.require_expiry
    account = s.auth.set_policy(args.account_id, **changes)
    s.emit(
        converter.unstructure(account),
        f"account {account.id}: {_policy_text(account)}",
    )
    return ExitCode.OK


def _troop_create(s: _Session, args: argparse.Namespace) -> int:
    troop = s.auth.create_troop(args.account_id, args.name)
    s.emit(
        converter.unstructure(troop),
        f"created troop {troop.id} {troop.name!r} in account {troop.account_id}",
    )
    return ExitCode.OK


def _troop_list(s: _Session, args: argparse.Namespace) -> int:
    troops = s.auth.troops(args.account_id)
    text = "\n".join(
        f"{t.id} {t.name!r}  created {_when(t.created_at)}" for t in troops
    )
    s.emit(converter.unstructure(troops, list[Troop]), text or "no troops")
    return ExitCode.OK


def _pat_issue(s: _Session, args: argparse.Namespace) -> int:
    issued = s.auth.issue_personal_token(args.account_id)
    s.secret(
        issued,
        f"issued personal access token {issued.token_id} ({issued.hint}) for "
        f"account {args.account_id}; any previous one stopped working",
    )
    return ExitCode.OK


def _token_issue(s: _Session, args: argparse.Namespace) -> int:
    grant, expires_at = _grant(args), _expiry(args)
    issued = s.auth.issue_token(
        s.actor(), args.troop_id, grant, name=args.name, expires_at=expires_at
    )
    s.secret(
        issued,
        f"issued troop token {issued.token_id} ({issued.hint}) in troop "
        f"{args.troop_id}: {grant}, expires {_when(expires_at)}",
    )
    return ExitCode.OK


def _token_attach(s: _Session, args: argparse.Namespace) -> int:
    grant = _grant(args)
    info = s.auth.attach(s.actor(), args.token_id, args.troop_id, grant)
    s.emit(
        converter.unstructure(info),
        f"attached {args.token_id} to {args.troop_id}: {grant}\n{_token_text(info)}",
    )
    return ExitCode.OK


def _token_detach(s: _Session, args: argparse.Namespace) -> int:
    info = s.auth.detach(s.actor(), args.token_id, args.troop_id)
    s.emit(
        converter.unstructure(info),
        f"detached {args.token_id} from {args.troop_id}\n{_token_text(info)}",
    )
    return ExitCode.OK


def _token_rotate(s: _Session, args: argparse.Namespace) -> int:
    issued = s.auth.rotate(s.actor(), args.token_id)
    s.secret(
        issued,
        f"rotated token {issued.token_id}: new value {issued.hint}; the old "
        "value stopped working",
    )
    return ExitCode.OK


def _token_revoke(s: _Session, args: argparse.Namespace) -> int:
    s.auth.revoke(s.actor(), args.token_id)
    s.emit(
        {"token_id": args.token_id, "revoked": True},
        f"revoked token {args.token_id}: its value no longer works, its seat is free",
    )
    return ExitCode.OK


def _token_list(s: _Session, args: argparse.Namespace) -> int:
    tokens = s.auth.tokens(args.troop_id, limit=args.limit, after=args.after)
    text = "\n".join(_token_text(t) for t in tokens) or "no tokens attached"
    s.emit(converter.unstructure(tokens, list[TokenInfo]), text)
    return ExitCode.OK


def _token_show(s: _Session, args: argparse.Namespace) -> int:
    info = s.auth.token(args.token_id)
    state = "revoked" if info.revoked else f"{info.kind.value} token"
    s.emit(converter.unstructure(info), f"{_token_text(info)}\n    state: {state}")
    return ExitCode.OK


def _token_expiring(s: _Session, args: argparse.Namespace) -> int:
    tokens = s.auth.expiring(args.account_id, _duration("--within", args.within))
    text = "\n".join(_token_text(t) for t in tokens)
    s.emit(
        converter.unstructure(tokens, list[TokenInfo]),
        text or f"no token expires within {args.within}",
    )
    return ExitCode.OK


def _token_report_leak(s: _Session, args: argparse.Namespace) -> int:
    revoked = s.auth.report_leak(s.token_value())
    s.emit(
        {"revoked": revoked},
        "revoked: the token that held this value is dead for good, its seat free"
        if revoked
        else "no live token holds this value: nothing changed",
    )
    return ExitCode.OK


def _member_list(s: _Session, args: argparse.Namespace) -> int:
    members = s.auth.members(args.troop_id)
    text = "\n".join(f"{m.member_id}: {m.grant}" for m in members)
    s.emit(converter.unstructure(members, list[Member]), text or "no members")
    return ExitCode.OK


def _member_add(s: _Session, args: argparse.Namespace) -> int:
    grant = _grant(args)
    s.auth.add_member(s.actor(), args.troop_id, args.member_id, grant)
    s.emit(
        {
            "troop_id": args.troop_id,
            "member_id": args.member_id,
            "grant": converter.unstructure(grant),
        },
        f"member {args.member_id} in troop {args.troop_id}: {grant}",
    )
    return ExitCode.OK


def _member_remove(s: _Session, args: argparse.Namespace) -> int:
    s.auth.remove_member(s.actor(), args.troop_id, args.member_id)
    s.emit(
        {"troop_id": args.troop_id, "member_id": args.member_id, "removed": True},
        f"removed member {args.member_id} from troop {args.troop_id}",
    )
    return ExitCode.OK


def _verify(s: _Session, args: argparse.Namespace) -> int:
    permission = Permission.parse(args.permission)
    principal = s.auth.verify(s.token_value(), args.troop_id, permission, args.key)
    s.auth.flush_last_used()  # the process ends soon: write the use now
    target = f"key {args.key!r}" if args.key is not None else "the troop"
    s.emit(
        converter.unstructure(principal),
        f"allowed: {principal.describe()} (account {principal.account_id}) may "
        f"{','.join(n.lower() for n in permission.names())} on {target}",
    )
    return ExitCode.OK


def _seats(s: _Session, args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if len(words) == 1:
        pool = s.auth.seats(words[0])
    else:
        try:
            count = int(words[2])
        except ValueError:
            raise InvalidArgument(
                f"seats set: N must be a whole number, not {words[2][:40]!r}"
            ) from None
        pool = s.auth.set_seats(words[1], count)
    s.emit(
        _pool_data(pool),
        f"seats: {pool.used} used of {pool.capacity}, {pool.free} free",
    )
    return ExitCode.OK


def _pool_data(pool: SeatPool) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(pool)
    data["free"] = pool.free
    return data


def _event_text(event: AuditEvent) -> str:
    subject = event.token_id or event.member_id or "-"
    grant = f"  grant: {event.grant}" if event.grant is not None else ""
    return (
        f"#{event.seq} {_when(event.at)} {event.action.value:<13} by {event.actor} "
        f"on {subject}{grant}  {event.hash[:12]}"
    )


def _audit(s: _Session, args: argparse.Namespace) -> int:
    if args.account is not None:
        owner = {"account_id": args.account}
        events = s.auth.account_audit_log(args.account)
        broken = s.auth.check_account_audit_log(args.account)
        label = f"account {args.account}"
    else:
        owner = {"troop_id": args.troop_id}
        events = s.auth.audit_log(args.troop_id)
        broken = s.auth.check_audit_log(args.troop_id)
        label = f"troop {args.troop_id}"
    check = "intact" if broken is None else f"BROKEN at event #{broken}"
    lines = [_event_text(e) for e in events] or ["no events"]
    lines.append(f"chain check: {check}")
    s.emit(
        {
            **owner,
            "events": converter.unstructure(events, list[AuditEvent]),
            "intact": broken is None,
            "first_broken": broken,
        },
        "\n".join(lines),
    )
    if broken is None:
        return ExitCode.OK
    _note(
        f"audit log of {label} is broken at event #{broken}: an event was "
        "edited, dropped or reordered"
    )
    return ExitCode.AUDIT_BROKEN


# -- main ----------------------------------------------------------------------------


def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.command == "demo":  # a temporary file unless --db names one
        if getattr(args, "json", False):
            args.command_parser.error("demo prints text only (no --json)")
        return run_demo(getattr(args, "db", None))
    path: str = getattr(args, "db", None) or env.get(ENV_DB) or _DEFAULT_DB
    if args.command == "serve":
        return _serve(args, path)
    creating = args.command == "account" and args.action == "create"
    if not creating and not os.path.exists(path):
        raise StoreError(
            f"no database file {path!r} (`troopauth account create` makes one)"
        )
    handler: _Handler = args.handler
    command: argparse.ArgumentParser = args.command_parser
    existed = os.path.exists(path)
    try:
        with SQLiteStore(path) as store:
            session = _Session(TroopAuth(store), args, env)
            try:
                return handler(session, args)
            except _NoToken:
                command.error(
                    f"this command needs a token value: set ${ENV_TOKEN}, or pass "
                    "--token-file PATH or --token-stdin"
                )
    except BaseException:
        if not existed:  # a refused first command leaves no database behind
            _remove_database(path)
        raise


def _serve(args: argparse.Namespace, path: str) -> int:
    if getattr(args, "json", False):
        args.command_parser.error("serve prints text only (no --json)")
    if not os.path.exists(path):
        raise StoreError(
            f"no database file {path!r} (`troopauth account create` makes one)"
        )
    try:
        from .http import serve  # noqa: PLC0415 (an optional extra, loaded on use)
    except ImportError as exc:
        raise InvalidArgument(str(exc)) from None
    _note(f"serving {path} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    serve(path, host=args.host, port=args.port)
    return ExitCode.OK


def _remove_database(path: str) -> None:
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        try:
            os.remove(name)
        except FileNotFoundError:
            continue
        except OSError:  # nothing more to do; the error that got us here wins
            continue


def _fail(code: ExitCode, kind: str, message: str, *, as_json: bool) -> int:
    """Report a failure on stderr: one line, or a JSON object with ``--json``."""
    if as_json:
        print(
            json.dumps({"error": kind, "message": message, "exit_code": code.value}),
            file=sys.stderr,
        )
    else:
        print(f"troopauth: {kind}: {message}", file=sys.stderr)
    return code.value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see :data:`EXIT_CODES`).

    ``argv`` defaults to ``sys.argv[1:]``. Usage errors, ``--help`` and
    ``--version`` return their code rather than raising `SystemExit`, so that
    ``main`` can be driven in-process.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in words
    try:
        args = _parser().parse_args(words)
        return int(_run(args, os.environ))
    except SystemExit as exc:  # argparse: --help and --version
        return exc.code if isinstance(exc.code, int) else ExitCode.USAGE.value
    except _UsageError as exc:
        if not as_json:
            print(exc.usage, end="", file=sys.stderr)
        return _fail(ExitCode.USAGE, "UsageError", exc.message, as_json=as_json)
    except TroopAuthError as exc:
        return _fail(_exit_code(exc), type(exc).__name__, str(exc), as_json=as_json)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 (one line, never a traceback)
        message = redact(str(exc))[:200]
        return _fail(
            ExitCode.UNEXPECTED,
            f"unexpected {type(exc).__name__}",
            message,
            as_json=as_json,
        )
