"""Pure rules over reference data: reading the shipped CSV files and region-code structure."""

from __future__ import annotations

import csv
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
GUIZHOU = "52"


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
