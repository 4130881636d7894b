"""The `scrapflow` admin commands against a fresh embedded database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRAPFLOW = Path(sys.executable).parent / "scrapflow"


def _run(data_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SCRAPFLOW_DATA_DIR"] = data_dir
    return subprocess.run(
        [str(SCRAPFLOW), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.e2e
def test_admin_commands() -> None:
    data_dir = tempfile.mkdtemp(prefix="sfcli", dir="/tmp")
    try:
        _admin_commands(data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _admin_commands(data_dir: str) -> None:
    key = _run(data_dir, "admin", "create-key", "--name", "ops laptop")
    assert key.returncode == 0, key.stderr
    assert re.search(r"sfk_[A-Za-z0-9]{38}", key.stdout)

    bad = _run(data_dir, "admin", "create-authority", "--name", "x", "--jurisdiction", "5299")
    assert bad.returncode == 2
    assert "unknown_region" in bad.stderr

    good = _run(
        data_dir,
        "admin",
        "create-enterprise",
        "--name",
        "E",
        "--uscc",
        "91520000214434146r",
        "--region-code",
        "520102",
        "--role",
        "recycler",
        "--role",
        "smelter",
    )
    assert good.returncode == 0, good.stderr
    assert re.fullmatch(r"[0-9a-f-]{36}\n", good.stdout)
    # The embedded server stops with the last process using it.
    assert not (Path(data_dir) / "pg" / "postmaster.pid").exists()
