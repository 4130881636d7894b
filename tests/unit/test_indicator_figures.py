"""Indicator numerators and denominators are spelled in digits, never in exponent form."""

from __future__ import annotations

from decimal import Decimal

from api.schemas.oversight import IndicatorOut
from domain.reports.oversight import Indicator


def test_a_whole_figure_from_a_numeric_sum_reads_in_digits() -> None:
    indicator = Indicator(
        "import_share", Decimal("25.00"), "percent", None, "", Decimal("2E+4"), Decimal("8E+4")
    )
    body = IndicatorOut.of(indicator).model_dump(mode="json")
    assert body["numerator"] == "20000"
    assert body["denominator"] == "80000"


def test_a_fractional_figure_keeps_its_digits() -> None:
    indicator = Indicator("clean_transport", None, "t-km", None, "", Decimal("12.500"), 3)
    body = IndicatorOut.of(indicator).model_dump(mode="json")
    assert body["numerator"] == "12.500"
    assert body["denominator"] == "3"
