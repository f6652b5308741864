"""Fuzzing every input that crosses a trust boundary.

A token value, a troop id, a permission and a key reach ``verify`` and
``authenticate`` straight from a request; scope, permission and grant text and
JSON come from configuration and files. For all of them, whatever comes in,
only a ``TroopAuthError`` may come out, and for a value that is not a live
token exactly one opaque ``InvalidToken`` that never echoes it.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

from troopauth import (
    AccessDenied,
    Grant,
    InvalidArgument,
    InvalidToken,
    Kind,
    MemoryStore,
    Permission,
    Scope,
    SQLiteStore,
    TroopAuth,
)
from troopauth.serialization import converter
from troopauth.tokens import PREFIX, checksum

from .conftest import FrozenClock
from .strategies import grants, non_text

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
FLAGS = (Permission.VIEW, Permission.USE, Permission.EDIT, Permission.MANAGE)


# -- the world: one account with live and dead values, on each store ---------


@dataclass(frozen=True)
class World:
    """Live values with their grant in ``troop``, and values that are dead."""

    auth: TroopAuth
    troop: str
    other_troop: str
    foreign_troop: str
    live: dict[str, Grant]
    dead: tuple[str, ...]


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Every kind of value, live and dead, on each store (read-only tests)."""
    if request.param == "memory":
        store: MemoryStore | SQLiteStore = MemoryStore()
    else:
        store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "troopauth.db")
    with store:
        clock = FrozenClock()
        yield _build(TroopAuth(store, clock=clock), clock)


def _build(auth: TroopAuth, clock: FrozenClock) -> World:
    acct = auth.create_account(seats=10, audit_log=True).id
    troop = auth.create_troop(acct, "payments").id
    other_troop = auth.create_troop(acct, "other").id
    foreign_troop = auth.create_troop(auth.create_account(seats=1).id, "theirs").id
    old_pat = auth.issue_personal_token(acct).value
    pat = auth.issue_personal_token(acct)
    owner = auth.authenticate(pat.value)
    scoped = Grant.parse("view,edit", "key:deploy,key:prod/*")
    whole = Grant.parse("view,use", "*")
    live = {
        pat.value: Grant.full(),
        auth.issue_token(owner, troop, scoped).value: scoped,
        auth.issue_token(owner, troop, whole).value: whole,
    }
    revoked = auth.issue_token(owner, troop, whole)
    auth.revoke(owner, revoked.token_id)
    rotated = auth.issue_token(owner, troop, scoped)
    live[auth.rotate(owner, rotated.token_id).value] = scoped
    soon = clock.now + timedelta(seconds=60)
    expired = auth.issue_token(owner, troop, whole, expires_at=soon).value
    clock.advance(seconds=120)
    dead = (old_pat, revoked.value, rotated.value, expired)
    return World(auth, troop, other_troop, foreign_troop, live, dead)


# -- helpers -------------------------------------------------------------------


def assert_invalid_token(call: Callable[[], object], value: object) -> None:
    """*call* raises InvalidToken, 'invalid token', and nothing a traceback
    of it would show holds *value*."""
    with pytest.raises(InvalidToken) as info:
        call()
    exc = info.value
    assert exc.args == ("invalid token",)
    assert str(exc) == "invalid token"
    shown = repr(value) if not isinstance(value, str) else value
    if shown in "InvalidToken('invalid token')":
        return  # too short to tell an echo from the fixed message
    seen: BaseException | None = exc
    while seen is not None:
        assert shown not in str(seen)
        assert shown not in repr(seen)
        # What a traceback shows: the cause, or the context unless suppressed.
        seen = seen.__cause__ or (
            None if seen.__suppress_context__ else seen.__context__
        )


def covered(grant: Grant, key: str | None) -> bool:
    """The design's rule, written out: whole troop covers None and every valid
    name; otherwise exact names and prefixes; invalid names never."""
    if key is None:
        return grant.scope.whole
    valid = 0 < len(key) <= 256 and all(
        ch.isprintable() and not ch.isspace() and ch not in ",*" for ch in key
    )
    return valid and (
        grant.scope.whole
        or key in grant.scope.keys
        or any(key.startswith(p) for p in grant.scope.prefixes)
    )


# -- strategies ------------------------------------------------------------------

#: Characters that look like ASCII letters and digits but are not
#: (Cyrillic and Greek letters, fullwidth and Arabic-Indic digits, dotless i,
#: long s), escaped so that the source itself stays unambiguous.
LOOKALIKES = (
    "\u0430\u0435\u043e\u0440\u0441\u0445\u0410\u0412\u0415\u041a"
    "\u041c\u041d\u041e\u0420\u0421\u0422\u0425\uff10\uff11\uff21"
    "\uff41\u039f\u03bf\u0391\u0660\u0661\u0131\u017f"
)
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ANY_CHAR = st.characters(codec=None) | SURROGATES | st.sampled_from("\x00\n\r\t ")


@st.composite
def mutated(draw: st.DrawFn, value: str) -> str:
    """*value* with one near-miss change."""
    kind = draw(
        st.sampled_from(
            [
                "change",
                "truncate",
                "extend",
                "prefix",
                "lookalike",
                "surrogate",
                "nul",
                "pad",
                "case",
            ]
        )
    )
    pos = draw(st.integers(0, len(value) - 1))
    if kind == "change":
        new = draw(
            (st.sampled_from(BASE62) | ANY_CHAR).filter(lambda c: c != value[pos])
        )
        return value[:pos] + new + value[pos + 1 :]
    if kind == "truncate":
        return value[:pos]
    if kind == "extend":
        return value + draw(st.text(min_size=1, max_size=4))
    if kind == "prefix":
        wrong = draw(
            st.sampled_from(
                ["cpt_PAT_", "CPT_PAT_", "cpt-pat_", "ghp_pat_", "cpt_pa_t"]
            )
        )
        return wrong + value[len(PREFIX) :]
    if kind == "lookalike":
        return value[:pos] + draw(st.sampled_from(LOOKALIKES)) + value[pos + 1 :]
    if kind == "surrogate":
        return value[:pos] + draw(SURROGATES) + value[pos + 1 :]
    if kind == "nul":
        return value[:pos] + "\x00" + value[pos + 1 :]
    if kind == "pad":
        return draw(st.sampled_from([" ", "\t", "\n", "\ufeff", ""])) + value + "\n"
    flipped = value.swapcase()
    assume(flipped != value)
    return flipped


@st.composite
def near_misses(draw: st.DrawFn, world: World) -> str:
    """A live or dead value, changed a little; or a dead value as it was."""
    value = draw(st.sampled_from(sorted(world.live) + list(world.dead)))
    if value in world.dead and draw(st.booleans()):
        return value
    changed = draw(mutated(value))
    assume(changed not in world.live)
    return changed


@st.composite
def well_formed_unknown(draw: st.DrawFn) -> str:
    """The right shape, with a right (or wrong) checksum, but no such token."""
    body = draw(st.text(alphabet=BASE62, min_size=30, max_size=30))
    tail = checksum(body)
    if draw(st.booleans()):
        tail = draw(st.text(alphabet=BASE62, min_size=6, max_size=6))
    return PREFIX + body + tail


token_shaped_text = st.one_of(
    st.text(),
    st.text(min_size=40, max_size=48),
    st.builds(lambda s: PREFIX + s, st.text(min_size=30, max_size=40)),
    well_formed_unknown(),
)

json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=10,
)


def shapes_of(value: str) -> list[object]:
    """A real value in every non-text shape a careless caller might pass."""
    raw = value.encode()
    return [raw, bytearray(raw), memoryview(raw), list(value), tuple(value), [value]]


#: Text shaped like scope, permission and grant text, with the edge cases mixed in.
SCOPE_PIECES = ["*", "key:", "key:a", "key:a*", "key:*", "**", "a", "key:a,b", "Key:a"]
scope_like = st.lists(
    st.sampled_from(SCOPE_PIECES) | st.text(max_size=6), min_size=1, max_size=4
).map(",".join)
PERMISSION_PIECES = ["view", "USE", "Edit", "manage", "", " ", "|", ",", "none", "all"]
permission_like = st.lists(
    st.sampled_from(PERMISSION_PIECES) | st.text(max_size=6), min_size=1, max_size=4
).map(",".join)


# -- verify and authenticate: the token value ---------------------------------


class TestVerifyValue:
    """verify(value, ...): anything that is not a live value is InvalidToken."""

    @given(data=st.data())
    def test_arbitrary_text(self, world, data):
        """Arbitrary and token-shaped text: InvalidToken, never echoing it."""
        value = data.draw(token_shaped_text)
        assume(value not in world.live)
        assert_invalid_token(
            lambda: world.auth.verify(value, world.troop, Permission.VIEW), value
        )

    @given(data=st.data())
    def test_near_misses(self, world, data):
        """A real value changed by one character, cut, extended, re-prefixed,
        with lookalikes, surrogates or NUL, or dead: InvalidToken."""
        value = data.draw(near_misses(world))
        assert_invalid_token(
            lambda: world.auth.verify(value, world.troop, Permission.VIEW, "deploy"),
            value,
        )

    @given(obj=non_text)
    def test_arbitrary_objects(self, world, obj):
        """None, bytes, numbers, lists, dicts: InvalidToken."""
        assert_invalid_token(
            lambda: world.auth.verify(obj, world.troop, Permission.VIEW), obj
        )

    def test_live_values_in_other_shapes(self, world):
        """A live value as bytes, a list or a tuple is no token: InvalidToken."""
        for value in world.live:
            for shape in shapes_of(value):
                assert_invalid_token(
                    partial(world.auth.verify, shape, world.troop, Permission.VIEW),
                    shape,
                )

    @given(data=st.data(), troop=st.text() | non_text, perm=non_text, key=non_text)
    def test_bad_value_wins_over_bad_arguments(self, world, data, troop, perm, key):
        """A dead or garbage value with garbage other arguments: InvalidToken or
        InvalidArgument, nothing else."""
        value = data.draw(near_misses(world) | st.text() | non_text)
        with pytest.raises((InvalidToken, InvalidArgument)) as info:
            world.auth.verify(value, troop, perm, key)
        shown = value if isinstance(value, str) else repr(value)
        if len(shown) > 20:
            assert shown not in str(info.value)


class TestAuthenticateValue:
    """authenticate(value): the same answers as verify for values."""

    @given(data=st.data())
    def test_arbitrary_text(self, world, data):
        """Arbitrary and token-shaped text: InvalidToken, never echoing it."""
        value = data.draw(token_shaped_text)
        assume(value not in world.live)
        assert_invalid_token(lambda: world.auth.authenticate(value), value)

    @given(data=st.data())
    def test_near_misses(self, world, data):
        """Near misses of real values, and dead values: InvalidToken."""
        value = data.draw(near_misses(world))
        assert_invalid_token(lambda: world.auth.authenticate(value), value)

    @given(obj=non_text)
    def test_arbitrary_objects(self, world, obj):
        """None, bytes, numbers, lists, dicts: InvalidToken."""
        assert_invalid_token(lambda: world.auth.authenticate(obj), obj)

    def test_live_values_in_other_shapes(self, world):
        """A live value as bytes, a list or a tuple is no token: InvalidToken."""
        for value in world.live:
            for shape in shapes_of(value):
                assert_invalid_token(partial(world.auth.authenticate, shape), shape)


# -- verify: the other arguments, on a live value ---------------------------------


class TestVerifyArguments:
    """verify on a live value with arbitrary troop ids, permissions and keys."""

    @given(
        data=st.data(),
        key=st.text() | st.text(alphabet="deploy/prod*, \t", max_size=12),
    )
    def test_arbitrary_key_text(self, world, data, key):
        """Any key text: returns exactly when the grant covers that valid name,
        else AccessDenied (invalid names are denied, not errors)."""
        value = data.draw(st.sampled_from(sorted(world.live)))
        grant = world.live[value]
        prefix = data.draw(st.sampled_from(["", "prod/", "deploy"]))
        key = prefix + key
        perm = data.draw(st.sampled_from(FLAGS))
        allowed = perm in grant.permission and covered(grant, key)
        event("allowed" if allowed else "denied")
        if allowed:
            assert world.auth.verify(value, world.troop, perm, key).account_id
        else:
            with pytest.raises(AccessDenied):
                world.auth.verify(value, world.troop, perm, key)

    @given(data=st.data(), key=non_text)
    def test_arbitrary_key_objects(self, world, data, key):
        """A key that is not text (nor None): AccessDenied or InvalidArgument."""
        assume(key is not None)
        value = data.draw(st.sampled_from(sorted(world.live)))
        with pytest.raises((AccessDenied, InvalidArgument)):
            world.auth.verify(value, world.troop, Permission.VIEW, key)

    @given(data=st.data(), troop=st.text() | non_text)
    def test_arbitrary_troop_ids(self, world, data, troop):
        """A troop id the token is not attached to: AccessDenied (or
        InvalidArgument for an unusable object)."""
        value = data.draw(st.sampled_from(sorted(world.live)))
        assume(troop not in (world.troop, world.other_troop))
        with pytest.raises((AccessDenied, InvalidArgument)):
            world.auth.verify(value, troop, Permission.VIEW)

    def test_foreign_troop(self, world):
        """Another account's troop: AccessDenied, for every live value."""
        for value in world.live:
            with pytest.raises(AccessDenied):
                world.auth.verify(value, world.foreign_troop, Permission.VIEW)

    @given(data=st.data(), perm=non_text | st.integers(0, 15) | st.text(max_size=6))
    def test_arbitrary_permissions(self, world, data, perm):
        """A permission that is no Permission: AccessDenied or InvalidArgument."""
        value = data.draw(st.sampled_from(sorted(world.live)))
        assume(not isinstance(perm, Permission))
        with pytest.raises((AccessDenied, InvalidArgument)):
            world.auth.verify(value, world.troop, perm, "deploy")


# -- text parsers -----------------------------------------------------------------


def parse_or_invalid(call: Callable[[], Any]) -> Any:
    """The parsed value, or ``None`` if *call* raised InvalidArgument."""
    try:
        return call()
    except InvalidArgument:
        return None


class TestScopeParse:
    """Scope.parse: a Scope or InvalidArgument, whatever the text."""

    @given(text=st.text() | scope_like)
    def test_arbitrary_text(self, text):
        """Any text: a Scope that round-trips through str(), or InvalidArgument."""
        scope = parse_or_invalid(lambda: Scope.parse(text))
        if scope is not None:
            assert isinstance(scope, Scope)
            assert Scope.parse(str(scope)) == scope

    @given(obj=non_text | json_ish)
    def test_arbitrary_objects(self, obj):
        """Anything but text: InvalidArgument."""
        assume(not isinstance(obj, str))
        with pytest.raises(InvalidArgument):
            Scope.parse(obj)

    @given(
        keys=st.lists(st.text(max_size=6) | non_text, max_size=3),
        prefixes=st.lists(st.text(max_size=6) | non_text, max_size=3),
    )
    def test_of_arbitrary_names(self, keys, prefixes):
        """Scope.of with arbitrary names: a Scope or InvalidArgument."""
        try:
            hash_ok = all(hash(x) is not None for x in (*keys, *prefixes))
        except TypeError:
            hash_ok = False
        assume(hash_ok)
        scope = parse_or_invalid(lambda: Scope.of(keys, prefixes))
        assert scope is None or isinstance(scope, Scope)


class TestPermissionParse:
    """Permission.parse: a Permission or InvalidArgument, whatever the text."""

    @given(text=st.text() | permission_like)
    def test_arbitrary_text(self, text):
        """Any text: a non-empty Permission, or InvalidArgument."""
        perm = parse_or_invalid(lambda: Permission.parse(text))
        assert perm is None or (isinstance(perm, Permission) and perm)

    @given(text=st.text() | permission_like)
    def test_only_ascii_names(self, text):
        """What parses spells only the four names (in any ASCII case): no
        lookalike spelled with a dotless i (U+0131) or a long s (U+017F)."""
        perm = parse_or_invalid(lambda: Permission.parse(text))
        if perm is not None:
            names = {"view", "use", "edit", "manage"}
            parts = [p.strip() for p in text.replace("|", ",").split(",")]
            assert all(p.lower() in names and p.isascii() for p in parts if p)

    @pytest.mark.parametrize("text", ["v\u0131ew", "u\u017fe", "manaGE", "VIEW"])
    def test_lookalike_examples(self, text):
        """Dotless i and long s are not 'i' and 's': only ASCII spellings parse."""
        if text.isascii():
            assert Permission.parse(text)
        else:
            with pytest.raises(InvalidArgument):
                Permission.parse(text)

    @given(obj=non_text | json_ish)
    def test_arbitrary_objects(self, obj):
        """Anything but text: InvalidArgument."""
        assume(not isinstance(obj, str))
        with pytest.raises(InvalidArgument):
            Permission.parse(obj)


class TestGrantParse:
    """Grant.parse and Grant(): a Grant or InvalidArgument."""

    @given(perm=st.text() | permission_like, scope=st.text() | scope_like)
    def test_arbitrary_text(self, perm, scope):
        """Any permission and scope text: a Grant, or InvalidArgument."""
        grant = parse_or_invalid(lambda: Grant.parse(perm, scope))
        assert grant is None or isinstance(grant, Grant)

    @given(perm=non_text | st.text(), scope=non_text | st.text())
    def test_arbitrary_objects(self, perm, scope):
        """Objects where text belongs: InvalidArgument unless both are text."""
        assume(not (isinstance(perm, str) and isinstance(scope, str)))
        with pytest.raises(InvalidArgument):
            Grant.parse(perm, scope)

    @given(perm=non_text | st.integers(0, 15), scope=non_text | st.text())
    def test_constructor_checks_types(self, perm, scope):
        """Grant(permission, scope) with other types: InvalidArgument."""
        with pytest.raises(InvalidArgument):
            Grant(perm, scope)


# -- JSON through the converter ------------------------------------------------------


grant_like = st.fixed_dictionaries(
    {},
    optional={
        "permission": st.lists(
            st.sampled_from(["VIEW", "use", "Edit", "MANAGE", "", "x"]) | st.text(),
            max_size=4,
        )
        | json_ish,
        "scope": scope_like | json_ish,
    },
)


class TestConverterStructure:
    """converter.structure of untrusted JSON: a value or InvalidArgument."""

    @given(data=json_ish | grant_like)
    def test_grant(self, data):
        """Any JSON-ish data as a Grant: a Grant, or InvalidArgument."""
        grant = parse_or_invalid(lambda: converter.structure(data, Grant))
        assert grant is None or isinstance(grant, Grant)

    @pytest.mark.parametrize("kind", [Permission, Scope, datetime, Kind])
    @given(data=json_ish)
    def test_value_types(self, kind, data):
        """Any JSON-ish data as a Permission, Scope, datetime or Kind: a value of
        that type, or InvalidArgument."""
        result = parse_or_invalid(lambda: converter.structure(data, kind))
        assert result is None or isinstance(result, kind)

    @given(grant=grants)
    def test_grant_round_trip(self, grant):
        """A grant survives unstructure then structure unchanged."""
        assert converter.structure(converter.unstructure(grant), Grant) == grant


class TestWorld:
    """The fixture the value fuzzing starts from."""

    def test_live_and_dead_values(self, world):
        """Its live values authenticate and its dead ones do not, so near
        misses start from real values."""
        for value in world.live:
            assert world.auth.authenticate(value).account_id
            world.auth.verify(value, world.troop, Permission.VIEW, "deploy")
        for value in world.dead:
            with pytest.raises(InvalidToken):
                world.auth.authenticate(value)
