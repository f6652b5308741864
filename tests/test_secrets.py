"""No secret ever leaks: a token's plaintext lives only in ``IssuedToken.value``.

Not in any repr or str, exception, log record, audit event, unstructured
object, stored byte, or a traceback formatted with its locals.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import troopauth.auth
from troopauth import (
    AccessDenied,
    Grant,
    InvalidToken,
    IssuedToken,
    NotFound,
    Permission,
    Scope,
    SeatsExhausted,
    SQLiteStore,
    TroopAuth,
    TroopAuthError,
)
from troopauth.serialization import converter
from troopauth.tokens import PREFIX, RANDOM_LENGTH, digest, new_value

EDIT_DEPLOY = Grant(Permission.EDIT, Scope.parse("key:deploy"))
MANAGE_ALL = Grant(Permission.MANAGE | Permission.EDIT, Scope.whole_troop())


def _random_part(value: str) -> str:
    return value[len(PREFIX) : len(PREFIX) + RANDOM_LENGTH]


def _fragments(value: str) -> list[str]:
    """The value, its random part, and every 8-character piece of the random part."""
    random = _random_part(value)
    return [value, random] + [random[i : i + 8] for i in range(len(random) - 7)]


def leaks(text: str | bytes, values: list[str]) -> list[str]:
    """The fragments of *values* that occur in *text* (empty: no leak)."""
    if isinstance(text, bytes):
        return [f for v in values for f in _fragments(v) if f.encode("ascii") in text]
    return [f for v in values for f in _fragments(v) if f in text]


def _exception_text(exc: BaseException) -> str:
    """str, repr and args of an exception and of everything chained to it."""
    parts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        parts += [str(current), repr(current), repr(current.args)]
        parts += [str(n) for n in getattr(current, "__notes__", ())]
        todo += [current.__cause__, current.__context__]
    return "\n".join(parts)


def _mistyped(value: str) -> str:
    """*value* with its last character changed (its checksum no longer matches)."""
    return value[:-1] + ("1" if value.endswith("0") else "0")


class Story:
    """A whole lifecycle on one facade, remembering every value and every object
    and exception it produced along the way."""

    def __init__(self, auth: TroopAuth, clock: Any) -> None:
        self.auth = auth
        self.clock = clock
        self.values: list[str] = []
        self.issued: list[IssuedToken] = []
        self.objects: list[object] = []
        self.errors: list[BaseException] = []
        self.live: list[IssuedToken] = []

    def keep(self, issued: IssuedToken) -> IssuedToken:
        self.values.append(issued.value)
        self.issued.append(issued)
        return issued

    def fail(self, call: Callable[[], object]) -> None:
        try:
            call()
        except TroopAuthError as exc:
            self.errors.append(exc)
        else:  # pragma: no cover (the story only makes calls that must fail)
            pytest.fail("the call was expected to fail")

    def run(self) -> Story:
        auth, clock = self.auth, self.clock
        acct = auth.create_account(seats=3, audit_log=True)
        first = auth.create_troop(acct.id, "payments")
        second = auth.create_troop(acct.id, "search")
        old_pat = self.keep(auth.issue_personal_token(acct.id))
        pat = self.keep(auth.issue_personal_token(acct.id))
        owner = auth.authenticate(pat.value)
        ci = self.keep(auth.issue_token(owner, first.id, EDIT_DEPLOY, name="ci"))
        lead = self.keep(
            auth.issue_token(
                owner,
                first.id,
                MANAGE_ALL,
                name="lead",
                expires_at=clock.now + timedelta(hours=1),
            )
        )
        doomed = self.keep(auth.issue_token(owner, second.id, EDIT_DEPLOY))
        lead_actor = auth.authenticate(lead.value)
        ci_actor = auth.verify(ci.value, first.id, Permission.EDIT, "deploy")
        self.objects += [acct, first, second, owner, lead_actor, ci_actor]
        self.fail(lambda: auth.issue_token(owner, first.id, EDIT_DEPLOY))
        self.objects.append(auth.attach(owner, ci.token_id, second.id, EDIT_DEPLOY))
        self.objects.append(auth.detach(owner, ci.token_id, second.id))
        rotated = self.keep(auth.rotate(lead_actor, ci.token_id))
        auth.revoke(owner, doomed.token_id)
        auth.add_member(owner, first.id, "alice", EDIT_DEPLOY)
        alice = auth.member(acct.id, "alice")
        self.objects.append(alice)
        auth.remove_member(owner, first.id, "alice")
        # Refused calls and failed verifies, with every kind of dead value.
        self.fail(lambda: auth.issue_token(ci_actor, first.id, EDIT_DEPLOY))
        self.fail(lambda: auth.rotate(ci_actor, ci.token_id))
        self.fail(lambda: auth.issue_token(lead_actor, first.id, Grant.full()))
        self.fail(lambda: auth.authenticate(old_pat.value))
        self.fail(lambda: auth.verify(ci.value, first.id, Permission.EDIT, "deploy"))
        self.fail(lambda: auth.verify(doomed.value, second.id, Permission.EDIT))
        self.fail(lambda: auth.verify(rotated.value, second.id, Permission.EDIT))
        self.fail(lambda: auth.verify(rotated.value, first.id, Permission.VIEW))
        self.fail(lambda: auth.verify(rotated.value, first.id, Permission.EDIT, "x"))
        self.fail(
            lambda: auth.verify(_mistyped(rotated.value), first.id, Permission.EDIT)
        )
        self.fail(lambda: auth.verify(rotated.value[:-1], first.id, Permission.EDIT))
        self.fail(lambda: auth.authorize(ci_actor, first.id, Permission.EDIT, "deploy"))
        clock.advance(hours=2)
        self.fail(lambda: auth.authenticate(lead.value))
        self.fail(lambda: auth.verify(lead.value, first.id, Permission.MANAGE))
        self.fail(
            lambda: auth.attach(lead_actor, rotated.token_id, second.id, EDIT_DEPLOY)
        )
        # What can be read afterwards.
        for troop in (first, second):
            self.objects += auth.tokens(troop.id)
            self.objects += auth.audit_log(troop.id)
        self.objects += auth.account_audit_log(acct.id)
        self.objects.append(auth.seats(acct.id))
        self.objects += [auth.store.lookup(digest(v)) for v in self.values]
        self.live = [pat, rotated]
        return self


@pytest.fixture
def story(auth: TroopAuth, clock: Any) -> Story:
    """The whole lifecycle, run on each embedded store."""
    return Story(auth, clock).run()


class TestScanner:
    """The leak scanner itself finds what it looks for (so the tests can fail)."""

    def test_finds_each_fragment(self) -> None:
        """The value, its random part and an 8-character piece are each found."""
        value = new_value()
        random = _random_part(value)
        assert leaks(f"x{value}x", [value])
        assert leaks(f"x{random}x", [value])
        assert leaks(f"x{random[11:19]}x", [value])
        assert leaks(f"x{random[22:30]}x".encode(), [value])
        assert not leaks(random[:7] + "|" + random[7:14], [value])


class TestRepr:
    """repr() and str() of every public object leave the value out."""

    def test_issued_token(self) -> None:
        """IssuedToken shows its id and hint but redacts its value."""
        value = new_value()
        issued = IssuedToken("tok_1", value, "cpt_pat_ab…yz")
        for text in (repr(issued), str(issued), f"{issued}", f"{issued!r}"):
            assert leaks(text, [value]) == []
            assert "tok_1" in text
            assert "redacted" in text
        assert issued.value == value

    def test_pretty_printers(self) -> None:
        """Hypothesis's pretty printer (what a failing property prints) and
        pprint show the redacted form too, alone and in containers."""
        import pprint

        from hypothesis.vendor.pretty import pretty

        value = new_value()
        issued = IssuedToken("tok_1", value)
        for text in (pretty(issued), pretty({"t": [issued]}), pprint.pformat(issued)):
            assert leaks(text, [value]) == []
            assert "redacted" in text

    def test_issued_token_in_a_container(self) -> None:
        """A list or dict holding an IssuedToken does not show the value either."""
        value = new_value()
        issued = IssuedToken("tok_1", value)
        assert leaks(repr([issued, {"t": issued}, (issued,)]), [value]) == []

    def test_every_object_of_a_lifecycle(self, story: Story) -> None:
        """TokenInfo, Principal, AuditEvent, records... of a lifecycle: no value."""
        kinds = {type(o).__name__ for o in story.objects}
        assert {"TokenInfo", "Principal", "AuditEvent", "SeatPool"} <= kinds
        for obj in [*story.objects, *story.issued]:
            assert leaks(repr(obj), story.values) == [], obj
            assert leaks(str(obj), story.values) == [], obj


class TestExceptions:
    """No exception carries the value: str, repr, args or anything chained."""

    def test_lifecycle_errors(self, story: Story) -> None:
        """Every refused call and failed verify of a lifecycle is clean."""
        kinds = {type(e) for e in story.errors}
        assert {InvalidToken, AccessDenied, SeatsExhausted} <= kinds
        for exc in story.errors:
            assert leaks(_exception_text(exc), story.values) == [], repr(exc)

    @pytest.mark.parametrize(
        "call",
        [
            "verify_revoked",
            "verify_wrong_troop",
            "verify_value_as_troop",
            "verify_value_as_key",
            "verify_mistyped",
            "verify_bad_permission",
            "authenticate_revoked",
            "authenticate_mistyped",
            "authorize_value_as_troop",
        ],
    )
    def test_verify_and_authenticate(self, auth: TroopAuth, call: str) -> None:
        """verify, authenticate and authorize never echo a value they were given."""
        acct = auth.create_account(seats=2)
        troop = auth.create_troop(acct.id, "payments")
        owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
        live = auth.issue_token(owner, troop.id, EDIT_DEPLOY).value
        dead = auth.issue_token(owner, troop.id, EDIT_DEPLOY)
        auth.revoke(owner, dead.token_id)
        calls: dict[str, Callable[[], object]] = {
            "verify_revoked": lambda: auth.verify(
                dead.value, troop.id, Permission.EDIT
            ),
            "verify_wrong_troop": lambda: auth.verify(live, "troop_x", Permission.EDIT),
            "verify_value_as_troop": lambda: auth.verify(live, live, Permission.EDIT),
            "verify_value_as_key": lambda: auth.verify(
                live, troop.id, Permission.EDIT, live
            ),
            "verify_mistyped": lambda: auth.verify(
                live[:-1] + "!", troop.id, Permission.EDIT
            ),
            "verify_bad_permission": lambda: auth.verify(live, troop.id, live),  # type: ignore[arg-type]
            "authenticate_revoked": lambda: auth.authenticate(dead.value),
            "authenticate_mistyped": lambda: auth.authenticate(live[1:]),
            "authorize_value_as_troop": lambda: auth.authorize(
                owner, live, Permission.EDIT
            ),
        }
        with pytest.raises(TroopAuthError) as info:
            calls[call]()
        assert leaks(_exception_text(info.value), [live, dead.value]) == []

    @pytest.mark.parametrize(
        "call",
        [
            "revoke",
            "rotate",
            "attach",
            "detach",
            "issue_token",
            "add_member_troop",
            "tokens",
            "seats",
            "audit_log",
            "check_audit_log",
            "account_audit_log",
            "create_troop",
            "issue_personal_token",
            "member",
        ],
    )
    def test_value_passed_as_an_id(self, auth: TroopAuth, call: str) -> None:
        """A management or read call given a token's value where an id belongs
        (an easy mistake) raises without echoing the value."""
        acct = auth.create_account(seats=2)
        troop = auth.create_troop(acct.id, "payments")
        owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
        v = auth.issue_token(owner, troop.id, EDIT_DEPLOY).value
        calls: dict[str, Callable[[], object]] = {
            "revoke": lambda: auth.revoke(owner, v),
            "rotate": lambda: auth.rotate(owner, v),
            "attach": lambda: auth.attach(owner, v, troop.id, EDIT_DEPLOY),
            "detach": lambda: auth.detach(owner, v, troop.id),
            "issue_token": lambda: auth.issue_token(owner, v, EDIT_DEPLOY),
            "add_member_troop": lambda: auth.add_member(owner, v, "alice", EDIT_DEPLOY),
            "tokens": lambda: auth.tokens(v),
            "seats": lambda: auth.seats(v),
            "audit_log": lambda: auth.audit_log(v),
            "check_audit_log": lambda: auth.check_audit_log(v),
            "account_audit_log": lambda: auth.account_audit_log(v),
            "create_troop": lambda: auth.create_troop(v, "x"),
            "issue_personal_token": lambda: auth.issue_personal_token(v),
            "member": lambda: auth.member(acct.id, v),
        }
        with pytest.raises((NotFound, AccessDenied)) as info:
            calls[call]()
        assert leaks(_exception_text(info.value), [v]) == []

    @pytest.mark.parametrize(
        "parse",
        [
            Scope.parse,
            lambda v: Scope.parse(f"key:{v} x"),
            lambda v: Scope.parse(f"key:{v}, key:a b"),
            Permission.parse,
            Grant.parse,
            lambda v: Grant.parse("view", v),
        ],
        ids=["scope", "scope_key", "scope_list", "permission", "grant", "grant_scope"],
    )
    def test_value_pasted_into_a_parser(self, parse: Callable[[str], object]) -> None:
        """A value pasted where a scope or permission text belongs is not echoed."""
        value = new_value()
        with pytest.raises(TroopAuthError) as info:
            parse(value)
        assert leaks(_exception_text(info.value), [value]) == []


class TestLogs:
    """No log record, at any level, holds a value."""

    def test_lifecycle_at_debug(
        self, auth: TroopAuth, clock: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A whole lifecycle with 'troopauth' at DEBUG logs no value."""
        caplog.set_level(logging.DEBUG, logger="troopauth")
        story = Story(auth, clock).run()
        records = [r for r in caplog.records if r.name.startswith("troopauth")]
        assert records, "the lifecycle logged nothing: the scan would prove nothing"
        assert any(story.issued[2].token_id in r.getMessage() for r in records)
        for record in records:
            texts = [
                record.getMessage(),
                str(record.msg),
                repr(record.args),
                record.exc_text or "",
                logging.Formatter().format(record),
            ]
            for text in texts:
                assert leaks(text, story.values) == [], text
        assert leaks(caplog.text, story.values) == []


def _dump(obj: object) -> str:
    return json.dumps(converter.unstructure(obj), default=repr)


class TestUnstructure:
    """converter.unstructure gives the value only for IssuedToken."""

    def test_issued_token_holds_it(self) -> None:
        """An IssuedToken unstructures with its value (it is there to hand over)."""
        issued = IssuedToken("tok_1", new_value())
        assert leaks(_dump(issued), [issued.value])

    def test_nothing_else_holds_it(self, story: Story) -> None:
        """Every other object of a lifecycle unstructures without any value."""
        dumped = 0
        for obj in story.objects:
            if obj is None:
                continue
            assert leaks(_dump(obj), story.values) == [], obj
            dumped += 1
        assert dumped >= 20
        assert leaks(_dump(story.objects), story.values) == []


def _db_files(path: Path) -> Iterator[Path]:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            yield candidate


def _db_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in _db_files(path))


class TestDatabaseFiles:
    """The SQLite files hold digests and hints, never a value or a piece of one."""

    def test_open_files_after_lifecycle(self, tmp_path: Path, clock: Any) -> None:
        """The .db, -wal and -shm files of an open store hold no value fragment."""
        path = tmp_path / "secrets.db"
        with SQLiteStore(path) as store:
            story = Story(TroopAuth(store, clock=clock), clock).run()
            files = [f.name for f in _db_files(path)]
            assert "secrets.db-wal" in files
            data = _db_bytes(path)
        assert leaks(data, story.values) == []
        for issued in story.live:
            assert digest(issued.value) in data

    def test_closed_file_after_lifecycle(self, tmp_path: Path, clock: Any) -> None:
        """After close (a checkpoint into the main file), no value fragment either."""
        path = tmp_path / "secrets.db"
        with SQLiteStore(path) as store:
            story = Story(TroopAuth(store, clock=clock), clock).run()
        data = _db_bytes(path)
        assert leaks(data, story.values) == []
        for issued in story.live:
            assert digest(issued.value) in data


class _Recorder:
    """Wraps ``new_value`` to learn the values a failed call made and dropped."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def __call__(self) -> str:
        value = new_value()
        self.values.append(value)
        return value


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    """Every value the facade generates from now on."""
    rec = _Recorder()
    monkeypatch.setattr(troopauth.auth, "new_value", rec)
    return rec


def _formatted_with_locals(exc: BaseException) -> str:
    return "".join(
        traceback.TracebackException(
            type(exc), exc, exc.__traceback__, capture_locals=True
        ).format()
    )


class TestTracebackLocals:
    """A failed call's traceback, formatted with locals, holds no value."""

    @pytest.mark.parametrize(
        "call", ["seats_exhausted", "escalation", "rotate_denied", "pat_no_account"]
    )
    def test_failed_call(self, auth: TroopAuth, recorder: _Recorder, call: str) -> None:
        """The value made inside the failed call stays inside the redacting
        IssuedToken: capture_locals shows '<redacted>', not the value."""
        acct = auth.create_account(seats=1)
        troop = auth.create_troop(acct.id, "payments")
        owner = auth.authenticate(auth.issue_personal_token(acct.id).value)
        ci = auth.issue_token(owner, troop.id, EDIT_DEPLOY)
        ci_actor = auth.authenticate(ci.value)
        calls: dict[str, Callable[[], object]] = {
            "seats_exhausted": lambda: auth.issue_token(owner, troop.id, EDIT_DEPLOY),
            "escalation": lambda: auth.issue_token(ci_actor, troop.id, Grant.full()),
            "rotate_denied": lambda: auth.rotate(ci_actor, ci.token_id),
            "pat_no_account": lambda: auth.issue_personal_token("acct_missing"),
        }
        made = len(recorder.values)
        with pytest.raises(TroopAuthError) as info:
            calls[call]()
        # Formatted first: this test's own frame is in the traceback too, and
        # must not hold the value yet.
        formatted = _formatted_with_locals(info.value)
        assert len(recorder.values) == made + 1
        value = recorder.values[-1]
        assert "<redacted>" in formatted  # the IssuedToken local was captured
        assert leaks(formatted, [value]) == []

    def test_store_error_traceback(
        self, tmp_path: Path, clock: Any, recorder: _Recorder
    ) -> None:
        """A call that fails in the store (closed) keeps the new value hidden too."""
        store = SQLiteStore(tmp_path / "closed.db")
        auth = TroopAuth(store, clock=clock)
        acct = auth.create_account(seats=1)
        store.close()
        with pytest.raises(TroopAuthError) as info:
            auth.issue_personal_token(acct.id)
        formatted = _formatted_with_locals(info.value)
        value = recorder.values[-1]
        assert "<redacted>" in formatted
        assert leaks(formatted, [value]) == []
