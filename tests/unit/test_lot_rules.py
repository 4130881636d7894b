"""Composition arithmetic in whole grams: exact sums, nothing negative, within 1 g of the share."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.lots.rules import (
    Composition,
    Metal,
    apportion,
    largest_remainder,
    lot_code,
    mask_id_number,
    mask_name,
    rescale,
    resident_id_check_digit,
    resident_id_violation,
    split_composition,
)

grams = st.integers(min_value=0, max_value=10**12)
compositions = st.tuples(grams, grams, grams).filter(lambda c: sum(c) > 0).map(Composition.of)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    columns = draw(st.lists(grams, min_size=1, max_size=4).filter(lambda c: sum(c) > 0))
    total = sum(columns)
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=0, max_size=12)))
    bounds = [0, *cuts, total]
    rows = [b - a for a, b in pairwise(bounds)]
    return rows, columns


@given(tables())
def test_apportion_is_exact_non_negative_and_close(table: tuple[list[int], list[int]]) -> None:
    rows, columns = table
    result = apportion(rows, columns)
    total = sum(columns)
    assert [sum(r) for r in result] == rows
    assert [sum(r[j] for r in result) for j in range(len(columns))] == columns
    for i, row in enumerate(result):
        for j, cell in enumerate(row):
            assert cell >= 0
            assert abs(cell - Fraction(rows[i] * columns[j], total)) < 1


@given(compositions, st.lists(st.integers(1, 10**9), min_size=1, max_size=20))
def test_split_composition_keeps_every_gram(composition: Composition, weights: list[int]) -> None:
    parts = largest_remainder(composition.total_g, weights)
    children = split_composition(composition, parts)
    assert [c.total_g for c in children] == parts
    for k in range(3):
        assert sum(c.parts[k] for c in children) == composition.parts[k]


@given(compositions, st.integers(1, 10**12))
def test_rescale_sums_to_the_new_mass(composition: Composition, net_g: int) -> None:
    scaled = rescale(composition, net_g)
    assert scaled.total_g == net_g
    for old, new in zip(composition.parts, scaled.parts, strict=True):
        assert new >= 0
        assert abs(new - Fraction(old * net_g, composition.total_g)) < 1


def test_apportion_refuses_unequal_totals() -> None:
    with pytest.raises(ValueError, match="rows sum"):
        apportion([1, 2], [4])


def test_lot_codes_are_short_distinct_and_checked() -> None:
    codes = {lot_code(Metal.aluminium, 2026, n) for n in range(1, 5000)}
    assert len(codes) == 4999
    assert lot_code(Metal.copper, 2026, 1) == "C26-0000011"
    assert all(len(c) == 11 for c in codes)


@given(st.text("0123456789", min_size=17, max_size=17).filter(lambda s: s[0] != "0"))
def test_resident_id_check_digit(first17: str) -> None:
    number = first17[:6] + "19900101" + first17[14:]
    number17 = number[:17]
    assert resident_id_violation(number17 + resident_id_check_digit(number17)) is None
    wrong = "0" if resident_id_check_digit(number17) != "0" else "1"
    assert "check digit" in (resident_id_violation(number17 + wrong) or "")


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("52010219900101123", "17 digits"),
        ("52010219901301123X", "birth date"),
        ("52010218000101123X", "not plausible"),
        ("020102199001011234", "17 digits"),
    ],
)
def test_resident_id_reasons(number: str, reason: str) -> None:
    assert reason in (resident_id_violation(number) or "")


def test_masks_hide_most_of_it() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_id_number("52010219900101123X") == "5201************3X"
