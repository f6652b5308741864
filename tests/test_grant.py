"""Grant: allows, the no-escalation containment, construction and repr."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import troopauth
from troopauth import Grant, InvalidArgument, Permission, Scope

from .strategies import any_key_names, any_permissions, grants, key_names, scopes

ALL = Permission.VIEW | Permission.USE | Permission.EDIT | Permission.MANAGE

any_grants = st.one_of(
    grants, st.builds(Grant, any_permissions.filter(bool), scopes(any_key_names))
)
keys_or_none = st.one_of(st.none(), key_names, any_key_names)


def subset(a: Permission, b: Permission) -> bool:
    """Whether every flag of *a* is in *b*, by bits (independent of Flag)."""
    return a.value & ~b.value == 0


class TestAllows:
    """Grant.allows."""

    def test_allows_its_permission_on_its_key(self):
        """EDIT on key:deploy allows EDIT on deploy."""
        g = Grant(Permission.EDIT, Scope.parse("key:deploy"))
        assert g.allows(Permission.EDIT, "deploy")

    def test_other_key_denied(self):
        """...and nothing on another key."""
        g = Grant(Permission.EDIT, Scope.parse("key:deploy"))
        assert not g.allows(Permission.EDIT, "other")

    @pytest.mark.parametrize(
        "other", [Permission.VIEW, Permission.USE, Permission.MANAGE]
    )
    def test_other_permission_denied(self, other):
        """EDIT implies no other flag."""
        g = Grant(Permission.EDIT, Scope.whole_troop())
        assert not g.allows(other, "deploy")

    def test_all_flags_required(self):
        """A request for several flags needs every one of them."""
        g = Grant(Permission.VIEW | Permission.USE, Scope.whole_troop())
        assert g.allows(Permission.VIEW | Permission.USE, "k")
        assert not g.allows(Permission.VIEW | Permission.EDIT, "k")

    @given(any_grants, keys_or_none)
    def test_empty_permission_denied(self, g, key):
        """An empty permission set is never allowed, even by the full grant."""
        assert not g.allows(Permission(0), key)
        assert not Grant.full().allows(Permission(0), key)

    def test_troop_level_needs_whole_troop(self):
        """key=None (troop-level) is allowed only with the whole-troop scope."""
        assert Grant(Permission.MANAGE, Scope.whole_troop()).allows(Permission.MANAGE)
        assert not Grant(Permission.MANAGE, Scope.parse("key:a*")).allows(
            Permission.MANAGE
        )

    @given(any_grants, any_permissions, keys_or_none)
    def test_allows_is_subset_and_covers(self, g, p, key):
        """allows(p, key) iff p is non-empty, p ⊆ the grant's flags and the scope
        covers key."""
        expected = bool(p.value) and subset(p, g.permission) and g.scope.covers(key)
        assert g.allows(p, key) == expected

    @pytest.mark.parametrize("key", ["", "a b", "a,b", "a*", "x" * 257, "\x00"])
    def test_invalid_key_denied(self, key):
        """Invalid key names are denied, even by the full grant."""
        assert not Grant.full().allows(Permission.VIEW, key)


class TestContains:
    """Grant.contains: the no-escalation law."""

    @given(any_grants, any_grants)
    def test_law(self, a, b):
        """a contains b iff b's flags ⊆ a's flags and a's scope contains b's."""
        expected = subset(b.permission, a.permission) and a.scope.contains(b.scope)
        assert a.contains(b) == expected

    @given(any_grants, any_grants, any_permissions, keys_or_none)
    def test_contained_grant_allows_nothing_more(self, a, b, p, key):
        """If a contains b, whatever b allows, a allows."""
        if a.contains(b) and b.allows(p, key):
            assert a.allows(p, key)

    @given(any_grants)
    def test_reflexive(self, g):
        """Every grant contains itself."""
        assert g.contains(g)

    @given(grants, grants, grants)
    def test_transitive(self, a, b, c):
        """a ⊇ b and b ⊇ c imply a ⊇ c."""
        if a.contains(b) and b.contains(c):
            assert a.contains(c)

    @given(any_grants)
    def test_full_contains_every_grant(self, g):
        """The full grant contains every grant; only itself contains it."""
        assert Grant.full().contains(g)
        assert g.contains(Grant.full()) == (g == Grant.full())

    def test_more_flags_is_escalation(self):
        """Adding a flag, even on a narrower scope, is not contained."""
        held = Grant(Permission.EDIT, Scope.whole_troop())
        assert not held.contains(
            Grant(Permission.EDIT | Permission.VIEW, Scope.parse("key:a"))
        )

    def test_wider_scope_is_escalation(self):
        """Widening the scope, even with fewer flags, is not contained."""
        held = Grant(Permission.EDIT | Permission.VIEW, Scope.parse("key:prod/*"))
        assert not held.contains(Grant(Permission.VIEW, Scope.parse("key:pro*")))
        assert not held.contains(Grant(Permission.VIEW, Scope.whole_troop()))
        assert held.contains(Grant(Permission.VIEW, Scope.parse("key:prod/db")))


class TestConstruction:
    """Grant(...), Grant.full and Grant.parse."""

    def test_full(self):
        """The full grant holds every flag on the whole troop."""
        full = Grant.full()
        assert full.permission == ALL
        assert full.scope == Scope.whole_troop()
        assert full.allows(ALL)

    def test_parse(self):
        """parse reads the permission text and the scope text."""
        assert Grant.parse("view,use", "key:prod/*") == Grant(
            Permission.VIEW | Permission.USE, Scope.parse("key:prod/*")
        )

    def test_parse_defaults_to_whole_troop(self):
        """Without a scope text, parse gives the whole troop."""
        assert Grant.parse("manage") == Grant(Permission.MANAGE, Scope.whole_troop())

    @pytest.mark.parametrize(
        ("permission", "scope"),
        [
            ("", "*"),
            ("read", "*"),
            ("view", ""),
            ("view", "key:*"),
            (None, "*"),
            ("view", None),
        ],
    )
    def test_parse_rejects_bad_text(self, permission, scope):
        """Bad permission or scope text raises InvalidArgument."""
        with pytest.raises(InvalidArgument):
            Grant.parse(permission, scope)

    def test_empty_permission_rejected(self):
        """A grant holds at least one permission."""
        with pytest.raises(InvalidArgument):
            Grant(Permission(0), Scope.whole_troop())

    @pytest.mark.parametrize("permission", [1, "view", None, ALL.value])
    def test_permission_type_checked(self, permission):
        """A permission that is not a Permission raises InvalidArgument."""
        with pytest.raises(InvalidArgument):
            Grant(permission, Scope.whole_troop())

    @pytest.mark.parametrize("scope", ["*", None, 1, ["key:a"]])
    def test_scope_type_checked(self, scope):
        """A scope that is not a Scope raises InvalidArgument."""
        with pytest.raises(InvalidArgument):
            Grant(Permission.VIEW, scope)

    @given(any_grants)
    def test_equal_grants_hash_alike(self, g):
        """A rebuilt grant is equal and hashes alike."""
        again = Grant(Permission(g.permission.value), Scope.parse(str(g.scope)))
        assert again == g
        assert hash(again) == hash(g)

    def test_frozen(self):
        """A grant cannot be changed after it is built."""
        g = Grant.full()
        with pytest.raises(AttributeError):
            g.permission = Permission.VIEW  # type: ignore[misc]


class TestText:
    """repr and str."""

    @given(any_grants)
    def test_repr_evals_back(self, g):
        """repr is valid Python that evaluates to an equal grant."""
        names = {n: getattr(troopauth, n) for n in troopauth.__all__}
        assert eval(repr(g), names) == g  # noqa: S307 (the repr is the subject)

    def test_repr_shape(self):
        """repr names the flags and the scope's text."""
        g = Grant(Permission.VIEW | Permission.EDIT, Scope.parse("key:a"))
        assert (
            repr(g) == "Grant(Permission.VIEW | Permission.EDIT, Scope.parse('key:a'))"
        )

    def test_str(self):
        """str reads 'flags on scope'."""
        assert str(Grant.parse("edit,view", "key:a")) == "view,edit on key:a"
