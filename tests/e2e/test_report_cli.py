"""`scrapflow report push` as an operator runs it: against a migrated database (DATABASE_URL)
and a real loopback receiver that checks the signature."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.industrial_cloud.rules import idempotency_key
from tests.factories import random_uscc
from tests.industrial_cloud.conftest import SECRET, Answer, Receiver

SCRAPFLOW = Path(sys.executable).parent / "scrapflow"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def scrapflow(
    database_url: str, data_dir: Path, receiver: Receiver, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SCRAPFLOW_DATA_DIR": str(data_dir),
        "SCRAPFLOW_INDUSTRIAL_CLOUD_URL": receiver.url,
        "SCRAPFLOW_INDUSTRIAL_CLOUD_SECRET": SECRET.decode(),
        "SCRAPFLOW_INDUSTRIAL_CLOUD_ALLOW_HTTP": "true",
        "SCRAPFLOW_INDUSTRIAL_CLOUD_RETRIES": "2",
        "SCRAPFLOW_INDUSTRIAL_CLOUD_BACKOFF_SECONDS": "0.05",
        "SCRAPFLOW_INDUSTRIAL_CLOUD_TIMEOUT_SECONDS": "2",
    }
    return subprocess.run(
        [str(SCRAPFLOW), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.e2e
def test_report_push_from_the_command_line(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return scrapflow(database_url, tmp_path, receiver, *args)

    made = run(
        "admin", "create-enterprise", "--name", "CLI smelter", "--uscc", random_uscc("520302"),
        "--region-code", "520302", "--role", "smelter",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    enterprise = made.stdout.strip()

    receiver.answers(Answer(500))  # then 200
    pushed = run("report", "push", "--period", "2026-10", "--enterprise", enterprise)
    assert pushed.returncode == 0, pushed.stderr
    (outcome,) = json.loads(pushed.stdout)
    assert outcome == {
        "enterprise_id": enterprise,
        "period": "2026-10",
        "status": "delivered",
        "attempts": 2,
        "status_code": 200,
        "error": None,
    }
    requests = receiver.received()
    assert [r.answered for r in requests] == [500, 200]
    assert {r.key for r in requests} == {idempotency_key(uuid.UUID(enterprise), "2026-10")}
    assert all(r.signature_ok for r in requests)
    assert requests[0].document["enterprise"]["id"] == enterprise  # type: ignore[index]

    again = run("report", "push", "--period", "2026-10", "--enterprise", enterprise)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["status"] == "already_delivered"
    assert len(receiver.received()) == 2

    receiver.answers(then=Answer(503))
    failed = run("report", "push", "--period", "2026-09", "--enterprise", enterprise)
    assert failed.returncode == 1
    (outcome,) = json.loads(failed.stdout)
    assert (outcome["status"], outcome["attempts"], outcome["status_code"]) == ("failed", 3, 503)

    bad = run("report", "push", "--period", "2026-13")
    assert bad.returncode == 2
    assert "invalid_period" in bad.stderr
