"""The collective benchmark's message sizes: a decimal limit (64M) ends the sweep
where it says, as a binary one (64Mi) does, and help names both kinds of suffix."""

from __future__ import annotations

import pytest
from cli import run

from paramcalc.torchref.collectives import message_sizes, tensor_elements
from paramcalc.units import parse_bytes


@pytest.mark.parametrize("limit, last_two", [
    ("64Mi", [16 * 2**20, 64 * 2**20]),
    ("64MiB", [16 * 2**20, 64 * 2**20]),
    ("64M", [16 * 2**20, 64_000_000]),  # stopped at 16 MiB before: the powers of 4 below 64e6 end there
    ("64MB", [16 * 2**20, 64_000_000]),
    ("1G", [256 * 2**20, 1_000_000_000]),
    ("1Gi", [256 * 2**20, 2**30]),
])
def test_the_sweep_ends_at_the_limit_given_in_decimal_or_binary(limit, last_two):
    sizes = message_sizes(parse_bytes(limit, field="max_bytes"))
    assert sizes[0] == 1024 and sizes[-2:] == last_two
    assert all(b == 4 * a for a, b in zip(sizes[:-2], sizes[1:-1]))  # powers of 4 up to the limit


def test_a_limit_below_one_kib_is_the_only_size():
    assert message_sizes(1000) == [1000]
    assert message_sizes(1024) == [1024]


@pytest.mark.parametrize("limit, ranks, measured", [
    (1025, 2, [1024]),  # 1 KiB and the limit round to the same 256 elements: one row, not two
    (1030, 2, [1024]),
    (4097, 4, [1024, 4096]),
    (300_001, 3, [1020, 4092, 16380, 65532, 262140, 300000]),
])
def test_sizes_that_round_to_the_same_tensor_are_measured_once(limit, ranks, measured):
    elements = tensor_elements(message_sizes(limit), ranks)
    assert [4 * e for e in elements] == measured
    assert all(e % ranks == 0 for e in elements) and 4 * elements[-1] <= limit


def test_help_says_both_decimal_and_binary_suffixes_are_accepted():
    r = run("bench-collectives", "--help")
    assert r.code == 0
    text = " ".join(r.out.replace("│", " ").split())
    assert "decimal (k, M, G: 64M = 64,000,000)" in text and "binary (Ki, Mi, Gi: 64Mi = 2^26)" in text
    assert "[default: 64Mi]" in text
