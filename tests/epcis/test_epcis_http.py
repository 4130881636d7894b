"""`GET /api/v1/epcis/events` over HTTP, on one sealed scenario with every kind of event (see
conftest): every document any caller gets, page by page, validates against the GS1 EPCIS 2.0 JSON
Schema; the mapping (bizStep, action, kilograms, parties, locations, certificates, a voided run);
who sees what; paging; filters; and a fixed number of queries per page."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator
from sqlalchemy import event as sa_event

from tests.conftest import Json
from tests.epcis.conftest import Scenario, problems

PRINCIPALS = ("admin", "province", "guiyang", "zunyi", "R", "P", "S", "M", "C")
# The log event types with an EPCIS meaning; everything else is left out.
MAPPED = {
    "lot.registered",
    "lot.split",
    "shipment.dispatched",
    "shipment.received",
    "shipment.cancelled",
    "transformation.recorded",
    "transformation.voided",
    "certificate.issued",
    "certificate.revoked",
}
CERTIFYING = "urn:scrapflow:bizstep:certifying"
REVOKING = "urn:scrapflow:bizstep:revoking_certificate"


# --- helpers ----------------------------------------------------------------------------------


def event_list(document: Json) -> list[Json]:
    events: list[Json] = document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    return events


def seq_of(event: Json) -> int:
    """The audit seq of the log event it comes from."""
    seq: int = event["scrapflow:auditSeq"]
    assert event["eventID"].startswith("urn:scrapflow:event:")
    return seq


def lot(code: str) -> str:
    return f"urn:scrapflow:lot:{code}"


def loc(facility_id: Any) -> str:
    return f"urn:scrapflow:loc:{facility_id}"


def quantities(items: list[Json]) -> dict[str, float]:
    assert all(item["uom"] == "KGM" for item in items), items
    return {item["epcClass"]: item["quantity"] for item in items}


def kg(value: Any) -> float:
    """A mass as the API states it, in kilograms (grams / 1000, exact)."""
    return float(Decimal(str(value)))


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def page(
    sc: Scenario, validator: Draft7Validator, who: str, url: str | None = None, **params: Any
) -> httpx.Response:
    headers = sc.principal(who).headers
    response = await (
        sc.client.get(url, headers=headers)
        if url
        else sc.client.get("/api/v1/epcis/events", params=params, headers=headers)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/ld+json"
    assert response.headers["gs1-epcis-version"] == "2.0.0"
    document = response.json()
    assert problems(validator, document) == []
    assert document["type"] == "EPCISQueryDocument"
    assert document["@context"][0] == (
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
    )
    return response


async def everything(
    sc: Scenario, validator: Draft7Validator, who: str, *, limit: int = 500, **params: Any
) -> tuple[list[Json], int]:
    """Every event over every page (each page validated); and the number of pages."""
    events: list[Json] = []
    response = await page(sc, validator, who, limit=limit, **params)
    pages = 1
    while True:
        events.extend(event_list(response.json()))
        if "next" not in response.links:
            assert "next-cursor" not in response.headers
            return events, pages
        assert response.links["next"]["url"].endswith(f"cursor={response.headers['next-cursor']}")
        response = await page(sc, validator, who, url=response.links["next"]["url"])
        pages += 1
        assert pages < 1000


async def audit_seqs(sc: Scenario, who: str) -> dict[int, str]:
    """seq → type of every sealed log event the caller sees in the audit trail."""
    seen: dict[int, str] = {}
    params: dict[str, Any] = {"limit": 500}
    while True:
        response = await sc.client.get(
            "/api/v1/audit/events", params=params, headers=sc.principal(who).headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        seen |= {item["seq"]: item["type"] for item in body["items"]}
        if body["next_cursor"] is None:
            return seen
        params["cursor"] = body["next_cursor"]


def one(events: list[Json], **fields: Any) -> Json:
    found = [e for e in events if all(e.get(k) == v for k, v in fields.items())]
    assert len(found) == 1, (fields, found)
    return found[0]


def with_lot(events: list[Json], code: str, **fields: Any) -> list[Json]:
    return [
        e
        for e in events
        if all(e.get(k) == v for k, v in fields.items())
        and lot(code)
        in {
            q["epcClass"]
            for key in ("quantityList", "inputQuantityList", "outputQuantityList")
            for q in e.get(key, [])
        }
    ]


@pytest.fixture(scope="module")
async def admin_view(scenario: Scenario, validator: Draft7Validator) -> list[Json]:
    events, _ = await everything(scenario, validator, "admin")
    return events


# --- the acceptance: every document validates -------------------------------------------------


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_every_document_validates_against_the_gs1_schema(
    scenario: Scenario, validator: Draft7Validator, who: str
) -> None:
    """Every page every caller gets, at several page sizes and with each filter, is valid (the
    checks are in `page`)."""
    whole, _ = await everything(scenario, validator, who)
    for limit in (1, 3):
        paged, _ = await everything(scenario, validator, who, limit=limit)
        assert paged == whole
    for kind in ("ObjectEvent", "TransformationEvent"):
        await everything(scenario, validator, who, eventType=kind)


async def test_the_scenario_has_every_kind_of_event(admin_view: list[Json]) -> None:
    steps = {e.get("bizStep") for e in admin_view}
    assert steps == {
        "commissioning",
        "shipping",
        "receiving",
        "accepting",
        "inspecting",
        "void_shipping",
        CERTIFYING,
        REVOKING,
    }
    assert {e["type"] for e in admin_view} == {"ObjectEvent", "TransformationEvent"}
    assert any("errorDeclaration" in e for e in admin_view)
    assert any("certificationInfo" in e for e in admin_view if e.get("bizStep") == "shipping")
    assert {e["action"] for e in admin_view if e["type"] == "ObjectEvent"} == {"ADD", "OBSERVE"}


# --- the mapping ------------------------------------------------------------------------------


async def test_a_registration_is_commissioning(scenario: Scenario, admin_view: list[Json]) -> None:
    l1 = scenario.lots["L1"]
    (event,) = with_lot(admin_view, l1["code"], action="ADD")
    assert event["type"] == "ObjectEvent"
    assert event["bizStep"] == "commissioning"
    assert event["disposition"] == "active"
    assert quantities(event["quantityList"]) == {lot(l1["code"]): 603.0}
    point = loc(scenario.world.facility_a)
    assert event["readPoint"] == event["bizLocation"] == {"id": point}
    recycler = f"urn:scrapflow:party:uscc:{scenario.uscc[scenario.world.enterprise_a]}"
    assert event["destinationList"] == [
        {"type": "owning_party", "destination": recycler},
        {"type": "possessing_party", "destination": recycler},
    ]
    assert event["ilmd"]["scrapflow:metal"] == "aluminium"
    assert event["ilmd"]["scrapflow:category"] == "GB13586-WROUGHT"
    assert event["ilmd"]["scrapflow:postConsumerKg"] == 603.0
    assert moment(event["ilmd"]["scrapflow:collectedAt"]) == moment("2026-11-20T08:00:00+08:00")
    assert event["eventTimeZoneOffset"] == "+08:00"
    assert event["eventTime"].endswith("+08:00")
    # Every registration is there, and nothing of the seller.
    for name in ("L1", "L2", "L3", "L4"):
        code = scenario.lots[name]["code"]
        (registered,) = with_lot(admin_view, code, action="ADD")
        assert quantities(registered["quantityList"]) == {
            lot(code): kg(scenario.lots[name]["net_kg"])
        }
    assert "王小明" not in str(admin_view)


async def test_a_split_is_a_transformation(scenario: Scenario, admin_view: list[Json]) -> None:
    parent = scenario.lots["L4"]["code"]
    (event,) = with_lot(admin_view, parent, type="TransformationEvent")
    assert quantities(event["inputQuantityList"]) == {lot(parent): 120.0}
    assert quantities(event["outputQuantityList"]) == {
        lot(part["code"]): kg(part["net_kg"]) for part in scenario.split_parts
    }
    assert sorted(quantities(event["outputQuantityList"]).values()) == [50.0, 70.0]
    assert event["bizStep"] == "commissioning"
    assert event["readPoint"] == {"id": loc(scenario.world.facility_a)}


async def test_dispatch_and_receipt(scenario: Scenario, admin_view: list[Json]) -> None:
    sc, w = scenario, scenario.world
    l1, l2 = sc.lots["L1"]["code"], sc.lots["L2"]["code"]
    shipment = f"urn:scrapflow:shipment:{sc.shipments['first']['id']}"
    about = [
        e
        for e in admin_view
        if {"type": "desadv", "bizTransaction": shipment} in e.get("bizTransactionList", [])
    ]
    assert [e["bizStep"] for e in about] == ["shipping", "receiving", "accepting", "inspecting"]
    shipping, receiving, accepting, inspecting = about
    recycler = f"urn:scrapflow:party:uscc:{sc.uscc[w.enterprise_a]}"
    pretreater = f"urn:scrapflow:party:uscc:{sc.uscc[w.enterprise_b]}"
    point, centre = loc(w.facility_a), loc(sc.centre)
    sources = [
        {"type": "location", "source": point},
        {"type": "owning_party", "source": recycler},
        {"type": "possessing_party", "source": recycler},
    ]
    destinations = [
        {"type": "location", "destination": centre},
        {"type": "owning_party", "destination": pretreater},
        {"type": "possessing_party", "destination": pretreater},
    ]

    assert shipping["action"] == "OBSERVE"
    assert shipping["disposition"] == "in_transit"
    assert quantities(shipping["quantityList"]) == {lot(l1): 603.0, lot(l2): 410.0}
    assert shipping["readPoint"] == {"id": point}
    assert shipping["sourceList"] == sources
    assert shipping["destinationList"] == destinations
    assert shipping["scrapflow:vehicleEnergy"] == "diesel"
    assert shipping["scrapflow:distanceKm"] == 120.0

    # Weighed: 590 and 410 kg; accepted 590 and 400 kg; 10 kg of L2 refused as wet, a lot of
    # its own back in the recycler's custody.
    assert receiving["action"] == accepting["action"] == inspecting["action"] == "OBSERVE"
    assert quantities(receiving["quantityList"]) == {lot(l1): 590.0, lot(l2): 410.0}
    assert quantities(accepting["quantityList"]) == {lot(l1): 590.0, lot(l2): 400.0}
    for event in (receiving, accepting):
        assert event["readPoint"] == event["bizLocation"] == {"id": centre}
        assert event["sourceList"] == sources
        assert event["destinationList"] == destinations
        assert "disposition" not in event
    refused = sc.refused_part["code"]
    assert sc.refused_part["net_kg"] == 10
    assert inspecting["disposition"] == "non_conformant"
    assert quantities(inspecting["quantityList"]) == {lot(refused): 10.0}
    assert inspecting["scrapflow:refusals"] == [
        {"scrapflow:lot": lot(refused), "scrapflow:refusedKg": 10.0, "scrapflow:reason": "wet"}
    ]
    assert inspecting["readPoint"] == {"id": centre}
    # One log event, three EPCIS events: one time, distinct ids.
    seq = seq_of(receiving)
    assert [receiving["eventID"], accepting["eventID"], inspecting["eventID"]] == [
        f"urn:scrapflow:event:{seq}",
        f"urn:scrapflow:event:{seq}:accepting",
        f"urn:scrapflow:event:{seq}:inspecting",
    ]
    assert receiving["eventTime"] == accepting["eventTime"] == inspecting["eventTime"]
    received_at = moment(sc.shipments["first_received"]["received_at"])
    assert abs(moment(receiving["eventTime"]) - received_at) < timedelta(milliseconds=1)
    assert len({e["eventID"] for e in admin_view}) == len(admin_view) - 1  # but the voided run's


async def test_a_cancelled_shipment_is_void_shipping(
    scenario: Scenario, admin_view: list[Json]
) -> None:
    shipment = f"urn:scrapflow:shipment:{scenario.shipments['called_back']['id']}"
    about = [
        e
        for e in admin_view
        if {"type": "desadv", "bizTransaction": shipment} in e.get("bizTransactionList", [])
    ]
    assert [e["bizStep"] for e in about] == ["shipping", "void_shipping"]
    void = about[1]
    assert void["action"] == "OBSERVE"
    assert quantities(void["quantityList"]) == {lot(scenario.lots["L3"]["code"]): 50.0}
    assert void["readPoint"] == {"id": loc(scenario.world.facility_a)}
    assert void["scrapflow:reason"] == "truck broke down"


async def test_runs_are_transformations_in_kilograms(
    scenario: Scenario, admin_view: list[Json]
) -> None:
    sc = scenario
    shredding, melting = sc.runs["shredding"], sc.runs["melting"]
    shreds, ingot = shredding["outputs"][0], melting["outputs"][0]

    event = one(admin_view, transformationID=f"urn:scrapflow:transformation:{shredding['id']}")
    assert event["type"] == "TransformationEvent"
    assert event["bizStep"] == "commissioning"
    assert quantities(event["inputQuantityList"]) == {
        lot(sc.lots["L1"]["code"]): 590.0,
        lot(sc.lots["L2"]["code"]): 400.0,
    }
    assert quantities(event["outputQuantityList"]) == {lot(shreds["code"]): kg(shreds["net_kg"])}
    assert kg(shreds["net_kg"]) == 940.0
    assert event["readPoint"] == event["bizLocation"] == {"id": loc(sc.centre)}
    assert event["scrapflow:process"] == "shredding"
    assert event["scrapflow:losses"] == [
        {"scrapflow:kind": "non_metallic_residue", "scrapflow:kg": 50.0}
    ]
    # eventTime is when the run ended; recordTime when it was recorded.
    ended = moment(shredding["ended_at"])
    assert abs(moment(event["eventTime"]) - ended) < timedelta(milliseconds=1)
    assert moment(event["recordTime"]) > ended

    event = one(admin_view, transformationID=f"urn:scrapflow:transformation:{melting['id']}")
    assert quantities(event["inputQuantityList"]) == {
        lot(shreds["code"]): 840.0,
        "urn:scrapflow:primary:aluminium": 150.0,
    }
    assert quantities(event["outputQuantityList"]) == {lot(ingot["code"]): kg(ingot["net_kg"])}
    assert kg(ingot["net_kg"]) == 970.0
    assert event["readPoint"] == {"id": loc(sc.smelter)}
    assert event["scrapflow:losses"] == [{"scrapflow:kind": "dross", "scrapflow:kg": 20.0}]
    # Mass balance holds in the document: 840 + 150 = 970 + 20.
    assert sum(q["quantity"] for q in event["inputQuantityList"]) == 990.0

    # Every quantity anywhere is a whole number of grams, in kilograms.
    for e in admin_view:
        for key in ("quantityList", "inputQuantityList", "outputQuantityList"):
            for q in e.get(key, []):
                assert q["uom"] == "KGM"
                assert Decimal(str(q["quantity"])) * 1000 % 1 == 0


async def test_a_voided_run_is_declared_an_error(
    scenario: Scenario, admin_view: list[Json]
) -> None:
    run = scenario.runs["voided"]
    both = [
        e
        for e in admin_view
        if e.get("transformationID") == f"urn:scrapflow:transformation:{run['id']}"
    ]
    recorded, declared = both
    assert recorded["eventID"] == declared["eventID"] == f"urn:scrapflow:event:{seq_of(recorded)}"
    assert seq_of(declared) > seq_of(recorded)  # the void's own log event
    assert "errorDeclaration" not in recorded
    assert declared["errorDeclaration"]["reason"] == "did_not_occur"
    assert declared["errorDeclaration"]["scrapflow:reason"] == "wrong furnace"
    assert declared["errorDeclaration"]["declarationTime"] == declared["recordTime"]
    assert moment(declared["recordTime"]) > moment(recorded["recordTime"])
    # The same event otherwise: what it claimed, and when (ten days ago).
    same = ("eventTime", "inputQuantityList", "outputQuantityList", "readPoint", "bizStep")
    assert {k: recorded[k] for k in same} == {k: declared[k] for k in same}
    ended = moment(run["ended_at"])
    assert abs(moment(declared["eventTime"]) - ended) < timedelta(milliseconds=1)
    assert moment(declared["eventTime"]) < scenario.now - timedelta(days=9)


async def test_certificates(scenario: Scenario, admin_view: list[Json]) -> None:
    sc = scenario
    ingot = sc.runs["melting"]["outputs"][0]
    url = sc.certificate["verification_url"]
    issuer = f"urn:scrapflow:party:uscc:{sc.uscc[sc.s]}"
    recipient = f"urn:scrapflow:party:uscc:{sc.uscc[sc.m]}"

    issued = one(admin_view, bizStep=CERTIFYING)
    assert issued["type"] == "ObjectEvent"
    assert issued["action"] == "OBSERVE"
    assert issued["certificationInfo"] == [url]
    assert quantities(issued["quantityList"]) == {lot(ingot["code"]): 970.0}
    assert issued["scrapflow:certificateNumber"] == sc.certificate["number"]
    assert issued["scrapflow:issuer"] == issuer
    assert issued["scrapflow:recipient"] == recipient
    assert issued["scrapflow:method"] == "proportional"
    claimed = sc.certificate["claimed"]
    assert issued["scrapflow:claimedPostConsumerKg"] == kg(claimed["post_consumer_kg"])
    assert issued["scrapflow:claimedPreConsumerKg"] == kg(claimed["pre_consumer_kg"])

    revoked = one(admin_view, bizStep=REVOKING)
    assert revoked["certificationInfo"] == [url]
    assert revoked["scrapflow:reason"] == "claim recomputed"
    assert seq_of(revoked) > seq_of(issued)

    # The ingot's later dispatch to the recipient and its receipt carry the certificate (valid
    # then, revoked since); the run that made the ingot came before it.
    about_ingot = with_lot(admin_view, ingot["code"])
    carrying = [e["bizStep"] for e in about_ingot if e.get("certificationInfo") == [url]]
    assert carrying == [CERTIFYING, "shipping", "receiving", "accepting", REVOKING]
    (made,) = [e for e in about_ingot if e["type"] == "TransformationEvent"]
    assert "certificationInfo" not in made
    assert all(url not in str(e) for e in admin_view if seq_of(e) < seq_of(issued))


# --- who sees what ----------------------------------------------------------------------------


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_everyone_sees_exactly_their_audit_events_with_an_epcis_meaning(
    scenario: Scenario, validator: Draft7Validator, who: str
) -> None:
    events, _ = await everything(scenario, validator, who)
    seen = await audit_seqs(scenario, who)
    assert {seq_of(e) for e in events} == {s for s, t in seen.items() if t in MAPPED}
    assert [seq_of(e) for e in events] == sorted(seq_of(e) for e in events)


async def test_a_foreign_enterprise_sees_nothing(
    scenario: Scenario, validator: Draft7Validator
) -> None:
    events, _ = await everything(scenario, validator, "C")
    assert events == []


async def test_parties_see_their_own_part(
    scenario: Scenario, validator: Draft7Validator, admin_view: list[Json]
) -> None:
    sc = scenario
    by = {who: (await everything(sc, validator, who))[0] for who in ("R", "P", "S", "M")}
    l1, ingot = sc.lots["L1"]["code"], sc.runs["melting"]["outputs"][0]["code"]
    # R: its registrations, split, shipments, the receipt of them; nobody else's runs.
    assert with_lot(by["R"], l1, action="ADD")
    assert not [e for e in by["R"] if e.get("scrapflow:process")]
    assert not with_lot(by["R"], ingot)
    # P: what it received and did; not R's registrations, not S's melting or certificates.
    assert not [e for e in by["P"] if e.get("action") == "ADD"]
    assert {e.get("scrapflow:process") for e in by["P"]} == {None, "shredding"}
    assert not [e for e in by["P"] if e.get("bizStep") in (CERTIFYING, REVOKING)]
    # S: the shreds it received, its runs, the certificate; M: the ingot and its certificate.
    assert {e.get("scrapflow:process") for e in by["S"]} == {None, "melting"}
    assert [e["bizStep"] for e in by["M"]] == [
        CERTIFYING, "shipping", "receiving", "accepting", REVOKING,
    ]  # fmt: skip
    # Nobody but the admin sees all of it.
    assert all(len(events) < len(admin_view) for events in by.values())


async def test_authorities_see_their_jurisdiction(
    scenario: Scenario, validator: Draft7Validator, admin_view: list[Json]
) -> None:
    province, _ = await everything(scenario, validator, "province")
    assert province == admin_view  # everything here is in Guizhou (52)
    guiyang, _ = await everything(scenario, validator, "guiyang")  # 5201: R's collection point
    zunyi, _ = await everything(scenario, validator, "zunyi")  # 5203: P's centre
    assert with_lot(guiyang, scenario.lots["L1"]["code"], action="ADD")
    assert not with_lot(zunyi, scenario.lots["L1"]["code"], action="ADD")
    assert not [e for e in guiyang if e.get("scrapflow:process")]
    assert {e.get("scrapflow:process") for e in zunyi} == {None, "shredding"}


# --- paging and filters -----------------------------------------------------------------------


async def test_keyset_paging_over_seq(scenario: Scenario, validator: Draft7Validator) -> None:
    whole, pages = await everything(scenario, validator, "R")
    assert pages == 1
    paged, pages = await everything(scenario, validator, "R", limit=2)
    assert paged == whole
    seqs = sorted({seq_of(e) for e in whole})
    assert pages == -(-len(seqs) // 2)
    # A page holds `limit` log events: a receipt's three EPCIS events are never split apart.
    first = await page(scenario, validator, "R", limit=2)
    assert {seq_of(e) for e in event_list(first.json())} == set(seqs[:2])
    assert first.headers["next-cursor"] == str(seqs[1])
    # `after_seq` and `cursor` continue the same way.
    for params in ({"after_seq": seqs[2]}, {"cursor": str(seqs[2])}):
        rest = await page(scenario, validator, "R", **params)
        assert event_list(rest.json()) == [e for e in whole if seq_of(e) > seqs[2]]
    last = await page(scenario, validator, "R", after_seq=seqs[-1])
    assert event_list(last.json()) == []
    assert "link" not in last.headers


async def test_filter_by_event_type(
    scenario: Scenario, validator: Draft7Validator, admin_view: list[Json]
) -> None:
    for kind in ("ObjectEvent", "TransformationEvent"):
        events, _ = await everything(scenario, validator, "admin", eventType=kind)
        assert events == [e for e in admin_view if e["type"] == kind]
        assert events
    both, _ = await everything(
        scenario, validator, "admin", eventType=["ObjectEvent", "TransformationEvent"]
    )
    assert both == admin_view


def _window(events: list[Json], key: str, low: datetime, high: datetime) -> list[Json]:
    return [e for e in events if low <= moment(e[key]) < high]


async def test_filter_by_event_time(
    scenario: Scenario, validator: Draft7Validator, admin_view: list[Json]
) -> None:
    sc = scenario
    # Ten days ago: only the voided run, recorded and declared an error (its eventTime is the
    # run's end, taken from the recorded event).
    low, high = sc.now - timedelta(days=10, hours=1), sc.now - timedelta(days=9)
    events, _ = await everything(
        sc, validator, "admin", GE_eventTime=low.isoformat(), LT_eventTime=high.isoformat()
    )
    run = f"urn:scrapflow:transformation:{sc.runs['voided']['id']}"
    assert [e.get("transformationID") for e in events] == [run, run]
    assert events == _window(admin_view, "eventTime", low, high)
    # Two to half an hour ago: the melting only (shredding ended two hours ago, everything else
    # happened just now).
    low, high = sc.now - timedelta(hours=1, minutes=30), sc.now - timedelta(minutes=30)
    events, _ = await everything(
        sc, validator, "admin", GE_eventTime=low.isoformat(), LT_eventTime=high.isoformat()
    )
    assert [e.get("scrapflow:process") for e in events] == ["melting"]
    # At every boundary between recorded times, the SQL filter agrees with the rendered times
    # (milliseconds, and a receipt's stated time).
    times = sorted({moment(e["eventTime"]) for e in admin_view})
    for low, high in ((times[3], times[-4]), (times[0], times[1]), (times[-2], times[-1])):
        events, _ = await everything(
            sc, validator, "admin", GE_eventTime=low.isoformat(), LT_eventTime=high.isoformat()
        )
        assert events == _window(admin_view, "eventTime", low, high)
        assert events
    after, _ = await everything(sc, validator, "admin", GE_eventTime=times[-1].isoformat())
    assert after == _window(admin_view, "eventTime", times[-1], times[-1] + timedelta(days=1))


async def test_filter_by_record_time(
    scenario: Scenario, validator: Draft7Validator, admin_view: list[Json]
) -> None:
    times = sorted({moment(e["recordTime"]) for e in admin_view})
    low, high = times[2], times[-3]
    events, _ = await everything(
        scenario,
        validator,
        "R",
        GE_recordTime=low.isoformat(),
        LT_recordTime=high.isoformat(),
    )
    r_view, _ = await everything(scenario, validator, "R")
    assert events == _window(r_view, "recordTime", low, high)
    assert events


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        (
            {"GE_eventTime": "2026-11-21T00:00:00+08:00", "LT_eventTime": "2026-11-20T00:00:00Z"},
            "/LT_eventTime",
        ),
        (
            {"GE_recordTime": "2026-11-21T00:00:00Z", "LT_recordTime": "2026-11-21T00:00:00Z"},
            "/LT_recordTime",
        ),
        ({"GE_eventTime": "2026-11-21T00:00:00"}, "/GE_eventTime"),
        ({"eventType": "AggregationEvent"}, "/eventType/0"),
        ({"cursor": "abc"}, "/cursor"),
        ({"limit": 0}, "/limit"),
        ({"limit": 501}, "/limit"),
    ],
)
async def test_bad_queries_are_422(
    scenario: Scenario, params: dict[str, Any], pointer: str
) -> None:
    response = await scenario.epcis(scenario.world.admin, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert pointer in [error["pointer"] for error in response.json()["errors"]]


async def test_without_credentials_401(scenario: Scenario) -> None:
    response = await scenario.epcis(None)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_page_takes_a_fixed_number_of_queries(
    scenario: Scenario, validator: Draft7Validator
) -> None:
    """What events refer to is loaded for the whole page at once: a page of every event takes
    no more statements than a page of one."""
    engine = scenario.app.state.engine.sync_engine
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_key" not in statement:  # the caller's credentials, when the 5 s cache expired
            statements.append(statement)

    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        sizes = {}
        for limit in (1, 500):
            statements.clear()
            await page(scenario, validator, "admin", limit=limit)
            sizes[limit] = len(statements)
        # The first page of one (a registration) needs fewer facts than a page of everything.
        statements.clear()
        await page(scenario, validator, "admin", limit=500)
        assert len(statements) == sizes[500]
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert sizes[500] <= 12, statements
    assert sizes[500] - sizes[1] <= 5
