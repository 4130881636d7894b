"""The webhook endpoints: who may manage them, what they refuse, and the secret shown once and
kept only encrypted."""

from __future__ import annotations

import base64
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.webhooks.service import MAX_ACTIVE_SUBSCRIPTIONS, secret_context
from integrations.settings import Settings
from tests.conftest import Json, World

URL = "https://hooks.example.com/scrapflow?token=receiver-own-token"


async def create(
    client: httpx.AsyncClient, world: World, body: Json | None = None, **headers: str
) -> httpx.Response:
    return await client.post(
        "/api/v1/webhooks",
        json=body or {"url": URL, "event_types": ["lot.*", "shipment.received"]},
        headers={**world.a_admin.headers, **headers},
    )


async def test_the_secret_is_shown_once_and_stored_only_encrypted(
    app: FastAPI, client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    first = await create(client, world, **{"Idempotency-Key": "hook-1"})
    assert first.status_code == 201, first.text
    webhook = first.json()
    secret = webhook["secret"]
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert 24 <= len(key) <= 64
    assert first.headers["Location"] == f"/api/v1/webhooks/{webhook['id']}"
    assert webhook["event_types"] == ["lot.*", "shipment.received"]
    assert webhook["status"] == "active"
    assert webhook["enterprise_id"] == str(world.enterprise_a)
    # A replay answers the same webhook without the secret.
    replay = await create(client, world, **{"Idempotency-Key": "hook-1"})
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == webhook["id"]
    assert replay.json()["secret"] is None
    read = await client.get(f"/api/v1/webhooks/{webhook['id']}", headers=world.a_admin.headers)
    assert read.status_code == 200
    assert "secret" not in read.json()
    # No table holds it in the clear: not the secret, its base64 body, nor the key's bytes.
    needles = [secret, secret.removeprefix("whsec_"), key.hex()]
    tables = (
        await session.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    ).all()
    assert "webhook_subscription" in tables
    assert "idempotency_record" in tables  # replays are stored there
    for table in tables:
        for needle in needles:
            found = await session.scalar(
                text(f'SELECT count(*) FROM "{table}" t WHERE strpos(t::text, :needle) > 0'),  # noqa: S608
                {"needle": needle},
            )
            assert found == 0, f"{table} holds the secret"
    # It is sealed, not hashed: the relay opens it to sign.
    sealed = await session.scalar(
        text("SELECT secret_sealed FROM webhook_subscription WHERE id = :id"), {"id": webhook["id"]}
    )
    opened = app.state.vault.open(sealed, secret_context(uuid.UUID(webhook["id"])))
    assert opened.decode() == secret
    # The event log records where to, but not the receiver's own path and query.
    payload = await session.scalar(
        text("SELECT payload::text FROM event WHERE type = 'webhook.created' AND subject_id = :s"),
        {"s": webhook["id"]},
    )
    assert "hooks.example.com" in payload
    assert "receiver-own-token" not in payload


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://localhost/hook",
        "http://api.localhost/hook",
        "http://printer.local/hook",
        "http://intranet/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.10/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://240.0.0.1/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[64:ff9b::a00:1]/hook",
    ],
)
async def test_private_destinations_are_refused(
    client: httpx.AsyncClient, world: World, url: str
) -> None:
    response = await create(client, world, {"url": url, "event_types": ["*"]})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "destination_refused"
    assert problem["errors"][0]["pointer"] == "/url"


async def test_private_destinations_are_allowed_when_settings_say_so(
    app: FastAPI, client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    app.state.settings = settings.model_copy(update={"webhook_allow_private_destinations": True})
    response = await create(client, world, {"url": "http://127.0.0.1:9/hook"})
    assert response.status_code == 201, response.text
    assert response.json()["event_types"] == ["*"]  # the default: every event


@pytest.mark.parametrize(
    ("body", "code", "pointer"),
    [
        ({"url": URL, "event_types": ["Lot Registered"]}, "invalid_event_types", "/event_types"),
        ({"url": URL, "event_types": ["lot.*.x"]}, "invalid_event_types", "/event_types"),
        ({"url": URL, "event_types": []}, "validation_failed", "/event_types"),
        ({"url": "ftp://hooks.example.com/x"}, "destination_refused", "/url"),
        ({"url": "https://user:pw@hooks.example.com/x"}, "destination_refused", "/url"),
        ({"url": "https://hooks.example.com:99999/x"}, "destination_refused", "/url"),
        ({"url": "not a url"}, "destination_refused", "/url"),
        ({"url": URL, "secret": "whsec_mine"}, "validation_failed", "/secret"),
    ],
)
async def test_bad_input_is_422_with_a_pointer(
    client: httpx.AsyncClient, world: World, body: Json, code: str, pointer: str
) -> None:
    response = await create(client, world, body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert pointer in {e["pointer"] for e in response.json()["errors"]}


async def test_who_may_manage_webhooks(client: httpx.AsyncClient, world: World) -> None:
    webhook = (await create(client, world)).json()
    path = f"/api/v1/webhooks/{webhook['id']}"
    body = {"url": URL}
    for who in (world.a_operator, world.a_viewer, world.province_supervisor):
        refused = await client.post("/api/v1/webhooks", json=body, headers=who.headers)
        assert refused.status_code == 403
        assert (await client.get(path, headers=who.headers)).status_code == 403
    assert (await client.post("/api/v1/webhooks", json=body)).status_code == 401
    # Another enterprise's admin: as if it did not exist.
    for method, url in (
        ("GET", path),
        ("GET", f"{path}/deliveries"),
        ("POST", f"{path}/disable"),
        ("POST", f"{path}/enable"),
        ("POST", f"{path}/deliveries/{uuid.uuid4()}/retry"),
    ):
        response = await client.request(method, url, headers=world.b_admin.headers)
        assert response.status_code == 404, (method, url)
        assert response.json()["code"] == "not_found"
    foreign = await client.post(
        "/api/v1/webhooks",
        json={**body, "enterprise_id": str(world.enterprise_b)},
        headers=world.a_admin.headers,
    )
    assert foreign.status_code == 404
    listed = await client.get("/api/v1/webhooks", headers=world.b_admin.headers)
    assert listed.json()["items"] == []
    # A platform admin names the enterprise.
    nameless = await client.post("/api/v1/webhooks", json=body, headers=world.admin.headers)
    assert nameless.status_code == 422
    assert nameless.json()["errors"][0]["pointer"] == "/enterprise_id"
    made = await client.post(
        "/api/v1/webhooks",
        json={**body, "enterprise_id": str(world.enterprise_b)},
        headers=world.admin.headers,
    )
    assert made.status_code == 201
    assert made.json()["enterprise_id"] == str(world.enterprise_b)
    assert made.json()["created_by"] is not None
    mine = await client.get("/api/v1/webhooks", headers=world.b_admin.headers)
    assert [w["id"] for w in mine.json()["items"]] == [made.json()["id"]]
    everyone = await client.get(
        "/api/v1/webhooks",
        params={"enterprise_id": str(world.enterprise_a)},
        headers=world.admin.headers,
    )
    assert [w["id"] for w in everyone.json()["items"]] == [webhook["id"]]
    assert (await client.get(path, headers=world.admin.headers)).status_code == 200


async def test_disable_and_enable_are_idempotent_and_logged(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    webhook = (await create(client, world)).json()
    path = f"/api/v1/webhooks/{webhook['id']}"
    for _ in range(2):
        disabled = await client.post(
            f"{path}/disable", json={"reason": "ERP migration"}, headers=world.a_admin.headers
        )
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["status"] == "disabled"
        assert disabled.json()["disabled_reason"] == "ERP migration"
    for _ in range(2):
        enabled = await client.post(f"{path}/enable", headers=world.a_admin.headers)
        assert enabled.status_code == 200
        assert enabled.json()["status"] == "active"
        assert enabled.json()["disabled_reason"] is None
    bodiless = await client.post(f"{path}/disable", headers=world.a_admin.headers)
    assert bodiless.json()["disabled_reason"] == "disabled by an admin"
    events = (
        await session.scalars(
            text("SELECT type FROM event WHERE subject_id = :s ORDER BY id"), {"s": webhook["id"]}
        )
    ).all()
    assert events == ["webhook.created", "webhook.disabled", "webhook.enabled", "webhook.disabled"]


async def test_an_enterprise_has_a_bounded_number_of_active_webhooks(
    client: httpx.AsyncClient, world: World
) -> None:
    made = [(await create(client, world)).json() for _ in range(MAX_ACTIVE_SUBSCRIPTIONS)]
    refused = await create(client, world)
    assert refused.status_code == 409
    assert refused.json()["code"] == "too_many_webhooks"
    await client.post(f"/api/v1/webhooks/{made[0]['id']}/disable", headers=world.a_admin.headers)
    assert (await create(client, world)).status_code == 201


async def test_listings_page_and_refuse_foreign_cursors(
    client: httpx.AsyncClient, world: World
) -> None:
    made = {(await create(client, world)).json()["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/v1/webhooks", params=params, headers=world.a_admin.headers)
        ).json()
        seen += [w["id"] for w in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)
    webhook = next(iter(made))
    bad = await client.get(
        f"/api/v1/webhooks/{webhook}/deliveries",
        params={"cursor": "abc"},
        headers=world.a_admin.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "invalid_cursor"
    empty = await client.get(
        f"/api/v1/webhooks/{webhook}/deliveries", headers=world.a_admin.headers
    )
    assert empty.json() == {"items": [], "next_cursor": None}


def test_openapi_documents_the_webhook_endpoints(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    create = paths["/api/v1/webhooks"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in create["parameters"]}
    assert {"401", "403", "409", "422"} <= set(create["responses"])
    assert "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry" in paths
