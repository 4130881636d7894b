"""CI-sized runs of the benchmark (`python -m tests.bench --quick`, and the lineage one), so that
they never rot. No thresholds: the figures only mean something at full size on a quiet machine
(`make bench`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import lineage
from tests.bench.__main__ import main as bench

ROWS = (
    "registration `POST /lots`",
    "batch registration `POST /lots/batch`",
    "dispatch `POST /shipments`",
    "receipt `POST /shipments/{id}/receipt`",
    "statement, smelter, 1 month",
    "statement, recycler, 1 month",
    "credits, smelter",
    "lineage upstream (product)",
    "lots at a facility, 1st page",
    "register, pretreatment centre, 1 month",
    "flows, province, 12 months",
    "indicators, province, 12 months",
    "anomalies, province, 12 months",
    "sealing lag at",
    "chain verification",
    "peak server memory",
)


@pytest.mark.e2e
def test_the_benchmark_is_one_command_with_one_table(tmp_path: Path) -> None:
    written = tmp_path / "results.json"
    result = bench(["--quick", "--json", str(written)])

    table = result["table"]
    assert len(table) == len(ROWS)
    for row, name in zip(table, ROWS, strict=True):
        assert row["measure"].startswith(name), (row["measure"], name)
    assert all(row["target"] and row["met"] in (True, False) for row in table)
    assert json.loads(written.read_text())["table"] == table

    writes = result["writes"]  # every request answered 2xx, every figure measured
    for key in ("registration", "dispatch", "receipt"):
        for side in (key, f"{key}_floor"):
            assert writes[side]["non_2xx"] == 0 and writes[side]["per_s"] > 0, writes[side]
        assert writes[key]["ratio_to_floor"] > 0
    assert writes["batch"]["non_2xx"] == 0 and writes["batch"]["lots_per_s"] > 0

    reads = result["reads"]
    for size in ("small", "large"):  # the dataset is what the services would have written
        assert not any(reads["info"]["checks"][size].values()), reads["info"]["checks"][size]
    for name, row in reads["rows"].items():
        for size in ("small", "large"):
            assert row[size]["status"] == 200, (name, size, row[size])
            assert row[size]["p50_ms"] > 0
    upstream = reads["rows"]["lineage upstream (product)"]
    assert upstream["large"]["kg_balance_ok"] and upstream["large"]["ancestors"] == 3 + 3 * 20

    audit = result["audit"]
    assert audit["sealed"] == 3000 + 3  # and the seed's registry events
    ingest = audit["ingest"]
    assert ingest["non_2xx"] == 0 and ingest["lots"] == 1500 and ingest["max_backlog"] > 0
    # and the admin key the server makes on first start, and the warm-up batch
    assert audit["final_verified"] == audit["sealed"] + 1 + 500 + 1500
    assert audit["sealed"] / audit["verify"].seconds > 0

    memory = result["memory"]  # PSS never exceeds RSS; a sum is at least its largest term
    assert set(memory["parts"]) == {"writes", "audit", "reads"}
    for peaks in [memory, *memory["parts"].values()]:
        assert 0 < peaks["largest_process_pss_mb"] <= peaks["pss_mb"] <= peaks["rss_mb"], peaks
        assert peaks["largest_process_pss_mb"] <= peaks["largest_process_rss_mb"], peaks
    assert memory["parts"]["writes"]["processes"] >= 3  # the supervisor and its two workers


@pytest.mark.e2e
def test_the_lineage_benchmark_runs_end_to_end() -> None:
    row = lineage.main(["--sources", "625", "--repeat", "2"])
    assert row["sources"] == 625
    assert row["ancestors"] == 625 + 125 + 25 + 5 + 1
    assert row["kg_balance_ok"]
