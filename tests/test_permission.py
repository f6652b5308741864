"""Permission: four independent flags, their text form and their names."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troopauth import InvalidArgument, Permission, TroopAuthError

from .strategies import any_permissions, permissions

FLAGS = (Permission.VIEW, Permission.USE, Permission.EDIT, Permission.MANAGE)


class TestFlags:
    """The four flags."""

    def test_exactly_four_members(self):
        """Permission has exactly VIEW, USE, EDIT and MANAGE."""
        assert [m.name for m in Permission] == ["VIEW", "USE", "EDIT", "MANAGE"]

    @pytest.mark.parametrize(("a", "b"), list(itertools.permutations(FLAGS, 2)))
    def test_no_flag_implies_another(self, a, b):
        """Holding one flag never holds another: they are independent."""
        assert a not in b
        assert b not in a
        assert not (a & b)

    @pytest.mark.parametrize("flag", FLAGS)
    def test_each_flag_is_one_bit(self, flag):
        """Each flag is a single bit, so combinations are plain unions."""
        assert flag.value & (flag.value - 1) == 0
        assert flag.value != 0

    def test_combination_holds_exactly_its_parts(self):
        """VIEW | EDIT holds VIEW and EDIT and nothing else."""
        combo = Permission.VIEW | Permission.EDIT
        assert Permission.VIEW in combo
        assert Permission.EDIT in combo
        assert Permission.USE not in combo
        assert Permission.MANAGE not in combo

    @given(any_permissions)
    def test_hash_agrees_with_equality(self, p):
        """Equal permission sets hash alike (they are usable as set members)."""
        again = Permission(p.value)
        assert again == p
        assert hash(again) == hash(p)
        assert again in {p}


class TestParse:
    """Permission.parse."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("view", Permission.VIEW),
            ("VIEW", Permission.VIEW),
            ("View", Permission.VIEW),
            ("mAnAgE", Permission.MANAGE),
            ("view,use", Permission.VIEW | Permission.USE),
            ("view|use", Permission.VIEW | Permission.USE),
            (" view , edit ", Permission.VIEW | Permission.EDIT),
            (
                "VIEW | EDIT | manage",
                Permission.VIEW | Permission.EDIT | Permission.MANAGE,
            ),
            ("view,use|edit", Permission.VIEW | Permission.USE | Permission.EDIT),
            ("view,view", Permission.VIEW),
            ("view,,use", Permission.VIEW | Permission.USE),
            ("view,use,edit,manage", Permission(15)),
        ],
    )
    def test_reads_names(self, text, expected):
        """Names in any case, separated by commas or '|', whitespace ignored."""
        assert Permission.parse(text) is expected

    @given(permissions, st.sampled_from([",", "|", " , ", " | "]), st.booleans())
    def test_round_trips_names(self, p, sep, upper):
        """Joining a set's names, in either case and separator, parses back."""
        names = [n.upper() if upper else n.lower() for n in p.names()]
        assert Permission.parse(sep.join(names)) == p

    @pytest.mark.parametrize(
        "text",
        [
            "",
            " ",
            ",",
            "|",
            " , | ",
            "read",
            "view,read",
            "view use",
            "views",
            "VIEW;USE",
            "admin",
            "1",
            "view,*",
        ],
    )
    def test_bad_text_is_invalid_argument(self, text):
        """Unknown names and empty sets raise InvalidArgument (a TroopAuthError)."""
        with pytest.raises(InvalidArgument):
            Permission.parse(text)

    @pytest.mark.parametrize("value", [None, 1, b"view", ["view"], Permission.VIEW])
    def test_non_text_is_invalid_argument(self, value):
        """parse takes text only; anything else is InvalidArgument."""
        with pytest.raises(InvalidArgument):
            Permission.parse(value)

    def test_error_is_a_troopauth_error_and_value_error(self):
        """The parse error is both a TroopAuthError and a ValueError."""
        with pytest.raises(TroopAuthError) as info:
            Permission.parse("nope")
        assert isinstance(info.value, ValueError)

    def test_error_does_not_echo_long_input(self):
        """The message quotes at most a short piece of the bad name."""
        bad = "x" * 1000
        with pytest.raises(InvalidArgument) as info:
            Permission.parse(bad)
        assert bad not in str(info.value)


class TestNames:
    """Permission.names."""

    def test_empty_set_has_no_names(self):
        """The empty set names nothing."""
        assert Permission(0).names() == ()

    def test_all_in_declaration_order(self):
        """Every flag, in declaration order."""
        assert Permission(15).names() == ("VIEW", "USE", "EDIT", "MANAGE")

    def test_declaration_order_not_union_order(self):
        """Names follow declaration order whatever order the union was written."""
        assert (Permission.MANAGE | Permission.VIEW).names() == ("VIEW", "MANAGE")

    @given(any_permissions)
    def test_names_rebuild_the_set(self, p):
        """OR-ing the named members gives back the set."""
        rebuilt = Permission(0)
        for name in p.names():
            rebuilt |= Permission[name]
        assert rebuilt == p
        assert len(p.names()) == bin(p.value).count("1")
