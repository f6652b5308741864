"""cattrs (de)serialisation of every public type: round trips through JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import cattrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from troopauth import (
    Account,
    AuditAction,
    AuditEvent,
    Grant,
    InvalidArgument,
    IssuedToken,
    Kind,
    Permission,
    Principal,
    Scope,
    SeatPool,
    TokenInfo,
    Troop,
)
from troopauth.serialization import converter, make_converter

from .strategies import any_key_names, grants, permissions, scopes

zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(-timedelta(hours=8)),
        timezone(timedelta(hours=14)),
    ]
)
aware = st.datetimes(timezones=zones)
ids = st.text(max_size=30)
counts = st.integers(0, 2**31)
all_scopes = st.one_of(scopes(), scopes(any_key_names))

accounts = st.builds(Account, ids, counts, st.booleans(), aware)
troops = st.builds(Troop, ids, ids, ids, aware)
principals = st.builds(
    Principal,
    st.sampled_from(Kind),
    ids,
    st.none() | ids,
    st.none() | ids,
    counts,
)
issued = st.builds(IssuedToken, ids, ids, ids, st.sampled_from(Kind))
token_infos = st.builds(
    TokenInfo,
    token_id=ids,
    name=ids,
    hint=ids,
    grants=st.dictionaries(ids, grants, max_size=4),
    created_at=aware,
    expires_at=st.none() | aware,
    kind=st.sampled_from(Kind),
    account_id=ids,
)
seat_pools = st.builds(SeatPool, counts, counts)
audit_events = st.builds(
    AuditEvent,
    seq=st.integers(1, 2**40),
    at=aware,
    troop_id=st.none() | ids,
    action=st.sampled_from(AuditAction),
    actor=ids,
    token_id=st.none() | ids,
    grant=st.none() | grants,
    hash=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    account_id=ids,
    member_id=st.none() | ids,
)

CASES: list[tuple[type, st.SearchStrategy[Any]]] = [
    (Permission, permissions),
    (Scope, all_scopes),
    (Grant, grants),
    (Account, accounts),
    (Troop, troops),
    (Principal, principals),
    (IssuedToken, issued),
    (TokenInfo, token_infos),
    (SeatPool, seat_pools),
    (AuditEvent, audit_events),
]


def through_json(conv: cattrs.Converter, obj: object, cls: type) -> object:
    """Unstructure, dump to JSON text, load, structure."""
    text = json.dumps(conv.unstructure(obj))
    return conv.structure(json.loads(text), cls)


class TestRoundTrip:
    """structure(unstructure(x)) == x, also through JSON text."""

    @pytest.mark.parametrize(
        ("cls", "strategy"), CASES, ids=[c.__name__ for c, _ in CASES]
    )
    def test_round_trip(self, cls, strategy):
        """Every public type survives unstructure -> structure."""

        @given(strategy)
        def check(obj):
            assert converter.structure(converter.unstructure(obj), cls) == obj

        check()

    @pytest.mark.parametrize(
        ("cls", "strategy"), CASES, ids=[c.__name__ for c, _ in CASES]
    )
    def test_round_trip_through_json(self, cls, strategy):
        """The unstructured form is plain JSON and survives dumps/loads."""

        @given(strategy)
        def check(obj):
            back = through_json(converter, obj, cls)
            assert back == obj
            assert type(back) is type(obj)

        check()

    def test_empty_permission_round_trips(self):
        """The empty permission set (a Permission like any other) round-trips."""
        empty = Permission(0)
        assert converter.structure(converter.unstructure(empty), Permission) == empty

    @given(token_infos)
    def test_token_info_grants_stay_read_only(self, info):
        """A structured TokenInfo's grants are still a read-only mapping."""
        back = through_json(converter, info, TokenInfo)
        assert isinstance(back, TokenInfo)
        with pytest.raises(TypeError):
            back.grants["x"] = Grant.full()  # type: ignore[index]

    @given(aware)
    def test_times_keep_their_instant_and_offset(self, at):
        """A time comes back as the same instant with the same UTC offset."""
        back = through_json(converter, at, datetime)
        assert back == at
        assert back.utcoffset() == at.utcoffset()


class TestShapes:
    """The documented JSON shapes."""

    def test_permission_is_list_of_names(self):
        """A permission is a list of its lower-case names (any case is read)."""
        assert converter.unstructure(Permission.VIEW | Permission.EDIT) == [
            "view",
            "edit",
        ]
        assert converter.structure(["VIEW", "Edit"], Permission) == (
            Permission.VIEW | Permission.EDIT
        )

    def test_scope_is_canonical_text(self):
        """A scope is its canonical text."""
        assert converter.unstructure(Scope.parse("key:prod/*,key:deploy")) == (
            "key:deploy,key:prod/*"
        )

    def test_grant_is_mapping(self):
        """A grant is a mapping of permission names and scope text."""
        assert converter.unstructure(Grant.parse("view", "key:a")) == {
            "permission": ["view"],
            "scope": "key:a",
        }

    def test_datetime_is_iso_with_offset(self):
        """A time is ISO 8601 text with its offset."""
        at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert converter.unstructure(at) == "2026-01-02T03:04:05+00:00"

    def test_permission_names_any_case(self):
        """Permission names are read in any case."""
        assert converter.structure(["view", "Edit"], Permission) == (
            Permission.VIEW | Permission.EDIT
        )


class TestMakeConverter:
    """make_converter."""

    def test_returns_new_converters(self):
        """Each call builds a new converter, distinct from the module's."""
        a, b = make_converter(), make_converter()
        assert a is not b
        assert a is not converter
        assert b is not converter

    def test_hooks_are_independent(self):
        """A hook registered on one converter does not reach another."""
        a, b = make_converter(), make_converter()
        a.register_unstructure_hook(Scope, lambda s: "changed")
        assert a.unstructure(Scope.whole_troop()) == "changed"
        assert b.unstructure(Scope.whole_troop()) == "*"
        assert converter.unstructure(Scope.whole_troop()) == "*"
        assert make_converter().unstructure(Scope.whole_troop()) == "*"

    @given(audit_events)
    def test_fresh_converter_round_trips(self, event):
        """A fresh converter handles the public types like the module's."""
        conv = make_converter()
        assert through_json(conv, event, AuditEvent) == event
        assert conv.unstructure(event) == converter.unstructure(event)


class TestBadInput:
    """Structuring bad input raises; which class depends on the level."""

    @pytest.mark.parametrize(
        ("data", "cls"),
        [
            ("VIEW", Permission),
            (["VIEW", 3], Permission),
            (["READ"], Permission),
            (None, Permission),
            ("key:*", Scope),
            ("", Scope),
            (3, Scope),
            (None, Scope),
            ({"permission": ["VIEW"]}, Grant),
            ({"scope": "*"}, Grant),
            ({"permission": [], "scope": "*"}, Grant),
            ({"permission": ["VIEW"], "scope": "key:a b"}, Grant),
            ({"permission": ["VIEW"], "scope": 1}, Grant),
            ("view on *", Grant),
            (None, Grant),
            ("2026-01-01T00:00:00", datetime),
            ("yesterday", datetime),
            (0, datetime),
            (None, datetime),
        ],
    )
    def test_value_types_raise_invalid_argument(self, data, cls):
        """Bad data for Permission, Scope, Grant or a time: InvalidArgument."""
        with pytest.raises(InvalidArgument):
            converter.structure(data, cls)

    @pytest.mark.parametrize(
        ("data", "cls"),
        [
            ({"capacity": 1}, SeatPool),
            ({"capacity": "x", "used": 1}, SeatPool),
            ({"id": "a", "seats": 1, "audit_log": True}, Account),
            (
                {"id": "a", "seats": 1, "audit_log": True, "created_at": "yesterday"},
                Account,
            ),
            ({"kind": "robot", "account_id": "a"}, Principal),
            (
                {
                    "token_id": "t",
                    "name": "n",
                    "hint": "h",
                    "grants": {"tr": {"permission": ["NOPE"], "scope": "*"}},
                    "created_at": "2026-01-01T00:00:00+00:00",
                },
                TokenInfo,
            ),
        ],
    )
    def test_models_raise_cattrs_validation_error(self, data, cls):
        """Bad data for an attrs model: cattrs' ClassValidationError, grouping
        the field errors (a troopauth InvalidArgument among them where a value
        type failed)."""
        with pytest.raises(cattrs.ClassValidationError):
            converter.structure(data, cls)

    def test_model_error_groups_invalid_argument(self):
        """A bad time inside an Account surfaces as an InvalidArgument in the group."""
        data = {"id": "a", "seats": 1, "audit_log": True, "created_at": "naive"}
        with pytest.raises(cattrs.ClassValidationError) as info:
            converter.structure(data, Account)
        matched, _ = info.value.split(InvalidArgument)
        assert matched is not None

    @pytest.mark.parametrize("data", [["a", 1], "x", None, 3])
    def test_not_a_mapping(self, data):
        """A model from something that is not a mapping: ClassValidationError."""
        with pytest.raises(cattrs.ClassValidationError):
            converter.structure(data, SeatPool)

    @pytest.mark.parametrize(
        ("data", "cls"),
        [
            ({"capacity": 1.7, "used": 1}, SeatPool),
            ({"capacity": "3", "used": 1}, SeatPool),
            ({"capacity": True, "used": 1}, SeatPool),
            (
                {
                    "id": "a",
                    "seats": 1,
                    "audit_log": "no",
                    "created_at": "2026-01-01T00:00:00+00:00",
                },
                Account,
            ),
            (
                {
                    "id": 5,
                    "seats": 1,
                    "audit_log": False,
                    "created_at": "2026-01-01T00:00:00+00:00",
                },
                Account,
            ),
        ],
    )
    def test_wrongly_typed_scalars_refused(self, data, cls):
        """A string, float or bool where another scalar type belongs is refused,
        not coerced (``"no"`` must not become ``audit_log=True``)."""
        with pytest.raises((cattrs.BaseValidationError, InvalidArgument)):
            converter.structure(data, cls)
