"""``troopauth demo``: the whole story of the design, end to end, on SQLite.

Every line it prints comes from a real call; nothing is scripted text about
results.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from typing import TextIO

from .auth import TroopAuth
from .errors import TroopAuthError
from .grant import Grant
from .models import Principal
from .permission import Permission
from .scope import Scope
from .sqlite import SQLiteStore

__all__ = ["run_demo"]


def _outcome(call: Callable[[], object]) -> str:
    """What a call answered: its result, or the error class and message."""
    try:
        result = call()
    except TroopAuthError as exc:
        return f"{type(exc).__name__}: {exc}"
    if isinstance(result, Principal):
        return f"allowed ({result.kind.value} token {result.token_id})"
    return "allowed"


def run_demo(db: str | None = None, out: TextIO | None = None) -> int:
    """Run the story on *db* (a temporary file when ``None``); return 0."""
    write = (out.write if out is not None else None) or _stdout_write

    def say(text: str = "") -> None:
        write(text + "\n")

    with ExitStack() as stack:
        if db is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            db = os.path.join(folder, "troopauth.db")
        store = stack.enter_context(SQLiteStore(db))
        say(f"troopauth demo on SQLite file {db}")
        say()
        _story(TroopAuth(store), say)
        say()
        say("done: every step above was a real call on the SQLite store.")
    return 0


def _story(auth: TroopAuth, say: Callable[[str], None]) -> None:
    """Each step of DESIGN.md's story, printing what the calls answered."""
    acct = auth.create_account(seats=2, audit_log=True)
    say(f"1. created account {acct.id} with 2 seats and the audit log on")
    payments = auth.create_troop(acct.id, "payments")
    infra = auth.create_troop(acct.id, "infra")
    say(f"2. created troops 'payments' ({payments.id}) and 'infra' ({infra.id})")

    pat = auth.issue_personal_token(acct.id)
    owner = auth.authenticate(pat.value)
    say(f"3. issued the personal access token {pat.hint} (shown once, never stored)")

    grant = Grant(Permission.EDIT, Scope.parse("key:deploy"))
    ci = auth.issue_token(owner, payments.id, grant, name="ci")
    say(f"4. issued troop token 'ci' {ci.hint} in payments with grant: {grant}")
    say(f"   value (shown once): {ci.value}")

    def verify(value: str, key: str | None) -> str:
        return _outcome(
            lambda: auth.verify(value, payments.id, Permission.EDIT, key=key)
        )

    say(f"5. verify EDIT on key 'deploy'  -> {verify(ci.value, 'deploy')}")
    say(f"   verify EDIT on key 'billing' -> {verify(ci.value, 'billing')}")
    say(f"   verify EDIT troop-level      -> {verify(ci.value, None)}")

    auth.attach(owner, ci.token_id, infra.id, Grant.parse("view", "key:prod/*"))
    pool = auth.seats(acct.id)
    say(
        "6. attached 'ci' to infra with VIEW on key:prod/*; seats used "
        f"{pool.used} of {pool.capacity} (one token, one seat)"
    )

    again = auth.rotate(owner, ci.token_id)
    say(f"7. rotated 'ci': same id {again.token_id}, new value {again.hint}")
    say(f"   old value on 'deploy' -> {verify(ci.value, 'deploy')}")
    say(f"   new value on 'deploy' -> {verify(again.value, 'deploy')}")

    listing = ", ".join(f"{t.name} {t.hint}" for t in auth.tokens(payments.id))
    say(f"8. tokens attached to payments: {listing}")

    auth.revoke(owner, ci.token_id)
    pool = auth.seats(acct.id)
    say(f"9. revoked 'ci' -> verify says {verify(again.value, 'deploy')}")
    say(f"   seats used {pool.used} of {pool.capacity}, {pool.free} free")

    auth.add_member(owner, payments.id, "alice", Grant.parse("view", "*"))
    alice = auth.member(acct.id, "alice")
    say(
        "10. member alice (VIEW on payments): authorize VIEW -> "
        + _outcome(lambda: auth.authorize(alice, payments.id, Permission.VIEW))
        + "; authorize MANAGE -> "
        + _outcome(lambda: auth.authorize(alice, payments.id, Permission.MANAGE))
    )

    say("11. audit trail of payments (hash-chained):")
    _print_audit(auth, payments.id, say)


def _print_audit(auth: TroopAuth, troop_id: str, say: Callable[[str], None]) -> None:
    for event in auth.audit_log(troop_id):
        who = event.token_id or event.member_id
        say(
            f"    #{event.seq} {event.at:%H:%M:%S} {event.action.value:<14} "
            f"by {event.actor} on {who} grant: {event.grant}  {event.hash[:12]}…"
        )
    broken = auth.check_audit_log(troop_id)
    say(f"    chain check: {'intact' if broken is None else f'broken at #{broken}'}")


def _stdout_write(text: str) -> int:
    print(text, end="")
    return len(text)
