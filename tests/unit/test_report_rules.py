"""Carbon and share arithmetic of statements: exact from integer grams, rounded once at the end."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from domain.reference.rules import factor_unit_problem
from domain.reports.rules import (
    avoided_emissions_kg,
    out_of_range,
    share_percent,
    tonne_km,
    transport_emissions_kg,
    twelve_months_before,
)


def test_avoided_emissions_of_the_shipped_aluminium_factors() -> None:
    # 950 kg × (16.0 − 0.5) kgCO2e/kg = 14725 kg CO2e
    assert avoided_emissions_kg(950_000, Decimal("16.0"), Decimal("0.5")) == Decimal("14725.000")
    # one gram: 0.001 × 15.5 = 0.0155 → 0.016 (half to even on the third decimal)
    assert avoided_emissions_kg(1, Decimal("16.0"), Decimal("0.5")) == Decimal("0.016")
    assert avoided_emissions_kg(0, Decimal("16.0"), Decimal("0.5")) == Decimal("0.000")


def test_transport_rounds_once_from_the_exact_tonne_km() -> None:
    # 1013 kg over 120 km = 121.56 t-km; × 0.08 = 9.7248 → 9.725
    gram_km = Decimal(1_013_000 * 120)
    assert tonne_km(gram_km) == Decimal("121.560")
    assert transport_emissions_kg(gram_km, Decimal("0.08")) == Decimal("9.725")
    # 1 g over 0.1 km: 0.0000001 t-km rounds to 0.000, its emissions too
    assert tonne_km(Decimal("0.1")) == Decimal("0.000")


@given(
    grams=st.integers(min_value=0, max_value=10**13),
    primary=st.decimals(min_value=0, max_value=100, places=6),
    recycled=st.decimals(min_value=0, max_value=100, places=6),
)
def test_avoided_emissions_are_the_exact_product_rounded_once(
    grams: int, primary: Decimal, recycled: Decimal
) -> None:
    exact = Fraction(grams, 1000) * (Fraction(primary) - Fraction(recycled))
    got = avoided_emissions_kg(grams, primary, recycled)
    assert abs(Fraction(got) - exact) <= Fraction(1, 2000)
    assert got == got.quantize(Decimal("0.001"))


def test_shares() -> None:
    assert share_percent(850, 1000) == Decimal("85.00")
    assert share_percent(950, 1100) == Decimal("86.36")  # 86.3636…
    assert share_percent(1, 8) == Decimal("12.50")
    assert share_percent(0, 0) is None


def test_twelve_months_before() -> None:
    moment = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert twelve_months_before(moment) == datetime(2025, 11, 24, 8, 30, tzinfo=UTC)
    leap = datetime(2028, 2, 29, tzinfo=UTC)
    assert twelve_months_before(leap) == datetime(2027, 2, 28, tzinfo=UTC)
    assert out_of_range(datetime(1899, 12, 31, tzinfo=UTC))
    assert not out_of_range(moment)


def test_computed_factors_keep_their_units() -> None:
    assert factor_unit_problem("primary_aluminium_china", "tCO2e/t") is None
    assert factor_unit_problem("primary_aluminium_china", "kgCO2e/kg") is None
    assert factor_unit_problem("road_freight_lng", "kgCO2e/t-km") is None
    problem = factor_unit_problem("road_freight_lng", "gCO2e/t-km")
    assert problem is not None and "kgCO2e/t-km" in problem
    assert factor_unit_problem("grid_guizhou", "anything") is None  # not computed with
