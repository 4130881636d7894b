"""Tenant isolation over every route (DESIGN §7: "a cross-tenant matrix over every endpoint finds
no leak"; §3: a record the caller may not see is 404 exactly like a missing one).

The routes are read from the application, not listed by hand: each route × method has its path
parameters filled with enterprise A's records (`PARAMETERS`; a parameter the table cannot fill
fails, so a new route has to be added), and is called by foreign principals — B's admin and
operator, the Zunyi bureau's supervisor and inspector (A is in Guiyang, 5201; Zunyi is 5203).
Each answer must be

- 403 or 404 problem+json, the same status and code as for records that do not exist (the same
  call with A's ids replaced by fresh ones), or
- for a collection (a GET without path parameters: lists, reports, reference) or a shared write
  (`SHARED_WRITES`), 2xx about the caller itself;

and never contain any of A's identifiers (ids, lot codes, certificate number, USCC, names,
plates, ticket numbers) that the caller did not send itself. Lists are also called with their
filters set to A's ids. Writes must change nothing: every table's fingerprint is the same
before and after.

A control cell per route makes the same call as someone entitled to it, and must succeed (or
meet the stated business refusal): so a foreign 404 is about the caller, not about a body that
could never work. For a collection, the control answer shows A's identifiers: so the foreign
answer's lack of them means something.

Routes that need no principal are listed in `PUBLIC` with the reason; the test checks that the
list and the application agree both ways. The world is built once per module on a database of
its own, committed and sealed as in production; each cell runs in a transaction rolled back
afterwards, so that even a leaking write leaves the next cell the same world."""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker
from sqlmodel import col

from api.app import create_app
from domain.audit.models import Event
from domain.webhooks.models import Delivery
from integrations.settings import Settings
from integrations.webhooks import event_body
from tests.api.tenancy import (
    IDEMPOTENCY_KEY,
    PROBE_LOT_KG,
    UUID_TEXT,
    Tenancy,
    build_tenancy,
)
from tests.conftest import Json, build_world
from tests.custody.conftest import NOW, lot_body
from tests.databases import drop_database, migrated_database
from tests.factories import random_uscc
from tests.routes import api_routes, needs_principal, plain_routes

PROBLEM_JSON = "application/problem+json"
FOREIGN = ("b_admin", "b_operator", "b_user", "zunyi_supervisor", "zunyi_inspector")
Key = tuple[str, str]  # (method, path template)
Fill = Callable[[Tenancy], str]

# --- the routes that need no principal, and why -----------------------------------------------

PUBLIC: dict[Key, str] = {
    ("GET", "/healthz"): "liveness probe: says the process runs, nothing else",
    ("GET", "/readyz"): "readiness probe: says the database answers, nothing else",
    ("GET", "/metrics"): "Prometheus counters by route template and status, no record ids",
    ("GET", "/openapi.json"): "the API's description (DESIGN §3: documented by OpenAPI)",
    ("GET", "/docs"): "the interactive documentation page",
    ("GET", "/docs/oauth2-redirect"): "the documentation page's OAuth2 redirect",
    ("GET", "/redoc"): "the reference documentation page",
    ("POST", "/api/v1/auth/token"): "login: the credential is the password in the form",
    ("POST", "/api/v1/auth/refresh"): "the credential is the refresh token in the body",
    ("POST", "/api/v1/auth/logout"): "the credential is the refresh token in the body",
    ("GET", "/api/v1/public/certificates/{number}"): "anyone verifies a certificate from its"
    " number or QR code (DESIGN §2.6); the number is the credential",
    ("GET", "/api/v1/public/keys"): "the platform's public keys, published for verification",
}
# The one public route whose answer is A's by design: the signed certificate its number names.
PUBLISHES_A_RECORD = {("GET", "/api/v1/public/certificates/{number}")}

# --- A's record for each route parameter ------------------------------------------------------

PARAMETERS: dict[str, Fill] = {
    "lot_id": lambda t: t.lots["L4"]["id"],  # active at A's collection point
    "shipment_id": lambda t: t.shipments["S2"]["id"],  # dispatched, not yet received
    "transformation_id": lambda t: t.runs["drying"]["id"],  # its output has not moved
    "discrepancy_id": lambda t: t.discrepancy["id"],  # open
    "enterprise_id": lambda t: str(t.world.enterprise_a),
    "facility_id": lambda t: str(t.world.facility_a),
    "authority_id": lambda t: str(t.world.guiyang_authority),  # A's regulator
    "user_id": lambda t: t.user["id"],
    "key_id": lambda t: t.api_key["id"],
    "certificate_id": lambda t: t.certificate["id"],  # valid
    "webhook_id": lambda t: t.webhook["id"],  # active
    "delivery_id": lambda t: t.delivery_id,  # pending
    "ticket_id": lambda t: t.ticket["id"],
    "number": lambda t: t.certificate["number"],
}
# Where a route needs a record in another state (or with more to show) than the default.
OVERRIDES: dict[Key, dict[str, Fill]] = {
    ("GET", "/api/v1/lots/{lot_id}/history"): {"lot_id": lambda t: t.lots["L1"]["id"]},
    ("GET", "/api/v1/lots/{lot_id}/lineage"): {"lot_id": lambda t: t.lots["ingot1"]["id"]},
    ("POST", "/api/v1/facilities/{facility_id}/reinstate"): {"facility_id": lambda t: t.warehouse},
    ("POST", "/api/v1/webhooks/{webhook_id}/enable"): {
        "webhook_id": lambda t: t.webhook_disabled["id"]
    },
    ("GET", "/api/v1/weighbridge/tickets"): {"facility_id": lambda t: t.centre},
    ("GET", "/api/v1/facilities/{facility_id}/register"): {"facility_id": lambda t: t.centre},
}

# --- a body that would work for A, for every write --------------------------------------------


def _lot(t: Tenancy) -> Json:
    return lot_body(str(t.world.facility_a), PROBE_LOT_KG)


def _reason(t: Tenancy) -> Json:
    return {"reason": "cross-tenant probe"}


def _note(t: Tenancy) -> Json:
    return {"note": "cross-tenant probe"}


BODIES: dict[Key, Callable[[Tenancy], Json | None]] = {
    ("POST", "/api/v1/lots"): _lot,
    ("POST", "/api/v1/lots/batch"): lambda t: {"lots": [_lot(t), _lot(t)]},
    ("POST", "/api/v1/lots/{lot_id}/split"): lambda t: {"parts_kg": [30, 10]},
    ("POST", "/api/v1/lots/{lot_id}/seller-view"): _reason,
    ("POST", "/api/v1/shipments"): lambda t: {
        "from_facility_id": str(t.world.facility_a),
        "to_facility_id": str(t.world.facility_b),
        "lot_ids": [t.lots["L4"]["id"]],
        "vehicle_energy": "diesel",
        "distance_km": 150,
    },
    ("POST", "/api/v1/shipments/{shipment_id}/receipt"): lambda t: {
        "items": [{"lot_id": t.lots["L5"]["id"], "received_kg": 30}]
    },
    ("POST", "/api/v1/shipments/{shipment_id}/cancel"): _reason,
    ("POST", "/api/v1/transformations"): lambda t: {
        "facility_id": t.centre,
        "process": "sorting",
        "started_at": NOW,
        "ended_at": "2026-11-20T09:00:00+08:00",
        "inputs": [{"lot_id": t.lots["L3"]["id"], "kg": 50}],
        "outputs": [
            {"kind": "scrap", "metal": "aluminium", "category": "GB13586-FRAGMENTS", "kg": 48}
        ],
        "losses": [{"kind": "non_metallic_residue", "kg": 2}],
    },
    ("POST", "/api/v1/transformations/{transformation_id}/void"): _reason,
    ("POST", "/api/v1/discrepancies/{discrepancy_id}/acknowledge"): _note,
    ("POST", "/api/v1/discrepancies/{discrepancy_id}/dispute"): _note,
    ("POST", "/api/v1/discrepancies/{discrepancy_id}/resolve"): _note,
    ("POST", "/api/v1/enterprises"): lambda t: {
        "name": "D 遵义再生铜",
        "uscc": random_uscc("520302"),
        "roles": ["smelter"],
        "region_code": "520302",
    },
    ("PATCH", "/api/v1/enterprises/{enterprise_id}"): lambda t: {"name": "A recycling (renamed)"},
    ("POST", "/api/v1/enterprises/{enterprise_id}/suspend"): _reason,
    ("POST", "/api/v1/enterprises/{enterprise_id}/reinstate"): _reason,
    ("POST", "/api/v1/facilities"): lambda t: {
        "enterprise_id": str(t.world.enterprise_a),
        "name": "A 第二回收点",
        "kind": "collection_point",
        "region_code": "520102",
        "address": "Zhonghua North Road 2",
    },
    ("PATCH", "/api/v1/facilities/{facility_id}"): lambda t: {"address": "Zhonghua Road 9"},
    ("POST", "/api/v1/facilities/{facility_id}/suspend"): _reason,
    ("POST", "/api/v1/facilities/{facility_id}/reinstate"): _reason,
    ("POST", "/api/v1/authorities"): lambda t: {"name": "六盘水市工信局", "jurisdiction": "5202"},
    ("POST", "/api/v1/users"): lambda t: {
        "enterprise_id": str(t.world.enterprise_a),
        "username": "a.li.probe",
        "display_name": "李探",
        "password": "correct horse battery",
        "role": "operator",
    },
    ("POST", "/api/v1/api-keys"): lambda t: {
        "enterprise_id": str(t.world.enterprise_a),
        "name": "probe key",
        "role": "operator",
    },
    ("DELETE", "/api/v1/api-keys/{key_id}"): lambda t: None,
    ("POST", "/api/v1/reference/emission-factors"): lambda t: {
        "label": "probe",
        "source": "cross-tenant probe",
        "factors": [
            {
                "key": "probe_factor",
                "value": 1,
                "unit": "tCO2e/t",
                "scope": "probe",
                "source": "probe",
                "confidence": "low",
            }
        ],
    },
    ("POST", "/api/v1/certificates"): lambda t: {
        "lot_id": t.lots["ingot2"]["id"],
        "recipient_enterprise_id": str(t.world.enterprise_b),
        "method": "proportional",
    },
    ("POST", "/api/v1/certificates/{certificate_id}/revoke"): _reason,
    ("POST", "/api/v1/weighbridge/tickets"): lambda t: {
        "ticket_no": "A-WB-7002",
        "vehicle_plate": "贵A·T7002",
        "gross_kg": 15100,
        "tare_kg": 15000,
        "net_kg": 100,
        "weighed_at": NOW,
        "facility_id": t.centre,
    },
    ("POST", "/api/v1/webhooks"): lambda t: {
        "enterprise_id": str(t.world.enterprise_a),
        "url": "https://erp.a-recycling.example/second",
    },
    ("POST", "/api/v1/webhooks/{webhook_id}/disable"): _reason,
    ("POST", "/api/v1/webhooks/{webhook_id}/enable"): lambda t: None,
    ("POST", "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"): lambda t: None,
}
# Fields that name another tenant's record by design, kept in the missing-record twin: a sender
# ships to a receiver's facility (DESIGN §2.3), so "that facility does not exist" (422) is an
# answer it must get, unlike one about A's lots.
ADDRESSED = {"to_facility_id"}

# The foreign caller's own container with A's content: its own rights pass the first check, so
# these find whether A's records are looked up as if they were the caller's.
MIXED: dict[Key, Callable[[Tenancy], list[Json]]] = {
    ("POST", "/api/v1/shipments"): lambda t: [
        {
            "from_facility_id": str(t.world.facility_b),
            "to_facility_id": str(t.world.facility_a),
            "lot_ids": [t.lots["L4"]["id"]],
        },
        {
            "from_facility_id": str(t.world.facility_b),
            "to_facility_id": t.centre,
            "lot_ids": [t.b_lot, t.lots["L4"]["id"]],
        },
    ],
    ("POST", "/api/v1/transformations"): lambda t: [
        {
            "facility_id": str(t.world.facility_b),
            "process": "bulking",
            "started_at": NOW,
            "ended_at": "2026-11-20T09:00:00+08:00",
            "inputs": [{"lot_id": t.b_lot, "kg": 80}, {"lot_id": t.lots["L4"]["id"], "kg": 40}],
            "outputs": [
                {"kind": "scrap", "metal": "aluminium", "category": "GB13586-WROUGHT", "kg": 120}
            ],
        }
    ],
    ("POST", "/api/v1/api-keys"): lambda t: [
        {
            "enterprise_id": str(t.world.enterprise_b),
            "name": "B scale at A's centre",
            "role": "device",
            "facility_id": t.centre,
        }
    ],
    ("POST", "/api/v1/webhooks"): lambda t: [
        {"url": "https://erp.b-recycling.example/a", "enterprise_id": str(t.world.enterprise_a)}
    ],
    ("POST", "/api/v1/certificates"): lambda t: [
        {
            "lot_id": t.lots["ingot2"]["id"],
            "recipient_enterprise_id": str(t.world.enterprise_b),
            "method": "mass_balance",
            "mass_kg": 10,
        }
    ],
}
HEADERS: dict[Key, Callable[[Tenancy], dict[str, str]]] = {
    ("PATCH", "/api/v1/enterprises/{enterprise_id}"): lambda t: {
        "If-Match": t.versions["enterprise"]
    },
    ("PATCH", "/api/v1/facilities/{facility_id}"): lambda t: {"If-Match": t.versions["facility"]},
}

# Writes that are not about any tenant: a foreign caller may legitimately succeed.
SHARED_WRITES: dict[Key, str] = {
    ("POST", "/api/v1/reference/emission-factors"): "emission factors are the platform's"
    " reference data, published by any authority supervisor (DESIGN §2.7)",
}

# --- who may make each call (the control cells) -----------------------------------------------

# Default: A's admin, answered 2xx. Otherwise (principal, statuses).
CONTROL: dict[Key, tuple[str, tuple[int, ...]]] = {
    ("POST", "/api/v1/lots"): ("a_operator", (201,)),
    ("POST", "/api/v1/lots/{lot_id}/seller-view"): ("guiyang_supervisor", (200,)),
    ("POST", "/api/v1/discrepancies/{discrepancy_id}/resolve"): ("guiyang_supervisor", (200,)),
    ("POST", "/api/v1/enterprises"): ("admin", (201,)),
    ("POST", "/api/v1/enterprises/{enterprise_id}/suspend"): ("guiyang_supervisor", (200,)),
    # A is active: the supervisor reaches it and is told so.
    ("POST", "/api/v1/enterprises/{enterprise_id}/reinstate"): ("guiyang_supervisor", (409,)),
    ("POST", "/api/v1/facilities/{facility_id}/suspend"): ("guiyang_supervisor", (200,)),
    ("POST", "/api/v1/facilities/{facility_id}/reinstate"): ("guiyang_supervisor", (200,)),
    ("POST", "/api/v1/authorities"): ("admin", (201,)),
    ("GET", "/api/v1/authorities"): ("guiyang_supervisor", (200,)),
    ("GET", "/api/v1/authorities/{authority_id}"): ("guiyang_supervisor", (200,)),
    ("POST", "/api/v1/reference/emission-factors"): ("guiyang_supervisor", (201,)),
    ("GET", "/api/v1/audit/verify"): ("guiyang_supervisor", (200,)),
    ("GET", "/api/v1/reports/flows"): ("guiyang_supervisor", (200,)),
    ("GET", "/api/v1/reports/indicators"): ("guiyang_supervisor", (200,)),
    ("GET", "/api/v1/reports/anomalies"): ("guiyang_supervisor", (200,)),
    ("POST", "/api/v1/weighbridge/tickets"): ("a_device", (201,)),
}
# Collections whose answer names no record of anyone (aggregates, reference data, the chain).
NAMES_NO_RECORD: dict[Key, str] = {
    ("GET", "/api/v1/reference/regions"): "reference data",
    ("GET", "/api/v1/reference/scrap-categories"): "reference data",
    ("GET", "/api/v1/reference/emission-factors"): "reference data",
    ("GET", "/api/v1/audit/verify"): "counts and the first break of the whole chain",
    ("GET", "/api/v1/audit/checkpoints/latest"): "the chain head's hash and signature",
    ("GET", "/api/v1/reports/flows"): "kilograms between regions",
    ("GET", "/api/v1/reports/indicators"): "shares and targets over the jurisdiction",
}
# Aggregates that count A's activity for A's regulator: the foreign caller's must not move.
MOVES_WITH_A = {("GET", "/api/v1/reports/flows"), ("GET", "/api/v1/reports/indicators")}

# --- the enumeration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    route: APIRoute

    @property
    def key(self) -> Key:
        return (self.method, self.path)

    @property
    def parameters(self) -> list[str]:
        return [p.name for p in self.route.dependant.path_params]

    @property
    def id_filters(self) -> list[str]:
        """Query parameters that take one of A's records (filters of lists)."""
        return [p.name for p in self.route.dependant.query_params if p.name in PARAMETERS]

    @property
    def is_collection(self) -> bool:
        return self.method == "GET" and not self.parameters

    @property
    def required_filters(self) -> list[str]:
        return [p.name for p in self.route.dependant.query_params if p.field_info.is_required()]


def _application() -> FastAPI:
    """The app as the server builds it, for its routes only (its keys go to a temporary folder)."""
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(database_url=None, data_dir=Path(folder), jwt_secret="e" * 40)
        return create_app(settings, "postgresql+asyncpg://enumeration@/none")


def endpoints(app: FastAPI) -> list[Endpoint]:
    return [
        Endpoint(method, route.path, route)
        for route in api_routes(app.routes)
        for method in sorted(route.methods)
    ]


def public_keys(app: FastAPI) -> set[Key]:
    """Every route × method that answers without a principal."""
    plain = {
        (method, route.path)
        for route in plain_routes(app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }
    return plain | {e.key for e in endpoints(app) if not needs_principal(e.route.dependant)}


ENUMERATED = _application()
GUARDED = [e for e in endpoints(ENUMERATED) if e.key not in PUBLIC]
FOREIGN_CELLS = [
    pytest.param(e, who, id=f"{e.method} {e.path} | {who}") for e in GUARDED for who in FOREIGN
]
CONTROL_CELLS = [
    pytest.param(e, id=f"{e.method} {e.path} | {CONTROL.get(e.key, ('a_admin',))[0]}")
    for e in GUARDED
]
PUBLIC_CELLS = [
    pytest.param(e, id=f"{e.method} {e.path}")
    for e in endpoints(ENUMERATED)
    if e.key in PUBLIC and e.method == "GET"
]

# --- the world and the calls ------------------------------------------------------------------


@pytest.fixture(scope="module")
async def tenancy(settings: Settings) -> AsyncIterator[Tenancy]:
    suffix = os.environ.get("SCRAPFLOW_TEST_DB_SUFFIX", "")
    url = migrated_database(f"sf_tenant{suffix}")
    app = create_app(settings, url)
    try:
        async with app.state.sessionmaker() as session:
            world = await build_world(session)
            await session.commit()
        dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield await build_tenancy(app, client, world, dsn)
    finally:
        await app.state.engine.dispose()
        drop_database(url)


@asynccontextmanager
async def rolled_back(t: Tenancy) -> AsyncIterator[AsyncConnection]:
    """The app's sessions (reports' too: there is no replica here) on one connection whose
    transaction is rolled back afterwards."""
    state = t.app.state
    committed = state.sessionmaker
    assert state.read_sessionmaker is committed
    async with state.engine.connect() as connection:
        transaction = await connection.begin()
        state.sessionmaker = state.read_sessionmaker = async_sessionmaker(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield connection
        finally:
            state.sessionmaker = state.read_sessionmaker = committed
            await transaction.rollback()


async def fingerprint(connection: AsyncConnection) -> dict[str, str]:
    """A digest of every row of every table, by table."""
    tables = (
        await connection.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version' ORDER BY tablename"
            )
        )
    ).scalars()
    # The table names come from the catalogue, not from any input.
    digests = ", ".join(
        f"(SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM \"{name}\" r)"  # noqa: S608
        f' AS "{name}"'
        for name in tables
    )
    row = (await connection.execute(text(f"SELECT {digests}"))).mappings().one()
    return dict(row)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    body: Json | None = None
    headers: dict[str, str] = field(default_factory=dict)
    mixed: bool = False  # the caller's own records with A's (MIXED)

    def sent(self) -> str:
        """Everything the caller itself put in the request."""
        return f"{self.path} {self.query} {self.body}"

    def twin(self, secrets: set[str]) -> Call:
        """The same call with each of A's ids replaced by a fresh one (a missing record)."""
        fresh: dict[str, str] = {}

        def swap(value: str) -> str:
            return UUID_TEXT.sub(
                lambda m: (
                    fresh.setdefault(m.group(), str(uuid.uuid4()))
                    if m.group() in secrets
                    else m.group()
                ),
                value,
            )

        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return swap(value)
            if isinstance(value, list):
                return [walk(v) for v in value]
            if isinstance(value, dict):
                return {k: v if k in ADDRESSED else walk(v) for k, v in value.items()}
            return value

        path = swap(self.path)
        for known in secrets - {s for s in secrets if UUID_TEXT.fullmatch(s)}:
            path = path.replace(known, "X-NO-SUCH-" + uuid.uuid4().hex[:8])
        return Call(self.method, path, walk(self.query), walk(self.body), self.headers)


def foreign_calls(t: Tenancy, endpoint: Endpoint) -> list[Call]:
    """The calls, and those mixing the caller's own records with A's."""
    (first, *_) = found = calls(t, endpoint)
    mixed = MIXED.get(endpoint.key, lambda t: [])(t)
    return found + [
        Call(first.method, first.path, first.query, body, first.headers, mixed=True)
        for body in mixed
    ]


def calls(t: Tenancy, endpoint: Endpoint) -> list[Call]:
    """The call with A's records in the path; for a list with id filters, also filtered to A."""
    fills = {**PARAMETERS, **OVERRIDES.get(endpoint.key, {})}
    path = endpoint.path
    for name in endpoint.parameters:
        assert name in fills, (
            f"{endpoint.method} {endpoint.path}: no record of A for the path parameter {name!r};"
            " add it to PARAMETERS in tests/api/test_tenant_isolation.py"
        )
        path = path.replace("{" + name + "}", fills[name](t))
    missing = [n for n in endpoint.required_filters if n not in fills]
    assert not missing, f"{endpoint.method} {endpoint.path}: required query parameters {missing}"
    if endpoint.method in ("GET",):
        body = None
    else:
        assert endpoint.key in BODIES, (
            f"{endpoint.method} {endpoint.path}: no body in BODIES (None if it takes none)"
        )
        body = BODIES[endpoint.key](t)
    headers = HEADERS.get(endpoint.key, lambda t: {})(t)
    filters = {name: fills[name](t) for name in endpoint.id_filters}
    required = {name: filters[name] for name in endpoint.required_filters}
    found = [Call(endpoint.method, path, required, body, headers)]
    if filters.keys() != required.keys():
        found.append(Call(endpoint.method, path, filters, body, headers))
    return found


async def send(t: Tenancy, call: Call, who: str) -> httpx.Response:
    headers = {**t.principal(who).headers, **call.headers}
    if call.method != "GET" and who in FOREIGN:
        headers["Idempotency-Key"] = IDEMPOTENCY_KEY
    return await t.client.request(
        call.method, call.path, params=call.query, json=call.body, headers=headers
    )


def leaked(t: Tenancy, call: Call, response: httpx.Response) -> list[str]:
    """A's identifiers in the answer that the caller did not send."""
    sent = call.sent()
    body = response.content.decode("utf-8", "replace")
    return sorted(s for s in t.secrets if s in body and s not in sent)


VOLATILE = re.compile(
    r"\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})"  # periods ending now, creation dates
    r'|"request_id":"[0-9a-f]+"'
)


def stable(answer: str) -> str:
    """An answer without what differs from one request to the next."""
    return VOLATILE.sub("<volatile>", answer)


def shape(found: Json) -> str:
    """A problem as the caller reads it, but for the ids in it and the request id."""
    found = {k: v for k, v in found.items() if k != "request_id"}
    return UUID_TEXT.sub("<id>", json.dumps(found, sort_keys=True, ensure_ascii=False))


def problem(response: httpx.Response) -> Json:
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    found: Json = response.json()
    assert found["status"] == response.status_code, found
    return found


# --- the matrix ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "who"), FOREIGN_CELLS)
async def test_a_foreign_caller_gets_nothing_of_a(
    tenancy: Tenancy, endpoint: Endpoint, who: str
) -> None:
    t = tenancy
    may_succeed = endpoint.is_collection or endpoint.key in SHARED_WRITES
    async with rolled_back(t) as connection:
        before = await fingerprint(connection)
        for call in foreign_calls(t, endpoint):
            response = await send(t, call, who)
            assert not leaked(t, call, response), (response.status_code, leaked(t, call, response))
            twin = await send(t, call.twin(t.secrets), who)
            assert twin.status_code == response.status_code, (response.text, twin.text)
            # A mixed call may be refused for the caller's own part too (422): as for a missing
            # record, which is what matters.
            refusals = range(400, 500) if call.mixed else (403, 404)
            if response.status_code in refusals:
                assert shape(problem(response)) == shape(problem(twin))
            else:
                assert may_succeed and response.status_code < 300, response.text
        after = await fingerprint(connection)
        if endpoint.key not in SHARED_WRITES:
            changed = sorted(name for name in before if before[name] != after[name])
            assert not changed, f"a refused call changed {changed}"
        if endpoint.is_collection:
            await assert_unmoved_by_a(t, endpoint, who)


async def assert_unmoved_by_a(t: Tenancy, endpoint: Endpoint, who: str) -> None:
    """What a foreign caller is told (lists, counts, sums) stays the same when A does more."""
    answers = [await send(t, call, who) for call in calls(t, endpoint)]
    await t.act()
    for call, answer in zip(calls(t, endpoint), answers, strict=True):
        again = await send(t, call, who)
        assert again.status_code == answer.status_code, again.text
        assert stable(again.text) == stable(answer.text), "A's activity shows through"


@pytest.mark.parametrize("endpoint", CONTROL_CELLS)
async def test_the_entitled_caller_reaches_the_record(tenancy: Tenancy, endpoint: Endpoint) -> None:
    """The same calls succeed for someone entitled: the bodies and records are right, and A's
    identifiers are there to be leaked."""
    t = tenancy
    who, statuses = CONTROL.get(endpoint.key, ("a_admin", ()))
    async with rolled_back(t):
        for call in calls(t, endpoint):
            response = await send(t, call, who)
            if statuses:
                assert response.status_code in statuses, response.text
            else:
                assert response.status_code < 300, response.text
            if endpoint.is_collection and endpoint.key not in NAMES_NO_RECORD:
                assert leaked(t, call, response), f"{who}'s answer names nothing of A's"
        if endpoint.key in MOVES_WITH_A:
            before = [stable((await send(t, call, who)).text) for call in calls(t, endpoint)]
            await t.act()
            after = [stable((await send(t, call, who)).text) for call in calls(t, endpoint)]
            assert before != after, f"{who}'s figures do not show A's activity"


def test_every_route_is_guarded_or_listed_public() -> None:
    """A route answering without a principal must be in PUBLIC, with its reason; and whatever is
    in PUBLIC answers without one (the list cannot hide a guarded route from the matrix)."""
    assert public_keys(ENUMERATED) == set(PUBLIC)
    assert len(GUARDED) + len([k for k in PUBLIC if k[0] != "HEAD"]) >= 80


@pytest.mark.parametrize("endpoint", PUBLIC_CELLS)
async def test_public_reads_show_nothing_of_a_but_what_they_publish(
    tenancy: Tenancy, endpoint: Endpoint
) -> None:
    t = tenancy
    async with rolled_back(t):
        for call in calls(t, endpoint):
            response = await t.client.request(call.method, call.path, params=call.query)
            assert response.status_code == 200, response.text
            if endpoint.key in PUBLISHES_A_RECORD:
                missing = await t.client.get(call.twin(t.secrets).path)
                assert problem(missing)["code"] == "unknown_certificate"
            else:
                assert not leaked(t, call, response)


async def test_b_webhook_is_sent_nothing_of_a(tenancy: Tenancy) -> None:
    """Webhooks carry events out of the platform: B's subscription to every event queues B's own
    (its lot, its user, the subscription itself) and none of A's, whose bodies it never gets."""
    t = tenancy
    listed = await send(
        t, Call("GET", f"/api/v1/webhooks/{t.b_webhook['id']}/deliveries"), "b_admin"
    )
    assert listed.status_code == 200, listed.text
    assert {d["event_type"] for d in listed.json()["items"]} >= {"lot.registered", "user.created"}
    async with t.app.state.sessionmaker() as session:
        queued = await session.scalars(
            select(Event)
            .join(Delivery, col(Delivery.event_id) == col(Event.id))
            .where(col(Delivery.subscription_id) == uuid.UUID(t.b_webhook["id"]))
        )
        bodies = [event_body(event).decode() for event in queued]
    assert bodies
    assert not [s for s in t.secrets for body in bodies if s in body]


async def test_a_past_holder_reads_its_lot_not_what_the_receiver_did_besides(
    tenancy: Tenancy,
) -> None:
    """B sells its lot to A, and A bulks it with its own L3. B, a past holder, still reads the lot,
    its shipment and where its metal went (lineage); but the lot's history must not open A's run
    to B (404 for B, as is L3): no event of it there, and nothing of L3."""
    t = tenancy
    w = t.world
    l3 = t.lots["L3"]
    secrets = set(t.secrets)  # A's answers here name B's lot: not one of A's records
    async with rolled_back(t):
        shipped = await t.post(
            w.b_admin,
            "/api/v1/shipments",
            {
                "from_facility_id": str(w.facility_b),
                "to_facility_id": t.centre,
                "lot_ids": [t.b_lot],
            },
        )
        path = f"/api/v1/shipments/{shipped['id']}/receipt"
        await t.post(w.a_operator, path, {"items": [{"lot_id": t.b_lot, "received_kg": 80}]})
        run = await t.post(
            w.a_operator,
            "/api/v1/transformations",
            {
                "facility_id": t.centre,
                "process": "bulking",
                "started_at": NOW,
                "ended_at": "2026-11-20T09:00:00+08:00",
                "inputs": [{"lot_id": t.b_lot, "kg": 80}, {"lot_id": l3["id"], "kg": 50}],
                "outputs": [
                    {
                        "kind": "scrap",
                        "metal": "aluminium",
                        "category": "GB13586-WROUGHT",
                        "kg": 130,
                    }
                ],
            },
        )
        for hidden in (f"/api/v1/transformations/{run['id']}", f"/api/v1/lots/{l3['id']}"):
            assert (await send(t, Call("GET", hidden), "b_admin")).status_code == 404

        # B, and the Zunyi bureau over B's point: the run was in Guiyang, by A alone.
        for who in ("b_admin", "zunyi_supervisor"):
            history = await send(t, Call("GET", f"/api/v1/lots/{t.b_lot}/history"), who)
            assert history.status_code == 200, history.text
            assert [e["type"] for e in history.json()] == [
                "lot.registered",
                "shipment.dispatched",
                "shipment.received",
            ]
            assert l3["id"] not in history.text and l3["code"] not in history.text
        fate = await send(
            t,
            Call("GET", f"/api/v1/lots/{t.b_lot}/lineage", {"direction": "downstream"}),
            "b_admin",
        )
        assert [lot["lot_id"] for lot in fate.json()["lots"]] == [run["outputs"][0]["id"]]
        assert l3["id"] not in fate.text and l3["code"] not in fate.text
        # A, the holder, reads the whole story.
        own = await send(t, Call("GET", f"/api/v1/lots/{t.b_lot}/history"), "a_viewer")
        assert [e["type"] for e in own.json()][-1] == "transformation.recorded"
    t.secrets = secrets
