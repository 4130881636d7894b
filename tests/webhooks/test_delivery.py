"""Issue 7 acceptance: the relay delivers every sealed event to a real receiver on loopback, which
checks each signature with its own code; in order per subscription; with retries that keep their
`webhook-id` through failures and Retry-After; at least once when the relay is stopped between
sending and recording (a duplicate with the same id, never a loss); only to subscribers of the
events' enterprises; and disabling after sustained failure."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import uuid

from sqlalchemy import text

from tests.webhooks.conftest import Hooks, until
from tests.webhooks.receiver import Answer, Received, Receiver


def assert_in_order(receiver: Receiver) -> None:
    """Per subscription, one event at a time in sequence order: a refused event is retried
    before anything else is sent, and each new event comes after the last acknowledged one."""
    outstanding: int | None = None
    last = 0
    for request in receiver.snapshot():
        assert request.signature_ok, request
        if outstanding is not None:
            assert request.seq == outstanding, f"seq {request.seq} sent while {outstanding} failed"
        else:
            assert request.seq > last, f"seq {request.seq} sent after {last}"
        if 200 <= request.status < 300:
            outstanding, last = None, request.seq
        else:
            outstanding = request.seq


def first_acknowledged(receiver: Receiver) -> dict[int, Received]:
    """The first acknowledged request of each test event, by the event's payload number."""
    found: dict[int, Received] = {}
    for request in receiver.acknowledged():
        found.setdefault(request.document["data"]["payload"]["n"], request)
    return found


async def test_every_event_is_delivered_in_order_and_signed(hooks: Hooks) -> None:
    world = hooks.live.world
    receiver = hooks.receiver()
    webhook = await hooks.subscribe(world.a_admin, receiver, ["*"])
    for batch in range(5):
        await hooks.emit([world.enterprise_a], 10, type="test.ping", batch=batch)
    # A real change made through the API, too.
    facility = await hooks.live.client.post(
        "/api/v1/facilities",
        json={
            "enterprise_id": str(world.enterprise_a),
            "name": "Huaxi yard",
            "kind": "collection_point",
            "region_code": "520111",
            "address": "Huaxi district",
        },
        headers=world.a_admin.headers,
    )
    assert facility.status_code == 201, facility.text
    hooks.start_sealer()
    hooks.start_relay()

    async def expected() -> set[str]:
        async with hooks.live.sessionmaker()() as session:
            rows = await session.execute(
                text(
                    "SELECT seq, type FROM event WHERE seq > :cursor AND enterprise_ids @> "
                    "ARRAY[CAST(:e AS uuid)] ORDER BY seq"
                ),
                {"cursor": webhook["cursor_seq"], "e": str(world.enterprise_a)},
            )
            return {f"{seq}:{kind}" for seq, kind in rows}

    def got() -> set[str]:
        return {f"{r.seq}:{r.type}" for r in receiver.acknowledged()}

    async def all_there() -> bool:
        wanted = await expected()
        return sum(1 for w in wanted if w.endswith(":test.ping")) == 50 and wanted <= got()

    await until(all_there, what="every event of A delivered")
    assert {"facility.registered", "webhook.created", "test.ping"} <= {
        r.type for r in receiver.acknowledged()
    }
    assert_in_order(receiver)
    requests = receiver.snapshot()
    assert all(r.signature_ok for r in requests)
    assert len({r.webhook_id for r in requests}) == len(requests)  # nothing failed, no retries
    # The body is the sealed event as the audit trail has it.
    async with hooks.live.sessionmaker()() as session:
        rows = {
            row.seq: row
            for row in await session.execute(
                text(
                    "SELECT seq, id, type, encode(hash, 'hex') AS hash, payload FROM event"
                    " WHERE seq > :cursor AND enterprise_ids @> ARRAY[CAST(:e AS uuid)]"
                ),
                {"cursor": webhook["cursor_seq"], "e": str(world.enterprise_a)},
            )
        }
    for request in requests:
        document = request.document
        row = rows[request.seq]
        assert document["type"] == row.type
        assert document["data"]["id"] == row.id
        assert document["data"]["hash"] == row.hash
        payload = json.loads(row.payload) if isinstance(row.payload, str) else row.payload
        assert document["data"]["payload"] == payload
        assert request.webhook_id.startswith("msg_")
    # Every delivery says so, with its one attempt.
    deliveries = await hooks.settled(world.a_admin, webhook["id"], len(rows))
    assert len(deliveries) == len(rows)
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert all(len(d["attempt_log"]) == 1 for d in deliveries)
    assert all(d["attempt_log"][0]["status_code"] == 200 for d in deliveries)
    assert [d["event_seq"] for d in deliveries] == sorted(rows, reverse=True)  # newest first
    assert {d["webhook_id"] for d in deliveries} == {r.webhook_id for r in requests}


async def test_a_receiver_failing_30_percent_of_the_time_still_gets_everything(
    hooks: Hooks,
) -> None:
    world = hooks.live.world
    dice = random.Random(7)
    failures: dict[str, list[Received]] = {}

    def flaky(received: Received) -> Answer:
        roll = dice.random()
        if roll < 0.24:
            return 500, {}
        if roll < 0.30:
            return 429, {"Retry-After": "1"}
        return 200, {}

    receiver = hooks.receiver(answer=flaky)
    webhook = await hooks.subscribe(world.a_admin, receiver)
    events = 60
    for _ in range(6):
        await hooks.emit([world.enterprise_a], events // 6)
    hooks.start_sealer()
    hooks.start_relay()
    await until(
        lambda: len({r.document["data"]["seq"] for r in receiver.acknowledged()}) == events,
        what="all events through a flaky receiver",
    )
    requests = receiver.snapshot()
    assert all(r.signature_ok for r in requests)
    assert_in_order(receiver)
    for request in requests:
        failures.setdefault(request.webhook_id, []).append(request)
    retried = {i: tries for i, tries in failures.items() if len(tries) > 1}
    failed = [r for r in requests if r.status >= 300]
    assert len(failed) >= 10  # the dice did fail a fair share (about 30%)
    for webhook_id, tries in failures.items():
        # Retries keep their id and their body; the last try is the acknowledged one.
        assert len({t.body for t in tries}) == 1
        assert [t.status >= 300 for t in tries] == [True] * (len(tries) - 1) + [False]
        for before, after in itertools.pairwise(tries):
            if before.status == 429:
                assert after.at - before.at >= 0.95, f"Retry-After not honoured for {webhook_id}"
    assert retried
    deliveries = await hooks.settled(world.a_admin, webhook["id"], events)
    assert len(deliveries) == events
    assert {d["status"] for d in deliveries} == {"delivered"}
    by_id = {d["webhook_id"]: d for d in deliveries}
    for webhook_id, tries in failures.items():
        log = by_id[webhook_id]["attempt_log"]
        assert [a["status_code"] for a in log] == [t.status for t in tries]
        assert by_id[webhook_id]["attempts"] == len(tries)
    print(
        f"\n{events} events, {len(requests)} requests, {len(failed)} refused "
        f"({sum(r.status == 429 for r in failed)} with Retry-After), {len(retried)} retried"
    )


async def test_stopping_the_relay_between_sending_and_recording_duplicates_never_loses(
    hooks: Hooks,
) -> None:
    world = hooks.live.world
    settings = hooks.settings.model_copy(update={"webhook_timeout_seconds": 1.0})
    victim: list[str] = []

    def hold_the_eighth(received: Received) -> bool:
        if received.document["data"]["payload"]["n"] == 7 and not victim:
            victim.append(received.webhook_id)
            return True
        return False

    receiver = hooks.receiver(hold=hold_the_eighth)
    await hooks.subscribe(world.a_admin, receiver)
    await hooks.emit([world.enterprise_a], 20)
    hooks.start_sealer()
    _, relay = hooks.start_relay(settings)
    await until(receiver.held.is_set, what="the receiver to get the eighth event")
    # The receiver has the request; the relay waits for the answer. Stop it right there.
    relay.cancel()
    await asyncio.gather(relay, return_exceptions=True)
    assert relay.cancelled()
    receiver.release.set()  # the answer goes to a relay that is gone: nothing records it
    async with hooks.live.sessionmaker()() as session:
        status, attempts = (
            await session.execute(
                text("SELECT status, attempts FROM webhook_delivery WHERE webhook_id = :id"),
                {"id": victim[0]},
            )
        ).one()
    assert (status, attempts) == ("pending", 0)
    hooks.start_relay(settings)  # another relay takes over once the lease has run out
    await until(
        lambda: len(first_acknowledged(receiver)) == 20, what="every event after the restart"
    )
    requests = receiver.snapshot()
    assert all(r.signature_ok for r in requests)
    counts: dict[str, int] = {}
    for request in requests:
        counts[request.webhook_id] = counts.get(request.webhook_id, 0) + 1
    assert len(counts) == 20  # nothing lost
    assert {i for i, n in counts.items() if n > 1} == {victim[0]}  # one duplicate, same id
    assert counts[victim[0]] == 2
    twice = [r for r in requests if r.webhook_id == victim[0]]
    assert twice[0].body == twice[1].body
    # The order held across the restart.
    assert [r.document["data"]["payload"]["n"] for r in requests] == [*range(8), 7, *range(8, 20)]


async def test_subscribers_only_receive_events_of_their_enterprise(hooks: Hooks) -> None:
    world = hooks.live.world
    for_a, for_b, shipments_of_a = hooks.receiver(), hooks.receiver(), hooks.receiver()
    await hooks.subscribe(world.a_admin, for_a)
    await hooks.subscribe(world.b_admin, for_b)
    await hooks.subscribe(world.a_admin, shipments_of_a, ["test.shipment.*"])
    await hooks.emit([world.enterprise_a], 3, who="a")
    await hooks.emit([world.enterprise_b], 3, who="b")
    await hooks.emit([world.enterprise_a, world.enterprise_b], 2, who="both")
    await hooks.emit([], 2, who="nobody")
    await hooks.emit([uuid.uuid4()], 2, who="stranger")
    await hooks.emit([world.enterprise_a], 1, type="test.shipment.dispatched", who="a")
    hooks.start_sealer()
    hooks.start_relay()

    def whos(receiver: Receiver) -> list[str]:
        return sorted(r.document["data"]["payload"]["who"] for r in receiver.acknowledged())

    await until(lambda: len(for_a.acknowledged()) >= 6 and len(for_b.acknowledged()) >= 5)
    await until(lambda: len(shipments_of_a.acknowledged()) >= 1)
    await asyncio.sleep(0.5)  # anything misdirected would have arrived by now
    assert whos(for_a) == ["a", "a", "a", "a", "both", "both"]
    assert whos(for_b) == ["b", "b", "b", "both", "both"]
    assert whos(shipments_of_a) == ["a"]
    assert {r.type for r in shipments_of_a.acknowledged()} == {"test.shipment.dispatched"}
    for receiver in (for_a, for_b, shipments_of_a):
        assert all(r.signature_ok for r in receiver.snapshot())
    # Each subscription has its own ids for a shared event.
    assert not for_a.acknowledged_ids() & for_b.acknowledged_ids()


async def test_sustained_failure_disables_and_enabling_resumes_in_order(hooks: Hooks) -> None:
    world = hooks.live.world
    settings = hooks.settings.model_copy(
        update={"webhook_disable_after_failures": 3, "webhook_disable_after_hours": 0}
    )
    healthy = False

    def down_then_up(received: Received) -> Answer:
        return (200, {}) if healthy else (503, {})

    receiver = hooks.receiver(answer=down_then_up)
    webhook = await hooks.subscribe(world.a_admin, receiver)
    await hooks.emit([world.enterprise_a], 3)
    hooks.start_sealer()
    hooks.start_relay(settings)
    path = f"/api/v1/webhooks/{webhook['id']}"

    async def disabled() -> bool:
        return (await hooks.get(path, world.a_admin))["status"] == "disabled"

    await until(disabled, what="the webhook to be disabled")
    state = await hooks.get(path, world.a_admin)
    assert state["consecutive_failures"] == 3
    assert "3 failed attempts in a row" in state["disabled_reason"]
    assert state["disabled_at"] is not None
    requests = receiver.snapshot()
    assert len(requests) == 3
    assert len({r.webhook_id for r in requests}) == 1  # the head, three times
    deliveries = await hooks.deliveries(world.a_admin, webhook["id"])
    head = [d for d in deliveries if d["status"] == "failed"]
    assert len(head) == 1
    assert [a["status_code"] for a in head[0]["attempt_log"]] == [503, 503, 503]
    assert head[0]["last_error"].startswith("HTTP 503")
    assert sorted(d["status"] for d in deliveries) == ["failed", "pending", "pending"]
    failed_only = await hooks.deliveries(world.a_admin, webhook["id"], status="failed")
    assert [d["id"] for d in failed_only] == [head[0]["id"]]
    # The event log says why, for the enterprise.
    reason = await hooks.scalar(
        "SELECT payload->>'reason' FROM event WHERE type = 'webhook.disabled' AND subject_id = :s",
        s=webhook["id"],
    )
    assert reason == state["disabled_reason"]
    # Events sealed while disabled wait; enabling sends everything, in order.
    await hooks.emit([world.enterprise_a], 2, later=True)
    await asyncio.sleep(0.5)
    assert len(receiver.snapshot()) == 3
    healthy = True
    enabled = await hooks.live.client.post(f"{path}/enable", headers=world.a_admin.headers)
    assert enabled.status_code == 200
    assert enabled.json()["status"] == "active"
    assert enabled.json()["consecutive_failures"] == 0
    await until(lambda: len(receiver.acknowledged()) == 5, what="the backlog after enabling")
    assert_in_order(receiver)
    sent = [
        (r.document["data"]["payload"]["n"], "later" in r.document["data"]["payload"])
        for r in receiver.acknowledged()
    ]
    assert sent == [(0, False), (1, False), (2, False), (0, True), (1, True)]
    assert receiver.acknowledged()[0].webhook_id == requests[0].webhook_id


async def test_410_gone_disables_at_once(hooks: Hooks) -> None:
    world = hooks.live.world
    receiver = hooks.receiver(answer=lambda received: (410, {}))
    webhook = await hooks.subscribe(world.a_admin, receiver)
    await hooks.emit([world.enterprise_a], 2)
    hooks.start_sealer()
    hooks.start_relay()
    path = f"/api/v1/webhooks/{webhook['id']}"

    async def disabled() -> bool:
        return (await hooks.get(path, world.a_admin))["status"] == "disabled"

    await until(disabled)
    assert (await hooks.get(path, world.a_admin))["disabled_reason"] == (
        "the receiver answered 410 Gone"
    )
    assert len(receiver.snapshot()) == 1


async def test_a_delivery_is_retried_by_hand(hooks: Hooks) -> None:
    world = hooks.live.world
    settings = hooks.settings.model_copy(update={"webhook_retry_schedule_seconds": [3600]})
    answers = iter([500])

    def once_down(received: Received) -> Answer:
        return next(answers, 200), {}

    receiver = hooks.receiver(answer=once_down)
    webhook = await hooks.subscribe(world.a_admin, receiver)
    await hooks.emit([world.enterprise_a], 1)
    hooks.start_sealer()
    hooks.start_relay(settings)
    await until(lambda: len(receiver.snapshot()) == 1, what="the first attempt")

    async def failed_once() -> list[dict[str, object]]:
        return [d for d in await hooks.deliveries(world.a_admin, webhook["id"]) if d["attempts"]]

    await until(failed_once, what="the failed attempt recorded")
    (delivery,) = await failed_once()
    assert delivery["status"] == "pending"
    assert delivery["last_status"] == 500
    retry = f"/api/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/retry"
    # Waiting an hour for the next attempt: not without an admin.
    await asyncio.sleep(0.3)
    assert len(receiver.snapshot()) == 1
    for who, status in ((world.b_admin, 404), (world.a_viewer, 403), (world.a_operator, 403)):
        assert (await hooks.live.client.post(retry, headers=who.headers)).status_code == status
    unknown = f"/api/v1/webhooks/{webhook['id']}/deliveries/{uuid.uuid4()}/retry"
    assert (await hooks.live.client.post(unknown, headers=world.a_admin.headers)).status_code == 404
    retried = await hooks.live.client.post(retry, headers=world.a_admin.headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending"
    await until(lambda: len(receiver.acknowledged()) == 1, what="the retried delivery")
    assert receiver.snapshot()[0].webhook_id == receiver.snapshot()[1].webhook_id

    async def delivered() -> bool:
        (d,) = await hooks.deliveries(world.a_admin, webhook["id"])
        return d["status"] == "delivered"

    await until(delivered)
    again = await hooks.live.client.post(retry, headers=world.a_admin.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "already_delivered"


async def test_the_relay_checks_the_resolved_address_again(hooks: Hooks) -> None:
    """A subscription made while private destinations were allowed (or a name that now resolves
    to a private address) is not sent to once they are refused."""
    world = hooks.live.world
    receiver = hooks.receiver()
    webhook = await hooks.subscribe(
        world.a_admin, receiver, url=receiver.url.replace("127.0.0.1", "localhost")
    )
    await hooks.emit([world.enterprise_a], 1)
    hooks.start_sealer()
    hooks.start_relay(
        hooks.settings.model_copy(update={"webhook_allow_private_destinations": False})
    )

    async def refused() -> list[dict[str, object]]:
        return [d for d in await hooks.deliveries(world.a_admin, webhook["id"]) if d["attempts"]]

    await until(refused, what="a refused attempt")
    (delivery,) = await refused()
    assert "localhost resolves to" in str(delivery["last_error"])
    assert delivery["last_status"] is None
    assert receiver.snapshot() == []
