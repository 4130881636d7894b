"""Kilograms at the edges, integer grams inside: no float ever enters a sum."""

from __future__ import annotations

from decimal import Decimal

GRAMS_PER_KG = 1000


def kg_to_g(kg: Decimal) -> int:
    grams = kg * GRAMS_PER_KG
    if grams != grams.to_integral_value():
        raise ValueError(f"{kg} kg has more than 3 decimals")
    return int(grams)


def g_to_kg(grams: int) -> Decimal:
    return Decimal(grams) / GRAMS_PER_KG
