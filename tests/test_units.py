"""The number grammar shared by the command line and budget files."""

import pytest

from paramcalc.errors import UserError
from paramcalc.units import human_bytes, human_count, parse_number


@pytest.mark.parametrize("text,value", [
    ("15e12", 15 * 10**12), ("1.56e+13", 15_600_000_000_000), ("2.0E12", 2 * 10**12), ("15T", 15 * 10**12),
    ("7.5B", 7_500_000_000), ("405e9", 405_000_000_000), ("1.3M", 1_300_000), ("8G", 8 * 10**9), ("4k", 4000),
    ("0.4", 0.4), ("2048", 2048), ("1_000", 1000), (" 7B ", 7 * 10**9), (3, 3), (2.5, 2.5), (4.0, 4),
])
def test_numbers_accept_float_literals_and_decimal_suffixes(text, value):
    got = parse_number(text)
    assert got == value and type(got) is type(value)


def test_whole_values_are_exact_integers_not_rounded_floats():
    assert parse_number("405853388800") == 405853388800
    assert parse_number("1.23456789012345678e20") == 123456789012345678000


@pytest.mark.parametrize("text", ["", "seven", "7.5X", "1e", "--3", True, "nan", "inf"])
def test_garbage_is_a_user_error(text):
    with pytest.raises(UserError):
        parse_number(text)


def test_counts_are_decimal_and_bytes_binary():
    assert human_count(8_030_261_248) == "8.03B"
    assert human_count(405_853_388_800) == "406B"
    assert human_bytes(16 * 2**30) == "16.00 GiB"
