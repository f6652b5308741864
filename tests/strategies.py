"""Hypothesis strategies for troopauth's values, in one place."""

from __future__ import annotations

from hypothesis import strategies as st

from troopauth import Grant, Permission, Scope

#: Characters allowed in key names (printable, no comma, whitespace or '*'),
#: kept small so that prefixes and exact names collide often.
KEY_ALPHABET = "abc/-_.:0Zé"

key_names = st.text(alphabet=KEY_ALPHABET, min_size=1, max_size=6)

#: Any key name troopauth accepts, from the whole of Unicode.
any_key_names = st.text(
    alphabet=st.characters(
        exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"),
        exclude_characters=",*",
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s.isprintable() and not any(c.isspace() for c in s))

permissions = st.integers(min_value=1, max_value=15).map(Permission)
any_permissions = st.integers(min_value=0, max_value=15).map(Permission)


@st.composite
def scopes(draw: st.DrawFn, names: st.SearchStrategy[str] = key_names) -> Scope:
    """Whole-troop scopes now and then; mostly sets of exact keys and prefixes."""
    if draw(st.integers(0, 5)) == 0:
        return Scope.whole_troop()
    keys = draw(st.frozensets(names, max_size=4))
    prefixes = draw(st.frozensets(names, max_size=3))
    if not keys and not prefixes:
        keys = frozenset([draw(names)])
    return Scope.of(keys, prefixes)


grants = st.builds(Grant, permissions, scopes())


#: Objects that are no text at all.
non_text = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(),
    st.builds(bytearray, st.binary()),
    st.lists(st.text(max_size=3), max_size=5),
    st.tuples(st.text(max_size=3)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
    st.just(object()),
    st.just(Permission.VIEW),
)
