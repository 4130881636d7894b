"""A CI-sized run of the statement benchmark, so that it never rots. No thresholds: the figures
only mean something at full size on a quiet machine."""

from __future__ import annotations

import pytest

from tests.bench import statements


@pytest.mark.e2e
def test_the_statement_benchmark_runs_end_to_end() -> None:
    row = statements.main(["--small", "500", "--large", "1000", "--repeat", "3"])
    assert row["lots_large"] == 1000 + statements.E_LOTS
    assert row["same_figures"]  # E's statement does not depend on the others' activity
    assert row["p95_large_ms"] > 0
