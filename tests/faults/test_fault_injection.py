"""DESIGN §7 under faults, CI-sized: the database SIGKILLed and restarted, then its connections
terminated, under load. A bigger run: `python -m tests.faults --requests 10000`."""

from __future__ import annotations

import pytest

from tests.faults.run import run


@pytest.mark.e2e
def test_acknowledged_writes_survive_database_faults_exactly_once() -> None:
    outcome = run(requests=1000, concurrency=32)
    print(outcome.summary())
    tally = outcome.tally

    assert tally.failed == []
    assert tally.acknowledged == tally.sent == 1000
    assert len(tally.faults) == 4  # the kill, the restart, two rounds of terminations
    # The faults were felt: requests failed with 503 and were retried; some first attempts
    # committed while their answer was lost, and their retry got the original answer.
    assert tally.answers[503] > 0
    assert tally.codes["database_unavailable"] == tally.answers[503]
    assert tally.retried > 0
    assert tally.replayed > 0
    assert all(status in (409, 503) for status in tally.answers), tally.answers
    assert outcome.unhandled_errors == 0

    # Every acknowledged lot is there once, nothing else is, each with its event and its key.
    assert outcome.found == len(tally.acked_marks) == tally.lots
    assert outcome.duplicated == 0
    assert outcome.missing == 0
    assert outcome.unacknowledged == 0
    assert outcome.without_event == 0
    assert outcome.keys_recorded == tally.acknowledged

    # The sealer outlived the outage: it sealed everything, and the chain verifies.
    assert outcome.background_ended == 0
    assert outcome.sealing_resumed_after is not None
    assert outcome.verify["valid"] is True
    assert outcome.verify["exit"] == 0
    assert outcome.verify["head_seq"] == outcome.events

    # Ready went away with the database and came back by itself, in the same server process.
    assert 503 in outcome.readiness.after(outcome.killed_at)
    assert outcome.ready_again_after is not None
    assert outcome.ready_at_end == 200
    assert outcome.same_server
