"""Pure rules over reference data: reading the shipped CSV files and region-code structure."""

from __future__ import annotations

import csv
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
GUIZHOU = "52"

CONFIDENCE = ("high", "medium", "low")

# Factors the platform computes with (statements, DESIGN §2.7) and the units that arithmetic
# assumes; a published set must keep them in these units. tCO2e/t and kgCO2e/kg are the same ratio.
_PER_MASS = frozenset({"tCO2e/t", "kgCO2e/kg"})
_PER_TONNE_KM = frozenset({"kgCO2e/t-km"})
COMPUTED_FACTOR_UNITS: dict[str, frozenset[str]] = {
    "primary_aluminium_china": _PER_MASS,
    "recycled_aluminium": _PER_MASS,
    "primary_copper": _PER_MASS,
    "recycled_copper": _PER_MASS,
    "road_freight_diesel": _PER_TONNE_KM,
    "road_freight_lng": _PER_TONNE_KM,
    "road_freight_electric": _PER_TONNE_KM,
}


def read_csv(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def region_prefixes(region_code: str) -> tuple[str, str]:
    """Province (2 digits) and prefecture (4 digits) of a 6-digit GB/T 2260 county code."""
    return region_code[:2], region_code[:4]


def is_region_code(code: str) -> bool:
    return len(code) == 6 and code.isascii() and code.isdigit()


def is_jurisdiction(prefix: str) -> bool:
    """An authority's jurisdiction: a province (2), prefecture (4) or county (6) prefix."""
    return len(prefix) in (2, 4, 6) and prefix.isascii() and prefix.isdigit()


def factor_unit_problem(key: str, unit: str) -> str | None:
    """Why `unit` cannot be the unit of factor `key`, or None."""
    allowed = COMPUTED_FACTOR_UNITS.get(key)
    if allowed is None or unit in allowed:
        return None
    return f"{key} is computed in {' or '.join(sorted(allowed))}, not {unit}"
