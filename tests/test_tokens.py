"""The token value format, checked against a reference written from DESIGN.md.

The design: ``cpt_pat_`` + 30 base62 characters of randomness + a 6-character
base62 CRC32 checksum of those 30 characters; alphabet ``0-9A-Za-z``, most
significant digit first, zero-padded; 44 characters in all. Stored: the
SHA-256 digest of the whole value; shown: a hint ``cpt_pat_Ab…yz``.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from troopauth import tokens

# -- the reference, written independently of troopauth.tokens --------------

REF_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
REF_PREFIX = "cpt_pat_"
SHAPE = re.compile(r"cpt_pat_[0-9A-Za-z]{36}")


def ref_base62(number: int, width: int) -> str:
    """Base62, most significant digit first, left-padded with '0'."""
    digits = ""
    while number:
        digits = REF_ALPHABET[number % 62] + digits
        number //= 62
    assert len(digits) <= width
    return digits.rjust(width, "0")


def ref_checksum(random_part: str) -> str:
    """CRC32 (binascii's, the zlib/ISO-HDLC one) of the ASCII, 6 base62 digits."""
    return ref_base62(binascii.crc32(random_part.encode("ascii")) & 0xFFFFFFFF, 6)


def ref_value(random_part: str) -> str:
    """A well-formed value with the given 30-character random part."""
    return REF_PREFIX + random_part + ref_checksum(random_part)


random_parts = st.text(alphabet=REF_ALPHABET, min_size=30, max_size=30)
values = random_parts.map(ref_value)


class TestNewValue:
    """tokens.new_value."""

    def test_shape(self):
        """44 characters: the prefix, then 36 base62 characters."""
        value = tokens.new_value()
        assert len(value) == 44
        assert tokens.VALUE_LENGTH == 44
        assert value.startswith("cpt_pat_")
        assert tokens.PREFIX == "cpt_pat_"
        assert SHAPE.fullmatch(value)

    def test_checksum_matches_reference(self):
        """The last 6 characters are the reference checksum of the 30 before."""
        for _ in range(200):
            value = tokens.new_value()
            assert value[-6:] == ref_checksum(value[8:38])
            assert tokens.has_valid_checksum(value)

    def test_values_are_distinct(self):
        """Fresh values never repeat (and their random parts differ)."""
        made = [tokens.new_value() for _ in range(2000)]
        assert len(set(made)) == len(made)
        assert len({v[8:38] for v in made}) == len(made)

    def test_every_alphabet_character_appears(self):
        """The random part draws on the whole base62 alphabet."""
        seen = set()
        for _ in range(300):
            seen.update(tokens.new_value()[8:38])
        assert seen == set(REF_ALPHABET)


class TestChecksum:
    """tokens.has_valid_checksum."""

    @given(random_parts)
    def test_reference_values_pass(self, random_part):
        """Every value built by the reference passes."""
        value = ref_value(random_part)
        assert tokens.has_valid_checksum(value)
        assert tokens.is_well_formed(value)

    @given(random_parts)
    def test_agrees_with_reference(self, random_part):
        """troopauth's checksum is the reference's."""
        assert tokens.checksum(random_part) == ref_checksum(random_part)

    @given(values, st.data())
    def test_single_character_change_rejected(self, value, data):
        """Changing any one character to anything else is caught."""
        i = data.draw(st.integers(0, len(value) - 1), label="position")
        new = data.draw(
            st.one_of(st.sampled_from(REF_ALPHABET), st.characters()).filter(
                lambda c: c != value[i]
            ),
            label="replacement",
        )
        changed = value[:i] + new + value[i + 1 :]
        assert not tokens.has_valid_checksum(changed)

    @pytest.mark.parametrize(
        "value",
        [
            None,
            44,
            b"cpt_pat_" + b"0" * 36,
            "",
            "cpt_pat_",
            "cpt_pat_" + "0" * 35,
            "cpt_pat_" + "0" * 37,
            "cpt_pai_" + "0" * 36,
            "CPT_PAT_" + "0" * 36,
            "cpt_pat_" + "0" * 35 + "-",
            "cpt_pat_" + "\u0660" * 36,
        ],
    )
    def test_malformed_rejected(self, value):
        """Wrong type, length, prefix or alphabet: rejected without an error."""
        assert not tokens.has_valid_checksum(value)
        assert not tokens.is_well_formed(value)


class TestBase62:
    """tokens.base62."""

    @given(
        st.integers(1, 12).flatmap(
            lambda w: st.tuples(st.just(w), st.integers(0, 62**w - 1))
        )
    )
    def test_round_trip(self, width_number):
        """base62 matches the reference and reads back to the number."""
        width, number = width_number
        text = tokens.base62(number, width)
        assert text == ref_base62(number, width)
        assert len(text) == width
        back = 0
        for ch in text:
            back = back * 62 + REF_ALPHABET.index(ch)
        assert back == number

    @pytest.mark.parametrize(
        ("number", "width", "text"),
        [
            (0, 6, "000000"),
            (1, 6, "000001"),
            (61, 3, "00z"),
            (62, 3, "010"),
            (62**6 - 1, 6, "zzzzzz"),
        ],
    )
    def test_zero_padding_and_order(self, number, width, text):
        """Most significant digit first, zero-padded to the width."""
        assert tokens.base62(number, width) == text

    def test_crc_range_fits_six_digits(self):
        """Every CRC32 fits 6 base62 digits (62**6 > 2**32)."""
        assert tokens.base62(2**32 - 1, 6) == ref_base62(2**32 - 1, 6)

    @pytest.mark.parametrize(("number", "width"), [(-1, 6), (62**6, 6), (62, 1)])
    def test_out_of_range(self, number, width):
        """A number that does not fit the width is refused."""
        with pytest.raises(ValueError, match="fit"):
            tokens.base62(number, width)


class TestHint:
    """tokens.hint."""

    @given(values)
    def test_shape(self, value):
        """The hint is the prefix, the first two random characters, '…', the
        last two characters."""
        assert tokens.hint(value) == f"cpt_pat_{value[8:10]}…{value[-2:]}"

    def test_hint_leaves_out_the_secret(self):
        """A hint holds 4 of the 36 body characters."""
        value = tokens.new_value()
        h = tokens.hint(value)
        assert len(h) == 13
        assert value[10:-2] not in h


class TestDigest:
    """tokens.digest."""

    @given(values)
    def test_sha256_of_value(self, value):
        """The digest is SHA-256 of the whole value (32 bytes)."""
        assert tokens.digest(value) == hashlib.sha256(value.encode("ascii")).digest()
        assert len(tokens.digest(value)) == 32

    def test_different_values_different_digests(self):
        """Two values give two digests."""
        a, b = tokens.new_value(), tokens.new_value()
        assert tokens.digest(a) != tokens.digest(b)
