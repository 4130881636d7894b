"""Every rule of a process run over HTTP (DESIGN §2.4-§2.5): what is refused and with which problem,
that a refused run changes nothing, partial inputs, the loss flag, void, reads, idempotency and
lineage through splits and refusals."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM
from domain.registry import service as registry
from tests.conftest import Json
from tests.custody.conftest import (
    CU_SCRAP,
    END,
    START,
    Plant,
    assert_problem,
    at_centre,
    composition_g,
    counts,
    dispatch,
    get_lot,
    grams,
    pointers,
    run,
    scrap,
    take,
    to_smelter,
    void,
)


async def lineage(
    plant: Plant, lot_id: str, headers: dict[str, str], **params: Any
) -> httpx.Response:
    return await plant.client.get(f"/api/v1/lots/{lot_id}/lineage", params=params, headers=headers)


# --- balance ----------------------------------------------------------------------------------


async def test_an_unbalanced_run_is_refused_naming_both_sums_and_changes_nothing(
    plant: Plant, session: AsyncSession
) -> None:
    (lot,) = await at_centre(plant, 100)
    before = await counts(session)
    refused = await run(
        plant,
        process="sorting",
        inputs=[take(lot, 60)],
        outputs=[scrap(50.5)],
        losses=[{"kind": "dust", "kg": 9}],
    )
    body = assert_problem(refused, 422, "mass_unbalanced")
    assert "60000 g" in body["detail"] and "59500 g" in body["detail"], body["detail"]
    assert await counts(session) == before
    after = await get_lot(plant, lot["id"])
    assert (after["net_kg"], after["status"], after["version"]) == (
        lot["net_kg"],
        lot["status"],
        lot["version"],
    )
    assert after["composition"] == lot["composition"]


async def test_primary_inputs_count_in_the_balance(plant: Plant) -> None:
    (lot,) = await to_smelter(plant, await at_centre(plant, 100))
    product = {"kind": "product", "metal": "aluminium", "kg": 120, "product_form": "ingot"}
    primary = [{"metal": "aluminium", "kg": 25, "description": "AL99.70"}]
    unbalanced = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(lot)],
        primary_inputs=primary,
        outputs=[product],
    )
    body = assert_problem(unbalanced, 422, "mass_unbalanced")
    assert "125000 g" in body["detail"] and "120000 g" in body["detail"], body["detail"]
    balanced = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(lot)],
        primary_inputs=primary,
        outputs=[product],
        losses=[{"kind": "dross", "kg": 5}],
    )
    assert balanced.status_code == 201, balanced.text
    (out,) = balanced.json()["outputs"]
    assert composition_g(out) == (100_000 * 120 // 125, 0, 25_000 * 120 // 125)


# --- inputs -----------------------------------------------------------------------------------


async def test_a_lot_of_another_enterprise_is_not_found(
    plant: Plant, session: AsyncSession
) -> None:
    foreign = await plant.custody.register(100)  # A's, at A's collection point
    before = await counts(session)
    refused = await run(plant, process="sorting", inputs=[take(foreign)], outputs=[scrap(100)])
    assert_problem(refused, 404, "not_found")
    assert await counts(session) == before


async def test_a_lot_held_elsewhere_or_in_transit_is_not_available(plant: Plant) -> None:
    elsewhere, travelling = await at_centre(plant, 100, 50)
    (elsewhere,) = await to_smelter(plant, [elsewhere])  # B's own, but at B's smelter
    refused = await run(plant, process="sorting", inputs=[take(elsewhere)], outputs=[scrap(100)])
    assert_problem(refused, 409, "lot_not_available")
    assert pointers(refused) == ["/inputs/0/lot_id"]

    assert (await dispatch(plant, [travelling["id"]], plant.smelter)).status_code == 201
    for facility in (plant.centre, plant.smelter):  # neither the sender nor the receiver holds it
        body: dict[str, Any] = {"process": "sorting", "outputs": [scrap(50)]}
        if facility == plant.smelter:
            body = {"process": "casting", "outputs": [_product(50, form="ingot")]}
        refused = await run(plant, facility_id=facility, inputs=[take(travelling)], **body)
        assert_problem(refused, 409, "lot_not_available")


async def test_taking_more_than_the_lot_holds_is_refused(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant, process="sorting", inputs=[take(lot, 100.001)], outputs=[scrap(100.001)]
    )
    assert_problem(refused, 422)
    assert pointers(refused) == ["/inputs/0/kg"]


async def test_the_same_lot_twice_is_refused(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant, process="sorting", inputs=[take(lot, 40), take(lot, 40)], outputs=[scrap(80)]
    )
    assert_problem(refused, 422)
    assert "/inputs/1/lot_id" in pointers(refused)


# --- processes and outputs --------------------------------------------------------------------


def _product(kg: float, metal: str = "aluminium", form: str = "molten", **extra: Any) -> Json:
    return {"kind": "product", "metal": metal, "kg": kg, "product_form": form, **extra}


async def test_each_facility_kind_runs_only_its_processes(
    plant: Plant, session: AsyncSession
) -> None:
    world = plant.world
    warehouse = await registry.create_facility(
        session,
        SYSTEM,
        enterprise_id=world.enterprise_b,
        name="B warehouse",
        kind="warehouse",
        region_code="520302",
        address="Zunyi",
    )
    await session.commit()
    (lot,) = await at_centre(plant, 100)
    before = await counts(session)
    melting_at_centre = await run(
        plant,
        process="melting",
        inputs=[take(lot)],
        outputs=[_product(100, destination_use="direct_alloying")],
    )
    assert_problem(melting_at_centre, 422, "process_not_allowed")
    assert pointers(melting_at_centre) == ["/process"]
    shredding_at_smelter = await run(
        plant, facility_id=plant.smelter, process="shredding", inputs=[take(lot)],
        outputs=[scrap(100)],
    )  # fmt: skip
    assert_problem(shredding_at_smelter, 422, "process_not_allowed")
    for process in ("sorting", "baling", "melting", "casting"):
        at_warehouse = await run(
            plant,
            facility_id=str(warehouse.id),
            process=process,
            inputs=[take(lot)],
            outputs=[scrap(100)],
        )
        assert_problem(at_warehouse, 422, "process_not_allowed")
    assert await counts(session) == before


async def test_shredding_makes_no_products(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant, process="shredding", inputs=[take(lot)], outputs=[_product(100, form="ingot")]
    )
    assert_problem(refused, 422)
    assert "/outputs/0/kind" in pointers(refused)


async def test_primary_inputs_belong_to_smelting(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant,
        process="bulking",
        inputs=[take(lot)],
        primary_inputs=[{"metal": "aluminium", "kg": 10, "description": "AL99.70"}],
        outputs=[scrap(110)],
    )
    assert_problem(refused, 422)
    assert pointers(refused) == ["/primary_inputs"]


async def test_molten_aluminium_states_its_destination_use_molten_copper_need_not(
    plant: Plant, session: AsyncSession
) -> None:
    aluminium, copper = await to_smelter(
        plant,
        await at_centre(plant, 100) + await at_centre(plant, 80, metal="copper", category=CU_SCRAP),
    )
    before = await counts(session)
    refused = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(aluminium)],
        outputs=[_product(100)],
    )
    assert_problem(refused, 422)
    assert pointers(refused) == ["/outputs/0/destination_use"]
    assert await counts(session) == before

    molten_copper = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(copper)],
        outputs=[_product(78, metal="copper")],
        losses=[{"kind": "dross", "kg": 2}],
    )
    assert molten_copper.status_code == 201, molten_copper.text
    (product,) = molten_copper.json()["outputs"]
    assert (product["metal"], product["kind"], product["product_form"]) == (
        "copper",
        "product",
        "molten",
    )
    stated = await run(
        plant,
        facility_id=plant.smelter,
        process="melting",
        inputs=[take(aluminium)],
        outputs=[_product(100, destination_use="casting")],
    )
    assert stated.status_code == 201, stated.text


@pytest.mark.parametrize(
    ("category", "reason"),
    [("GB13586-NOSUCH", "unknown scrap category"), (CU_SCRAP, "is copper scrap")],
)
async def test_a_scrap_output_needs_a_category_of_its_metal(
    plant: Plant, category: str, reason: str
) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant, process="sorting", inputs=[take(lot)], outputs=[scrap(100, category=category)]
    )
    assert_problem(refused, 422)
    assert pointers(refused) == ["/outputs/0/category"]
    assert reason in refused.json()["errors"][0]["detail"]


async def test_a_run_handles_one_metal(plant: Plant, session: AsyncSession) -> None:
    (copper,) = await at_centre(plant, 100, metal="copper", category=CU_SCRAP)
    before = await counts(session)
    refused = await run(plant, process="sorting", inputs=[take(copper)], outputs=[scrap(100)])
    assert_problem(refused, 422)
    assert pointers(refused) == ["/inputs/0/lot_id"]
    assert await counts(session) == before


async def test_a_run_cannot_end_before_it_starts(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant,
        process="sorting",
        inputs=[take(lot)],
        outputs=[scrap(100)],
        started_at=END,
        ended_at=START,
    )
    assert_problem(refused, 422)
    assert pointers(refused) == ["/ended_at"]


# --- who may record ---------------------------------------------------------------------------


async def test_a_viewer_cannot_record(plant: Plant, session: AsyncSession) -> None:
    lot = await plant.custody.register(100)  # at A's collection point, where pretreatment runs
    before = await counts(session)
    refused = await run(
        plant,
        plant.world.a_viewer.headers,
        facility_id=plant.custody.point_a,
        process="sorting",
        inputs=[take(lot)],
        outputs=[scrap(100)],
    )
    assert_problem(refused, 403)
    assert await counts(session) == before
    allowed = await run(
        plant,
        plant.world.a_operator.headers,
        facility_id=plant.custody.point_a,
        process="sorting",
        inputs=[take(lot)],
        outputs=[scrap(100)],
    )
    assert allowed.status_code == 201, allowed.text


async def test_another_enterprises_facility_is_not_found(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    refused = await run(
        plant,
        plant.world.a_admin.headers,
        process="sorting",
        inputs=[take(lot)],
        outputs=[scrap(100)],
    )
    assert_problem(refused, 404, "not_found")


async def test_a_suspended_facility_cannot_record(plant: Plant, session: AsyncSession) -> None:
    (lot,) = await at_centre(plant, 100)
    suspended = await plant.client.post(
        f"/api/v1/facilities/{plant.centre}/suspend",
        json={"reason": "permit expired"},
        headers=plant.world.province_supervisor.headers,
    )
    assert suspended.status_code == 200, suspended.text
    before = await counts(session)
    refused = await run(plant, process="sorting", inputs=[take(lot)], outputs=[scrap(100)])
    assert_problem(refused, 403, "facility_suspended")
    assert await counts(session) == before


# --- partial inputs and the loss flag ---------------------------------------------------------


async def test_a_partial_input_keeps_its_remaining_mass_and_composition_exactly(
    plant: Plant,
) -> None:
    (post,) = await at_centre(plant, 600.001)
    (pre,) = await at_centre(plant, 399.998, consumer_class="pre_consumer")
    # A first run pools the two into one lot of mixed composition.
    pooled = await run(
        plant,
        process="bulking",
        inputs=[take(post), take(pre)],
        outputs=[scrap(999.999)],
    )
    assert pooled.status_code == 201, pooled.text
    (mixed,) = pooled.json()["outputs"]
    assert composition_g(mixed) == (600_001, 399_998, 0)

    partial = await run(
        plant,
        process="sorting",
        inputs=[take(mixed, 333.333)],
        outputs=[scrap(300.007), scrap(30.001, category="GB13586-WROUGHT")],
        losses=[{"kind": "dust", "kg": 3.325}],
    )
    assert partial.status_code == 201, partial.text
    (taken,) = partial.json()["inputs"]
    taken_g = (
        grams(taken["post_consumer_kg"]),
        grams(taken["pre_consumer_kg"]),
        grams(taken["primary_kg"]),
    )
    assert sum(taken_g) == grams(taken["kg"]) == 333_333
    rest = await get_lot(plant, mixed["id"])
    assert rest["status"] == "active"
    assert grams(rest["net_kg"]) == 999_999 - 333_333
    rest_g = composition_g(rest)
    assert tuple(r + t for r, t in zip(rest_g, taken_g, strict=True)) == (600_001, 399_998, 0)
    # Each class is shared in proportion, within a gram.
    for part, whole in zip(taken_g, (600_001, 399_998, 0), strict=True):
        assert abs(part - whole * 333_333 / 999_999) < 1
    outputs_and_losses = [composition_g(o) for o in partial.json()["outputs"]] + [
        (
            grams(x["post_consumer_kg"]),
            grams(x["pre_consumer_kg"]),
            grams(x["primary_kg"]),
        )
        for x in partial.json()["losses"]
    ]
    assert tuple(map(sum, zip(*outputs_and_losses, strict=True))) == taken_g


@pytest.mark.parametrize(
    ("loss_kg", "flagged"),
    [(4, True), (3.001, True), (3, False), (1, False)],
)
async def test_a_loss_above_the_process_threshold_is_accepted_and_flagged(
    plant: Plant, loss_kg: float, flagged: bool
) -> None:
    (lot,) = await at_centre(plant, 100)  # shredding's threshold is 3 %
    response = await run(
        plant,
        process="shredding",
        inputs=[take(lot)],
        outputs=[scrap(float(Decimal(100) - Decimal(str(loss_kg))))],
        losses=[{"kind": "non_metallic_residue", "kg": loss_kg}],
    )
    assert response.status_code == 201, response.text
    assert response.json()["loss_flagged"] is flagged


# --- void -------------------------------------------------------------------------------------


async def _shred(plant: Plant, inputs: list[Json], out_kg: float, loss_kg: float) -> Json:
    response = await run(
        plant,
        process="shredding",
        inputs=inputs,
        outputs=[scrap(out_kg)],
        losses=[{"kind": "non_metallic_residue", "kg": loss_kg}],
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_void_restores_the_inputs_to_the_gram_and_voids_the_outputs(
    plant: Plant, session: AsyncSession
) -> None:
    whole, part = await at_centre(plant, 123.457, 500)
    recorded = await _shred(plant, [take(whole), take(part, 200.001)], 320, 3.458)
    (output,) = recorded["outputs"]

    voided = await void(plant, recorded["id"])
    assert voided.status_code == 200, voided.text
    body = voided.json()
    assert body["status"] == "voided" and body["void_reason"] == "wrong furnace"
    assert body["voided_at"] is not None
    for before in (whole, part):
        after = await get_lot(plant, before["id"])
        assert after["status"] == "active"
        assert after["net_kg"] == before["net_kg"]
        assert after["composition"] == before["composition"]
        history = await plant.client.get(f"/api/v1/lots/{before['id']}/history", headers=plant.b)
        assert history.status_code == 200, history.text
        events = [e for e in history.json() if e["type"] == "transformation.voided"]
        assert len(events) == 1 and events[0]["payload"]["reason"] == "wrong furnace"
        assert events[0]["subject_id"] == recorded["id"]
    assert (await get_lot(plant, output["id"]))["status"] == "voided"
    read = await plant.client.get(f"/api/v1/transformations/{recorded['id']}", headers=plant.b)
    assert read.json()["status"] == "voided"
    # The restored inputs can run again.
    again = await _shred(plant, [take(whole)], 123, 0.457)
    assert again["status"] == "recorded"
    held = await session.scalar(
        text("SELECT status FROM lot WHERE id = :i"), {"i": uuid.UUID(whole["id"])}
    )
    assert held == "consumed"


async def test_void_after_an_output_moved_is_refused(plant: Plant, session: AsyncSession) -> None:
    (lot,) = await at_centre(plant, 100)
    recorded = await _shred(plant, [take(lot)], 99, 1)
    (output,) = recorded["outputs"]
    assert (await dispatch(plant, [output["id"]], plant.smelter)).status_code == 201
    before = await counts(session)
    refused = await void(plant, recorded["id"])
    assert_problem(refused, 409, "outputs_moved")
    assert await counts(session) == before
    assert (await get_lot(plant, lot["id"]))["status"] == "consumed"


async def test_void_after_the_rest_of_an_input_was_shipped_is_refused(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    recorded = await _shred(plant, [take(lot, 40)], 39, 1)
    assert (await dispatch(plant, [lot["id"]], plant.smelter)).status_code == 201
    refused = await void(plant, recorded["id"])
    assert_problem(refused, 409, "outputs_moved")
    rest = await get_lot(plant, lot["id"])
    assert rest["net_kg"] == 60 and rest["status"] == "in_transit"


async def test_void_after_the_rest_of_an_input_was_used_by_a_later_run_is_refused(
    plant: Plant,
) -> None:
    """The later run consumed what the first left: the first cannot give back what it took
    without the lot's mass being counted twice (once in the later run's outputs)."""
    (lot,) = await at_centre(plant, 100)
    first = await _shred(plant, [take(lot, 40)], 39, 1)
    second = await _shred(plant, [take(lot, 60)], 59, 1)  # all that remains
    assert (await get_lot(plant, lot["id"]))["status"] == "consumed"
    refused = await void(plant, first["id"])
    assert_problem(refused, 409, "outputs_moved")
    after = await get_lot(plant, lot["id"])
    assert after["status"] == "consumed" and after["net_kg"] == 60
    # Undone in reverse order, both give back everything, to the gram.
    assert (await void(plant, second["id"])).status_code == 200
    assert (await void(plant, first["id"])).status_code == 200
    restored = await get_lot(plant, lot["id"])
    assert restored["status"] == "active" and restored["net_kg"] == 100
    assert restored["composition"] == lot["composition"]


async def test_void_twice_or_by_another_enterprise_is_refused(plant: Plant) -> None:
    (lot,) = await at_centre(plant, 100)
    recorded = await _shred(plant, [take(lot)], 99, 1)
    assert_problem(await void(plant, recorded["id"], plant.world.a_admin.headers), 404)
    assert_problem(await void(plant, recorded["id"], plant.c_admin.headers), 404)
    assert (await void(plant, recorded["id"])).status_code == 200
    assert_problem(await void(plant, recorded["id"]), 409)
    unknown = await void(plant, str(uuid.uuid4()))
    assert_problem(unknown, 404)


# --- reading a run ----------------------------------------------------------------------------


def _same_run(read: Json, recorded: Json) -> bool:
    """Equal, times compared as instants (the POST echoes the offset given, a read gives UTC)."""
    times = ("started_at", "ended_at")
    for name in times:
        if datetime.fromisoformat(read[name]) != datetime.fromisoformat(recorded[name]):
            return False
    return {k: v for k, v in read.items() if k not in times} == {
        k: v for k, v in recorded.items() if k not in times
    }


async def test_a_run_is_seen_by_its_enterprise_and_the_authorities_over_it(plant: Plant) -> None:
    world = plant.world
    (lot,) = await at_centre(plant, 100)
    recorded = await _shred(plant, [take(lot)], 99, 1)
    path = f"/api/v1/transformations/{recorded['id']}"
    for who in (world.b_admin, world.zunyi_supervisor, world.province_inspector):
        seen = await plant.client.get(path, headers=who.headers)
        assert seen.status_code == 200, (who.role, seen.text)
        assert _same_run(seen.json(), recorded)
    for who in (plant.c_admin, world.guiyang_supervisor):
        assert_problem(await plant.client.get(path, headers=who.headers), 404, "not_found")


# --- idempotency ------------------------------------------------------------------------------


async def test_retries_of_record_and_void_replay_and_create_nothing(
    plant: Plant, session: AsyncSession
) -> None:
    (lot,) = await at_centre(plant, 100)
    body = {
        "facility_id": plant.centre,
        "process": "baling",
        "started_at": START,
        "ended_at": END,
        "inputs": [take(lot, 50)],
        "outputs": [scrap(50)],
    }
    headers = {**plant.b, "Idempotency-Key": "bale-1"}
    first = await plant.client.post("/api/v1/transformations", json=body, headers=headers)
    assert first.status_code == 201, first.text
    before = await counts(session)
    again = await plant.client.post("/api/v1/transformations", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await counts(session) == before
    assert grams((await get_lot(plant, lot["id"]))["net_kg"]) == 50_000

    run_id = first.json()["id"]
    voided = await void(plant, run_id, **{"Idempotency-Key": "void-1"})
    assert voided.status_code == 200, voided.text
    before = await counts(session)
    replayed = await void(plant, run_id, **{"Idempotency-Key": "void-1"})
    assert replayed.status_code == 200, replayed.text
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == voided.json()
    assert await counts(session) == before
    assert grams((await get_lot(plant, lot["id"]))["net_kg"]) == 100_000


# --- lineage ----------------------------------------------------------------------------------


async def test_upstream_of_a_split_part_ends_at_the_parent_with_its_full_mass(
    plant: Plant,
) -> None:
    world = plant.world
    parent = await plant.custody.register(100)
    split = await plant.client.post(
        f"/api/v1/lots/{parent['id']}/split",
        json={"parts_kg": [60.25, 39.75]},
        headers=world.a_operator.headers,
    )
    assert split.status_code == 201, split.text
    child = split.json()["children"][0]
    upstream = await lineage(plant, child["id"], world.a_admin.headers, direction="upstream")
    assert upstream.status_code == 200, upstream.text
    tree = upstream.json()
    assert tree["complete"] is True and tree["primary_kg"] == 0
    assert [(r["lot_id"], r["end"], r["kg"], r["depth"]) for r in tree["lots"]] == [
        (parent["id"], True, 60.25, 1)
    ]
    assert tree["facilities"] == [{"facility_id": plant.custody.point_a, "kg": 60.25}]


async def test_downstream_of_a_source_reaches_the_part_refused_at_receipt(plant: Plant) -> None:
    world, custody = plant.world, plant.custody
    lot = await custody.register(100)
    shipped = await custody.ship([lot["id"]])
    received = await custody.receive(
        shipped.json()["id"],
        [{"lot_id": lot["id"], "received_kg": 100, "refused_kg": 30, "refusal_reason": "wet"}],
    )
    assert received.status_code == 201, received.text
    refused_id = received.json()["items"][0]["refused_lot_id"]
    downstream = await lineage(plant, lot["id"], world.a_admin.headers, direction="downstream")
    assert downstream.status_code == 200, downstream.text
    tree = downstream.json()
    reached = {r["lot_id"]: r for r in tree["lots"]}
    assert set(reached) == {refused_id}
    assert reached[refused_id]["kg"] == 30 and reached[refused_id]["status"] == "refused"
    assert reached[refused_id]["holder_facility_id"] == custody.point_a
    assert tree["complete"] is True
    upstream = await lineage(plant, refused_id, world.a_admin.headers, direction="upstream")
    assert [(r["lot_id"], r["kg"]) for r in upstream.json()["lots"]] == [(lot["id"], 30)]


async def test_max_depth_cuts_the_walk_and_says_so(plant: Plant) -> None:
    world = plant.world
    headers = world.a_operator.headers
    root = await plant.custody.register(100)
    first = await plant.client.post(
        f"/api/v1/lots/{root['id']}/split", json={"parts_kg": [70, 30]}, headers=headers
    )
    middle = first.json()["children"][0]
    second = await plant.client.post(
        f"/api/v1/lots/{middle['id']}/split", json={"parts_kg": [50, 20]}, headers=headers
    )
    leaf = second.json()["children"][1]
    cut = (await lineage(plant, leaf["id"], headers, direction="upstream", max_depth=1)).json()
    assert cut["complete"] is False
    assert [(r["lot_id"], r["end"], r["kg"]) for r in cut["lots"]] == [(middle["id"], True, 20)]
    whole = (await lineage(plant, leaf["id"], headers, direction="upstream", max_depth=2)).json()
    assert whole["complete"] is True
    ends = [(r["lot_id"], r["kg"]) for r in whole["lots"] if r["end"]]
    assert ends == [(root["id"], 20)]
    down = (await lineage(plant, root["id"], headers, direction="downstream", max_depth=1)).json()
    assert down["complete"] is False


async def test_lineage_of_a_lot_one_cannot_see_is_not_found(plant: Plant) -> None:
    lot = await plant.custody.register(100)
    for direction in ("upstream", "downstream"):
        hidden = await lineage(plant, lot["id"], plant.c_admin.headers, direction=direction)
        assert_problem(hidden, 404, "not_found")
    assert_problem(
        await lineage(plant, lot["id"], plant.world.zunyi_supervisor.headers), 404, "not_found"
    )
