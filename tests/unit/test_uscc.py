"""GB 32100-2015 unified social credit codes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.registry.rules import USCC_CHARSET, uscc_check_character, uscc_violation

VECTORS = Path(__file__).parents[2] / "domain" / "reference" / "data" / "uscc-test-vectors.csv"


def _vectors() -> list[tuple[str, bool, str]]:
    with VECTORS.open(encoding="utf-8") as f:
        return [(row["code"], row["valid"] == "true", row["note"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize(("code", "valid", "note"), _vectors())
def test_reference_vectors(code: str, valid: bool, note: str) -> None:
    violation = uscc_violation(code)
    assert (violation is None) is valid, (code, note, violation)
    if not valid:
        assert violation is not None
        assert violation.rule == "check_character"


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        ("91520000214434146", "length"),
        ("91520000214434146RR", "length"),
        ("91520000214434I46R", "charset"),  # I never appears
        ("914403001922038217", "check_character"),
        ("9152A000214434146R", "region_code"),
        ("91520000214434146r", "charset"),
    ],
)
def test_each_rule_is_named(code: str, rule: str) -> None:
    violation = uscc_violation(code)
    assert violation is not None
    assert violation.rule == rule


codes_without_check = st.tuples(
    st.text(USCC_CHARSET, min_size=2, max_size=2),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(USCC_CHARSET, min_size=9, max_size=9),
).map("".join)


@given(codes_without_check)
def test_generated_codes_with_their_check_character_are_valid(first17: str) -> None:
    assert uscc_violation(first17 + uscc_check_character(first17)) is None


@given(codes_without_check, st.sampled_from(USCC_CHARSET))
def test_any_other_check_character_is_refused(first17: str, wrong: str) -> None:
    right = uscc_check_character(first17)
    if wrong == right:
        return
    violation = uscc_violation(first17 + wrong)
    assert violation is not None
    assert violation.rule == "check_character"


@given(codes_without_check, st.integers(0, 16), st.sampled_from(USCC_CHARSET))
def test_a_single_substitution_is_always_detected(first17: str, position: int, char: str) -> None:
    """31 is prime and every weight is non-zero mod 31, so one changed character always shows."""
    code = first17 + uscc_check_character(first17)
    if code[position] == char or (2 <= position < 8 and not char.isdigit()):
        return
    tampered = code[:position] + char + code[position + 1 :]
    assert uscc_violation(tampered) is not None
