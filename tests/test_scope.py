"""Scope: the text form, and the laws tying contains, covers, == and |."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from troopauth import InvalidArgument, Scope, TroopAuthError

from .strategies import KEY_ALPHABET, any_key_names, key_names, scopes

#: Characters a key name may not hold (and whitespace / non-printables).
BAD_CHARS = [",", "*", " ", "\t", "\n", "\r", "\x00", "\x7f", "\u00a0", "\u2028"]

#: Invalid key names: never covered by any scope.
INVALID_KEYS = [
    "",
    "a b",
    "a,b",
    "a,",
    "a*",
    "*",
    "a\tb",
    "a\nb",
    "a\x00",
    "a\u00a0b",
    "a\u200bb",
    "a" * 257,
]

#: Scope texts that are not a scope.
INVALID_PATTERNS = [
    "",
    " ",
    ",",
    "key:*",
    "key:",
    "foo",
    "KEY:a",
    "key:a b",
    "key:a,",
    "key:a,,key:b",
    "key: a",
    "key:a**",
    "key:*a",
    "key:a*b",
    "key:a\x00",
    "keya",
    "**",
    "*,",
    "key:" + "a" * 257,
    "key:" + "a" * 257 + "*",
]

any_scopes = st.one_of(scopes(), scopes(any_key_names))

#: Keys drawn from all over: valid names of both kinds and invalid ones.
probe_keys = st.one_of(
    key_names,
    any_key_names,
    st.text(max_size=8),
    st.sampled_from(INVALID_KEYS),
)


def patterns(scope: Scope) -> list[str]:
    """The patterns of a scope's canonical text."""
    return str(scope).split(",")


@st.composite
def narrowed(draw: st.DrawFn) -> tuple[Scope, Scope]:
    """A scope and one built inside it: some of its exact names, and names or
    longer prefixes under its prefixes (the whole troop: any scope)."""
    a = draw(any_scopes)
    if a.whole:
        return a, draw(any_scopes)
    tails = st.text(alphabet=KEY_ALPHABET, max_size=3)
    keys = set(draw(st.sets(st.sampled_from(sorted(a.keys)))) if a.keys else set())
    prefixes: set[str] = set()
    for p in sorted(a.prefixes):
        if draw(st.booleans()):
            keys.add(p + draw(tails))
        if draw(st.booleans()):
            prefixes.add(p + draw(tails))
    if not keys and not prefixes:
        keys.add(min(a.keys) if a.keys else min(a.prefixes))
    return a, Scope.of(keys, prefixes)


def probes_for(a: Scope, b: Scope, extra: list[str]) -> list[str]:
    """Keys that exercise both scopes: their names, prefixes with suffixes, and
    a few extra keys."""
    found: list[str | None] = [None, *extra]
    for s in (a, b):
        found += s.keys
        for p in s.prefixes:
            found += [p, p[:-1], p + "x", p + "/", p + "é", p + " ", p + ",", p + "*"]
            found += [p + c for c in KEY_ALPHABET]
    return found


def witness(a: Scope, b: Scope) -> str | None:
    """A key (None: troop-level) that *b* covers and *a* does not, built from
    the patterns of *b*; requires ``not a.contains(b)``."""
    if b.whole:
        return None
    for k in sorted(b.keys):
        if not a.covers(k):
            return k
    for p in sorted(b.prefixes):
        candidates = [p] + [p + c for c in "abcdefghijklmnopqrstuvwxyz0123456789/-_."]
        for k in candidates:
            if len(k) <= 256 and b.covers(k) and not a.covers(k):
                return k
    raise AssertionError(f"no key that {b!r} covers and {a!r} does not")


class TestParse:
    """Scope.parse and the constructors."""

    def test_whole_troop(self):
        """'*' is the whole-troop scope."""
        assert Scope.parse("*") == Scope.whole_troop()
        assert Scope.parse("*").whole

    def test_star_anywhere_means_whole(self):
        """'*' among other patterns gives the whole troop."""
        assert Scope.parse("key:a,*,key:b*") == Scope.whole_troop()

    def test_exact_and_prefix(self):
        """'key:NAME' is an exact key, 'key:PREFIX*' a prefix."""
        s = Scope.parse("key:deploy,key:prod/*")
        assert s.keys == frozenset({"deploy"})
        assert s.prefixes == frozenset({"prod/"})
        assert not s.whole

    def test_whitespace_around_patterns_ignored(self):
        """Whitespace around a pattern is ignored."""
        assert Scope.parse("  key:b , key:a  ") == Scope.of(["a", "b"])

    def test_of_matches_parse(self):
        """Scope.of builds the same value as the text."""
        assert Scope.of(["deploy"], ["prod/"]) == Scope.parse("key:prod/*,key:deploy")

    def test_duplicates_collapse(self):
        """Repeating a pattern changes nothing."""
        assert Scope.parse("key:a,key:a,key:b*,key:b*") == Scope.parse("key:a,key:b*")

    def test_covered_patterns_dropped(self):
        """A pattern another covers is dropped (scopes are minimal)."""
        s = Scope.parse("key:prod/db,key:prod/*,key:pro*,key:prod/x*")
        assert s.keys == frozenset()
        assert s.prefixes == frozenset({"pro"})

    def test_prefix_covers_equal_exact_key(self):
        """'key:a*' covers 'a' itself, so 'key:a' is dropped beside it."""
        assert Scope.parse("key:a,key:a*") == Scope.parse("key:a*")

    def test_256_char_name_accepted(self):
        """A key name of 256 characters is accepted."""
        name = "k" * 256
        assert Scope.parse(f"key:{name}").keys == frozenset({name})

    @pytest.mark.parametrize("text", INVALID_PATTERNS)
    def test_invalid_patterns_rejected(self, text):
        """Bad scope texts raise InvalidArgument, a TroopAuthError."""
        with pytest.raises(InvalidArgument):
            Scope.parse(text)

    @pytest.mark.parametrize("bad", BAD_CHARS)
    def test_bad_characters_in_names_rejected(self, bad):
        """A name holding a comma, '*', whitespace or a non-printable is rejected."""
        with pytest.raises(TroopAuthError):
            Scope.parse(f"key:a{bad}b")
        with pytest.raises(TroopAuthError):
            Scope.of([f"a{bad}b"])
        with pytest.raises(TroopAuthError):
            Scope.of([], [f"a{bad}b"])

    @pytest.mark.parametrize("value", [None, 1, b"*", ["*"]])
    def test_non_text_rejected(self, value):
        """parse takes text only."""
        with pytest.raises(InvalidArgument):
            Scope.parse(value)

    def test_huge_text_rejected(self):
        """A text over 64 KiB is rejected before it is parsed."""
        with pytest.raises(InvalidArgument):
            Scope.parse("key:a," * 20000)

    def test_empty_scope_rejected(self):
        """A scope that covers nothing is rejected."""
        with pytest.raises(InvalidArgument):
            Scope.of()
        with pytest.raises(InvalidArgument):
            Scope(False)

    @pytest.mark.parametrize("bad", ["", "a" * 257, 3, None])
    def test_of_rejects_invalid_names(self, bad):
        """Scope.of validates exact names and prefixes."""
        with pytest.raises(InvalidArgument):
            Scope.of([bad])
        with pytest.raises(InvalidArgument):
            Scope.of([], [bad])

    @pytest.mark.parametrize(
        ("text", "first"),
        [
            ("key:ok,bad1,key:also bad", "'bad1'"),
            ("key:ok, key:a b ,bad2", "'key:a b'"),
            ("*,key:,key:x*y", "'key:'"),
            ("key:p**,key:,", "'key:p**'"),
        ],
    )
    def test_error_names_the_first_bad_pattern(self, text, first):
        """The message quotes the first bad pattern (as the docstring says),
        not a later one."""
        with pytest.raises(InvalidArgument) as info:
            Scope.parse(text)
        message = str(info.value)
        assert message.startswith(f"scope pattern {first}")

    def test_of_enforces_the_text_limit(self):
        """Scope.of refuses a scope whose canonical text would pass the limit
        (the same limit Scope.parse applies), however it was built."""
        names = [f"k{i:05d}" for i in range(11_000)]  # 10 characters each + comma
        with pytest.raises(InvalidArgument, match="65,536"):
            Scope.of(names)
        assert len(str(Scope.of(names[:5000]))) < 65_536

    def test_error_does_not_echo_long_input(self):
        """The message quotes at most a short piece of the bad pattern."""
        bad = "key:" + "x" * 300
        with pytest.raises(InvalidArgument) as info:
            Scope.parse(bad)
        assert bad not in str(info.value)

    def test_frozen(self):
        """A scope cannot be changed after it is built."""
        s = Scope.parse("key:a")
        with pytest.raises(AttributeError):
            s.keys = frozenset({"b"})  # type: ignore[misc]


class TestText:
    """str() and repr()."""

    def test_whole_is_star(self):
        """The whole-troop scope prints as '*'."""
        assert str(Scope.whole_troop()) == "*"

    def test_sorted_canonical(self):
        """Patterns print sorted, prefixes with a trailing '*'."""
        assert (
            str(Scope.of(["zeta", "alpha"], ["mid/"])) == "key:alpha,key:mid/*,key:zeta"
        )

    def test_repr(self):
        """repr is a call that rebuilds the scope."""
        assert repr(Scope.parse("key:b,key:a*")) == "Scope.parse('key:a*,key:b')"
        assert repr(Scope.whole_troop()) == "Scope.parse('*')"

    @given(any_scopes)
    def test_parse_str_round_trip(self, s):
        """Scope.parse(str(s)) == s for every scope."""
        assert Scope.parse(str(s)) == s

    @given(any_scopes)
    def test_repr_evals_back(self, s):
        """repr(s) evaluates back to an equal scope."""
        assert eval(repr(s), {"Scope": Scope}) == s  # noqa: S307 (the repr is the subject)

    @given(any_scopes)
    def test_str_is_canonical(self, s):
        """str() is sorted, without duplicates, and no pattern covers another."""
        pats = patterns(s)
        assert pats == sorted(pats)
        assert len(pats) == len(set(pats))
        if s.whole:
            assert pats == ["*"]
            return
        prefixes = [p[4:-1] for p in pats if p.endswith("*")]
        exact = [p[4:] for p in pats if not p.endswith("*")]
        for p in prefixes:
            assert not any(q != p and p.startswith(q) for q in prefixes)
        for k in exact:
            assert not k.startswith(tuple(prefixes))

    @given(any_scopes, st.randoms(use_true_random=False))
    def test_str_ignores_pattern_order(self, s, rnd):
        """Any shuffle (and repetition) of the patterns prints the same."""
        pats = patterns(s) * 2
        rnd.shuffle(pats)
        assert str(Scope.parse(",".join(pats))) == str(s)


class TestCovers:
    """Scope.covers."""

    def test_exact_key(self):
        """An exact key covers that name and nothing else."""
        s = Scope.parse("key:deploy")
        assert s.covers("deploy")
        assert not s.covers("deploy2")
        assert not s.covers("deplo")

    def test_prefix(self):
        """A prefix covers every valid name that starts with it."""
        s = Scope.parse("key:prod/*")
        assert s.covers("prod/")
        assert s.covers("prod/db-password")
        assert not s.covers("prod")
        assert not s.covers("staging/db")

    def test_whole_covers_troop_level(self):
        """Only the whole-troop scope covers a troop-level target (None)."""
        assert Scope.whole_troop().covers(None)

    @given(any_scopes)
    def test_only_whole_covers_troop_level(self, s):
        """A scope covers None exactly when it is the whole troop."""
        assert s.covers(None) == s.whole

    @given(any_scopes, any_key_names)
    def test_whole_covers_every_valid_key(self, s, key):
        """The whole troop covers every valid key name."""
        assert Scope.whole_troop().covers(key)
        assert Scope.whole_troop().contains(s)

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_never_covered(self, key):
        """Invalid key names are covered by no scope, whole troop included."""
        assert not Scope.whole_troop().covers(key)
        assert not Scope.parse("key:a*").covers(key)
        assert not Scope.of(["a"], ["x"]).covers(key)

    @given(
        any_scopes,
        st.sampled_from(BAD_CHARS),
        st.text(alphabet=KEY_ALPHABET, max_size=3),
    )
    def test_invalid_extensions_never_covered(self, s, bad, tail):
        """A pattern's name with a bad character added is covered by no scope."""
        for base in [*s.keys, *s.prefixes, "a"]:
            assert not s.covers(base + bad + tail)
            assert not s.covers(bad + base)

    @given(any_scopes, st.integers(257, 300))
    def test_overlong_keys_never_covered(self, s, length):
        """A name longer than 256 characters is covered by no scope."""
        for base in [*s.prefixes, "a"]:
            key = (base * length)[:length]
            assert not s.covers(key)


class TestContains:
    """Scope.contains, checked against covers."""

    @given(narrowed())
    def test_narrowed_scope_contained(self, pair):
        """A scope built inside another (a subset of its names, names and longer
        prefixes under its prefixes) is contained in it."""
        a, b = pair
        assert a.contains(b)

    @given(
        st.one_of(narrowed(), st.tuples(any_scopes, any_scopes)),
        st.lists(probe_keys, max_size=5),
    )
    def test_contains_implies_covers(self, pair, extra):
        """If a contains b, every key b covers a covers."""
        a, b = pair
        if not a.contains(b):
            return
        for key in probes_for(a, b, extra):
            if b.covers(key):
                assert a.covers(key), key

    @given(any_scopes, any_scopes)
    def test_not_contains_has_witness(self, a, b):
        """If a does not contain b, some key b covers is not covered by a."""
        assume(not a.contains(b))
        key = witness(a, b)
        assert b.covers(key)
        assert not a.covers(key)

    @given(scopes(), scopes())
    def test_contains_exactly_when_covers_on_small_alphabet(self, a, b):
        """On short names, contains agrees with covering every probe key."""
        keys = probes_for(a, b, [])
        by_covers = all(a.covers(k) for k in keys if b.covers(k))
        assert a.contains(b) == by_covers

    @given(any_scopes)
    def test_reflexive(self, s):
        """Every scope contains itself."""
        assert s.contains(s)

    @given(scopes(), scopes(), scopes())
    def test_transitive(self, a, b, c):
        """a ⊇ b and b ⊇ c imply a ⊇ c."""
        if a.contains(b) and b.contains(c):
            assert a.contains(c)

    @given(any_scopes, any_scopes)
    def test_equal_iff_mutual_containment(self, a, b):
        """a == b exactly when each contains the other."""
        assert (a == b) == (a.contains(b) and b.contains(a))

    @given(scopes(), scopes())
    def test_equal_iff_mutual_containment_small(self, a, b):
        """The same law, on a small alphabet where the two often meet."""
        assert (a == b) == (a.contains(b) and b.contains(a))
        if a == b:
            assert hash(a) == hash(b)
            assert str(a) == str(b)

    @given(any_scopes)
    def test_whole_contained_only_by_whole(self, s):
        """Only the whole troop contains the whole troop."""
        assert s.contains(Scope.whole_troop()) == s.whole

    def test_prefix_contains_longer_prefix_and_keys(self):
        """'prod/*' contains 'prod/db*' and 'prod/x' but not 'pro*' or 'prod'."""
        s = Scope.parse("key:prod/*")
        assert s.contains(Scope.parse("key:prod/db*,key:prod/x"))
        assert not s.contains(Scope.parse("key:pro*"))
        assert not s.contains(Scope.parse("key:prod"))

    def test_keys_never_contain_a_prefix(self):
        """Exact names never contain a prefix (it covers names they lack)."""
        assert not Scope.parse("key:a,key:ab,key:abc").contains(Scope.parse("key:a*"))

    def test_full_length_prefix_is_its_exact_key(self):
        """A 256-character prefix covers only its own name: it is either
        rejected or the same scope as that exact key."""
        name = "p" * 256
        exact = Scope.parse(f"key:{name}")
        try:
            prefix = Scope.parse(f"key:{name}*")
        except InvalidArgument:
            return
        assert prefix.covers(name)
        assert not prefix.covers(name + "x")
        # The two cover the same keys, so the laws make them contain each
        # other and compare equal.
        assert exact.contains(prefix)
        assert exact == prefix


class TestUnion:
    """Scope.__or__."""

    @given(any_scopes, any_scopes, st.lists(probe_keys, max_size=5))
    def test_union_covers_what_either_covers(self, a, b, extra):
        """a | b covers a key exactly when a or b covers it."""
        u = a | b
        for key in probes_for(a, b, extra):
            assert u.covers(key) == (a.covers(key) or b.covers(key)), key

    @given(any_scopes, any_scopes)
    def test_union_contains_both(self, a, b):
        """a | b contains a and b, and is the same either way round."""
        u = a | b
        assert u.contains(a)
        assert u.contains(b)
        assert u == b | a

    @given(any_scopes)
    def test_union_with_self_and_whole(self, s):
        """s | s is s; s | whole is whole."""
        assert s | s == s
        assert s | Scope.whole_troop() == Scope.whole_troop()

    @given(any_scopes, any_scopes)
    def test_union_of_contained_is_container(self, a, b):
        """When a contains b, a | b == a."""
        if a.contains(b):
            assert a | b == a
