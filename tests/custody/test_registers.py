"""Facility registers: every movement in and out, with the mass at the time, in three formats,
streamed; visible to the facility's enterprise and the authorities over it only."""

from __future__ import annotations

import csv
import io
import zipfile
from decimal import Decimal

import httpx
import pytest

from tests.custody.conftest import (
    Plant,
    assert_problem,
    at_centre,
    run,
    scrap,
    take,
    to_smelter,
)

PERIOD = {"from": "2026-01-01T00:00:00+08:00", "to": "2030-01-01T00:00:00+08:00"}


async def _register(
    plant: Plant, facility: str, headers: dict[str, str], **params: str
) -> httpx.Response:
    return await plant.client.get(
        f"/api/v1/facilities/{facility}/register",
        params={**PERIOD, **params},
        headers=headers,
    )


def _rows(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))


async def test_the_centre_registers_what_came_in_and_what_went_out(plant: Plant) -> None:
    lots = await at_centre(plant, 100, 50.5)
    shredded = await run(
        plant,
        process="shredding",
        inputs=[take(lots[0]), take(lots[1], 20.5)],
        outputs=[scrap(117)],
        losses=[{"kind": "non_metallic_residue", "kg": 3.5}],
    )
    assert shredded.status_code == 201, shredded.text
    output = shredded.json()["outputs"][0]
    await to_smelter(plant, [output])

    incoming = await _register(plant, plant.centre, plant.b, direction="incoming")
    assert incoming.status_code == 200, incoming.text
    assert incoming.headers["content-type"].startswith("text/csv")
    assert "attachment" in incoming.headers["content-disposition"]
    rows = _rows(incoming.content)
    received = {r["lot_code"]: r for r in rows if r["movement"] == "received"}
    assert {code: Decimal(r["kg"]) for code, r in received.items()} == {
        lots[0]["code"]: Decimal("100"),
        lots[1]["code"]: Decimal("50.5"),
    }
    assert {r["counterparty"] for r in received.values()} != {""}  # the sender's facility
    produced = [r for r in rows if r["movement"] == "produced"]
    assert [(r["lot_code"], Decimal(r["kg"])) for r in produced] == [
        (output["code"], Decimal("117"))
    ]
    assert produced[0]["transformation_id"] == shredded.json()["id"]

    outgoing = _rows((await _register(plant, plant.centre, plant.b, direction="outgoing")).content)
    consumed = sorted(
        (r["lot_code"], Decimal(r["kg"])) for r in outgoing if r["movement"] == "consumed"
    )
    assert consumed == sorted(
        [(lots[0]["code"], Decimal("100")), (lots[1]["code"], Decimal("20.5"))]
    )
    dispatched = [r for r in outgoing if r["movement"] == "dispatched"]
    assert [(r["lot_code"], Decimal(r["kg"])) for r in dispatched] == [
        (output["code"], Decimal("117"))
    ]
    assert [r["at"] for r in outgoing] == sorted(r["at"] for r in outgoing)


async def test_the_collection_point_registers_its_purchases(plant: Plant) -> None:
    custody = plant.custody
    lot = await custody.register(12.345)
    response = await _register(
        plant, custody.point_a, plant.world.a_viewer.headers, direction="incoming"
    )
    assert response.status_code == 200, response.text
    mine = [r for r in _rows(response.content) if r["lot_code"] == lot["code"]]
    assert len(mine) == 1
    assert mine[0]["movement"] == "registered"
    assert Decimal(mine[0]["kg"]) == Decimal("12.345")
    assert "王小明" not in response.text  # the seller appears masked only


async def test_json_and_xlsx_hold_the_same_rows(plant: Plant) -> None:
    await at_centre(plant, 10, 20)
    as_csv = _rows((await _register(plant, plant.centre, plant.b)).content)
    as_json = (await _register(plant, plant.centre, plant.b, format="json")).json()
    assert [r["lot_code"] for r in as_json] == [r["lot_code"] for r in as_csv]
    assert [Decimal(str(r["kg"])) for r in as_json] == [Decimal(r["kg"]) for r in as_csv]

    xlsx = await _register(plant, plant.centre, plant.b, format="xlsx")
    assert xlsx.status_code == 200
    with zipfile.ZipFile(io.BytesIO(xlsx.content)) as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
    assert sheet.count("<row ") == len(as_csv) + 1  # the header and every row
    assert "lot_code" in sheet or "lot_code" in book_strings(xlsx.content)


def book_strings(content: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(content)) as book:
        names = book.namelist()
        return book.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in names else ""


async def test_the_period_bounds_the_register(plant: Plant) -> None:
    await at_centre(plant, 10)
    response = await _register(
        plant,
        plant.centre,
        plant.b,
        **{"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"},
    )
    assert response.status_code == 200
    assert _rows(response.content) == []


@pytest.mark.parametrize("who", ["c_admin", "guiyang_supervisor"])
async def test_others_do_not_see_the_register(plant: Plant, who: str) -> None:
    headers = plant.c_admin.headers if who == "c_admin" else plant.world.guiyang_supervisor.headers
    assert_problem(await _register(plant, plant.centre, headers), 404)


async def test_the_authority_over_the_facility_reads_it(plant: Plant) -> None:
    await at_centre(plant, 10)
    response = await _register(plant, plant.centre, plant.world.zunyi_supervisor.headers)
    assert response.status_code == 200
    assert len(_rows(response.content)) >= 1


async def test_bad_parameters_are_422(plant: Plant) -> None:
    bad_period = await _register(
        plant,
        plant.centre,
        plant.b,
        **{"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
    )
    assert_problem(bad_period, 422)
    assert_problem(await _register(plant, plant.centre, plant.b, format="pdf"), 422)
    assert_problem(await _register(plant, plant.centre, plant.b, direction="sideways"), 422)


async def test_a_partly_refused_receipt_registers_what_was_accepted(plant: Plant) -> None:
    custody = plant.custody
    lots = [await custody.register(100), await custody.register(40)]
    shipped = await custody.ship([lot["id"] for lot in lots])
    assert shipped.status_code == 201, shipped.text
    received = await custody.receive(
        shipped.json()["id"],
        [
            {
                "lot_id": lots[0]["id"],
                "received_kg": 100,
                "refused_kg": 10,
                "refusal_reason": "wet",
            },
            {"lot_id": lots[1]["id"], "received_kg": 40},
        ],
    )
    assert received.status_code == 201, received.text
    assert received.json()["status"] == "partially_refused"
    rows = _rows((await _register(plant, plant.centre, plant.b)).content)
    accepted = {r["lot_code"]: Decimal(r["kg"]) for r in rows if r["movement"] == "received"}
    assert accepted == {lots[0]["code"]: Decimal(90), lots[1]["code"]: Decimal(40)}
