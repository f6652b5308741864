"""The public front: __all__, frozen slotted types, py.typed."""

from __future__ import annotations

import importlib
import importlib.resources
import types
from datetime import UTC, datetime

import attrs
import pytest

import troopauth
from troopauth import (
    Account,
    AuditAction,
    AuditEvent,
    Grant,
    IssuedToken,
    Kind,
    Member,
    Permission,
    Principal,
    Scope,
    SeatPool,
    TokenInfo,
    Troop,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)

#: One instance of each public attrs class, and a field to try to assign.
INSTANCES: list[tuple[object, str]] = [
    (Account("a", 1, True, NOW), "seats"),
    (Troop("t", "a", "payments", NOW), "name"),
    (Principal(Kind.TROOP, "a", "tok"), "account_id"),
    (IssuedToken("tok", "value", "hint"), "value"),
    (TokenInfo("tok", "ci", "hint", {"t": Grant.full()}, NOW), "grants"),
    (SeatPool(3, 1), "used"),
    (Member("t", "alice", Grant.full()), "grant"),
    (
        AuditEvent(1, NOW, "t", AuditAction.ISSUE, "personal:x", "tok", None, "0" * 64),
        "actor",
    ),
    (Grant.full(), "permission"),
    (Scope.parse("key:a"), "keys"),
]

PUBLIC_ATTRS_CLASSES = {
    getattr(troopauth, n)
    for n in troopauth.__all__
    if isinstance(getattr(troopauth, n), type) and attrs.has(getattr(troopauth, n))
}


class TestAll:
    """troopauth.__all__."""

    @pytest.mark.parametrize("name", troopauth.__all__)
    def test_importable(self, name):
        """Every name in __all__ can be imported from troopauth."""
        namespace: dict[str, object] = {}
        exec(f"from troopauth import {name}", namespace)  # noqa: S102 (the import is the subject)
        assert namespace[name] is getattr(troopauth, name)

    def test_sorted_and_unique(self):
        """__all__ is sorted and names each thing once."""
        assert list(troopauth.__all__) == sorted(troopauth.__all__)
        assert len(set(troopauth.__all__)) == len(troopauth.__all__)

    def test_every_public_name_listed(self):
        """Every public, non-module name of the package is in __all__."""
        public = {
            n
            for n, v in vars(troopauth).items()
            if not n.startswith("_") and not isinstance(v, types.ModuleType)
        }
        assert public == set(troopauth.__all__)

    @pytest.mark.parametrize(
        "name",
        [
            "TroopAuth",
            "MemoryStore",
            "SQLiteStore",
            "Permission",
            "Scope",
            "Grant",
            "Account",
            "Troop",
            "Principal",
            "IssuedToken",
            "TokenInfo",
            "SeatPool",
            "AuditEvent",
            "TroopAuthError",
            "InvalidToken",
            "AccessDenied",
            "SeatsExhausted",
            "NotFound",
        ],
    )
    def test_design_names_present(self, name):
        """The names the design fixes are all exported."""
        assert name in troopauth.__all__

    @pytest.mark.parametrize(
        "name",
        [n for n in troopauth.__all__ if isinstance(getattr(troopauth, n), type)],
    )
    def test_submodules_agree(self, name):
        """Each exported class comes from its troopauth module and is listed
        in that module's __all__ too."""
        cls = getattr(troopauth, name)
        module = importlib.import_module(cls.__module__)
        assert module.__name__.startswith("troopauth.")
        assert name in module.__all__


class TestImmutableTypes:
    """Public attrs classes are frozen and slotted."""

    def test_instances_cover_every_public_attrs_class(self):
        """The checks below see every public attrs class."""
        assert {type(obj) for obj, _ in INSTANCES} == PUBLIC_ATTRS_CLASSES

    @pytest.mark.parametrize(
        ("obj", "field"), INSTANCES, ids=[type(o).__name__ for o, _ in INSTANCES]
    )
    def test_frozen_and_slotted(self, obj, field):
        """attrs class, __slots__, no __dict__, and assignment raises."""
        cls = type(obj)
        assert attrs.has(cls)
        assert "__slots__" in vars(cls)
        assert not hasattr(obj, "__dict__")
        before = getattr(obj, field)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            setattr(obj, field, before)
        with pytest.raises((attrs.exceptions.FrozenInstanceError, AttributeError)):
            obj.not_a_field = 1  # type: ignore[attr-defined]
        assert getattr(obj, field) == before

    @pytest.mark.parametrize(
        "obj", [o for o, _ in INSTANCES], ids=[type(o).__name__ for o, _ in INSTANCES]
    )
    def test_hashable_and_equal_to_copy(self, obj):
        """Values equal a copy of themselves and hash alike."""
        assert attrs.evolve(obj) == obj
        assert hash(attrs.evolve(obj)) == hash(obj)

    def test_token_info_grants_read_only(self):
        """TokenInfo.grants cannot be changed through the mapping either."""
        info = INSTANCES[4][0]
        assert isinstance(info, TokenInfo)
        with pytest.raises(TypeError):
            info.grants["other"] = Grant.full()  # type: ignore[index]

    @pytest.mark.parametrize("enum_cls", [Permission, Kind, AuditAction])
    def test_enums_are_enums(self, enum_cls):
        """Permission, Kind and AuditAction are enums (immutable by nature)."""
        assert len(list(enum_cls)) > 0
        with pytest.raises(AttributeError):
            next(iter(enum_cls)).value = 99  # type: ignore[misc]


class TestPackaging:
    """What the package ships."""

    def test_py_typed(self):
        """The package ships the py.typed marker."""
        marker = importlib.resources.files("troopauth") / "py.typed"
        assert marker.is_file()

    def test_version(self):
        """The package has a version string."""
        assert isinstance(troopauth.__version__, str)
        assert troopauth.__version__
