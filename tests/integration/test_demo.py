"""`scrapflow demo` on databases of its own: the network it builds, the flows it drives through
the services (every lot status, every leg, runs at every kind of facility, certificates), mass
and composition conserved to the gram, the regulators' reports with figures in them, and the
same data for the same seed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.demo import PREFECTURES, Result, run_demo
from domain.base import utcnow
from domain.reports import oversight
from integrations.database import create_engine, session_factory
from integrations.settings import Settings
from tests.databases import drop_database, in_thread, migrated_database

HELD = ["active", "in_transit", "refused"]


def _run(url: str, settings: Settings, lots: int, seed: int, workers: int) -> Result:
    results: list[Result] = []

    def go() -> None:
        results.append(
            asyncio.run(
                run_demo(
                    url, settings, lots_count=lots, seed=seed, workers=workers, echo=lambda _: None
                )
            )
        )

    in_thread(go)
    return results[0]


async def _query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            return list((await session.execute(text(sql), params)).all())
    finally:
        await engine.dispose()


def _rows(url: str, sql: str, **params: Any) -> list[Any]:
    found: list[list[Any]] = []
    in_thread(lambda: found.append(asyncio.run(_query(url, sql, **params))))
    return found[0]


def _scalar(url: str, sql: str, **params: Any) -> Any:
    return _rows(url, sql, **params)[0][0]


@pytest.fixture(scope="module")
def demo(settings: Settings) -> Iterator[tuple[str, Result]]:
    """600 lots in two lanes (separate processes), as `scrapflow demo` runs by default."""
    url = migrated_database("sf_test_demo")
    try:
        yield url, _run(url, settings, 600, seed=3, workers=2)
    finally:
        drop_database(url)


def test_network_covers_the_province(demo: tuple[str, Result]) -> None:
    url, _ = demo
    prefectures = {
        r[0]
        for r in _rows(
            url,
            "SELECT DISTINCT left(region_code, 4) FROM facility"
            " WHERE kind = 'collection_point' AND status = 'active'",
        )
    }
    assert set(PREFECTURES) <= prefectures
    kinds = dict(_rows(url, "SELECT kind, count(*) FROM facility GROUP BY 1"))
    assert kinds["pretreatment_center"] >= 5 and kinds["smelter"] >= 3
    assert kinds["processing_plant"] >= 3
    outside = {r[0] for r in _rows(url, "SELECT left(region_code, 2) FROM facility")} - {"52"}
    assert {"50", "44"} <= outside  # a Chongqing recycler, a Guangdong processor
    roles = {r[0] for r in _rows(url, "SELECT DISTINCT unnest(roles) FROM enterprise")}
    assert {"recycler", "pretreater", "smelter", "processor", "importer"} <= roles
    assert _scalar(url, "SELECT count(*) FROM authority WHERE jurisdiction = '52'") == 1
    # Every USCC passed the check character rule (the service checks it): all distinct.
    assert _scalar(url, "SELECT count(DISTINCT uscc) = count(*) FROM enterprise")


def test_every_status_and_every_leg(demo: tuple[str, Result]) -> None:
    url, result = demo
    statuses = {r[0] for r in _rows(url, "SELECT DISTINCT status FROM lot")}
    assert statuses == {"active", "in_transit", "consumed", "refused", "split", "voided"}
    assert _scalar(url, "SELECT count(*) FROM event WHERE type = 'lot.registered'") == 600
    shipment_statuses = {r[0] for r in _rows(url, "SELECT DISTINCT status FROM shipment")}
    assert {"dispatched", "received", "partially_refused"} <= shipment_statuses
    legs = {
        (a, b)
        for a, b in _rows(
            url,
            "SELECT DISTINCT f.kind, t.kind FROM shipment s JOIN facility f"
            " ON f.id = s.from_facility_id JOIN facility t ON t.id = s.to_facility_id",
        )
    }
    assert {
        ("collection_point", "pretreatment_center"),
        ("collection_point", "smelter"),  # imports go straight to the smelters
        ("pretreatment_center", "smelter"),
        ("smelter", "processing_plant"),
    } <= legs
    energies = {r[0] for r in _rows(url, "SELECT DISTINCT vehicle_energy FROM shipment")}
    assert {"diesel", "electric"} <= energies
    assert _scalar(url, "SELECT count(*) FROM shipment WHERE distance_km IS NULL") == 0
    assert _scalar(url, "SELECT count(*) FROM discrepancy") > 0
    reused = _scalar(
        url,
        "SELECT count(*) FROM (SELECT 1 FROM shipment WHERE weighbridge_ticket_no IS NOT NULL"
        " GROUP BY to_facility_id, weighbridge_ticket_no HAVING count(*) > 1) AS twice",
    )
    assert reused == 1  # the one staged for the anomaly report, whatever the lanes
    imports = _rows(
        url,
        "SELECT import_country, customs_declaration_no, conformity_standard FROM lot"
        " WHERE origin = 'import'",
    )
    assert imports and all(all(r) for r in imports)
    sellers = dict(
        _rows(url, "SELECT seller_kind, count(*) FROM lot WHERE seller_kind IS NOT NULL GROUP BY 1")
    )
    assert sellers.get("individual", 0) > sellers.get("organisation", 0) > 0
    channels = {
        r[0] for r in _rows(url, "SELECT DISTINCT channel FROM lot WHERE channel IS NOT NULL")
    }
    assert channels == {"online", "offline"}
    assert result.counts["lots by status"]["consumed"] > 0


def test_runs_at_every_kind_of_facility(demo: tuple[str, Result]) -> None:
    url, _ = demo
    runs = {
        (kind, process, status)
        for kind, process, status in _rows(
            url,
            "SELECT DISTINCT f.kind, t.process, t.status FROM transformation t"
            " JOIN facility f ON f.id = t.facility_id",
        )
    }
    assert ("collection_point", "bulking", "recorded") in runs
    assert any(k == "pretreatment_center" and s == "recorded" for k, _, s in runs)
    assert ("smelter", "melting", "recorded") in runs
    assert ("smelter", "casting", "recorded") in runs
    assert any(s == "voided" for _, _, s in runs)
    assert _scalar(url, "SELECT count(*) FROM transformation WHERE loss_flagged") > 0
    assert _scalar(url, "SELECT count(*) FROM transformation_primary_input") > 0
    uses = {
        r[0]
        for r in _rows(
            url, "SELECT DISTINCT destination_use FROM lot WHERE product_form = 'molten'"
        )
    }
    assert uses == {"direct_alloying", "casting"}
    assert _scalar(url, "SELECT count(*) FROM transformation WHERE electricity_kwh > 0") > 0


def test_certificates_to_processors(demo: tuple[str, Result]) -> None:
    url, _ = demo
    rows = _rows(
        url,
        "SELECT c.method, e.roles FROM certificate c"
        " JOIN enterprise e ON e.id = c.recipient_enterprise_id",
    )
    assert rows
    assert all("processor" in roles for _, roles in rows)
    assert {method for method, _ in rows} <= {"proportional", "mass_balance"}
    # No account was overdrawn, and the demo's own ledger agreed with the service's.
    assert _scalar(url, "SELECT count(*) FROM credit_account WHERE balance_g < 0") == 0


def test_mass_and_composition_conserve(demo: tuple[str, Result]) -> None:
    """registered + primary inputs = held + losses + transit differences, to the gram (the
    custody machine's invariant, over the whole province)."""
    url, _ = demo
    ((registered, primary, held, losses, differences),) = _rows(
        url,
        "SELECT"
        " (SELECT sum((payload->>'net_g')::bigint) FROM event WHERE type = 'lot.registered'),"
        " (SELECT coalesce(sum(primary_g), 0) FROM transformation WHERE status = 'recorded'),"
        " (SELECT sum(net_g) FROM lot WHERE status = ANY(:held)),"
        " (SELECT coalesce(sum(loss_g), 0) FROM transformation WHERE status = 'recorded'),"
        " (SELECT coalesce(sum(difference_g), 0) FROM shipment_item"
        "  WHERE difference_g IS NOT NULL)",
        held=HELD,
    )
    assert registered + primary == held + losses + differences
    assert (
        _scalar(
            url,
            "SELECT count(*) FROM lot WHERE post_consumer_g + pre_consumer_g + primary_g <> net_g",
        )
        == 0
    )
    # Every run balances, and what the losses carry sums to them.
    assert (
        _scalar(
            url,
            "SELECT count(*) FROM transformation t WHERE input_g + primary_g <> output_g + loss_g"
            " OR loss_g <> (SELECT coalesce(sum(grams), 0) FROM transformation_loss x"
            "  WHERE x.transformation_id = t.id)",
        )
        == 0
    )


def test_reports_have_figures(demo: tuple[str, Result]) -> None:
    url, _ = demo
    now = utcnow()
    scope = oversight.Scope("", now - timedelta(days=365), now + timedelta(minutes=1))

    async def reports(session: AsyncSession) -> tuple[Any, Any, Any]:
        return (
            await oversight.flows(session, scope, "prefecture"),
            await oversight.indicators(session, scope),
            await oversight.anomalies(session, scope),
        )

    found: list[tuple[Any, Any, Any]] = []

    async def go() -> None:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine)() as session:
                found.append(await reports(session))
        finally:
            await engine.dispose()

    in_thread(lambda: asyncio.run(go()))
    flows, indicators, anomalies = found[0]
    assert flows.within_g and flows.into_g and flows.out_of_g
    values = {i.key: i for i in indicators}
    for key in (
        "direct_alloying_rate",
        "recycled_share_aluminium",
        "clean_transport_share",
        "import_share",
        "import_conformity",
        "pretreatment_coverage",
    ):
        assert values[key].value is not None, key
    assert 0 < values["direct_alloying_rate"].value < 100
    assert values["pretreatment_coverage"].numerator == 6  # six of the nine prefectures
    kinds = {a.kind for a in anomalies}
    assert {
        "weight_discrepancy",
        "loss_above_threshold",
        "duplicate_weighbridge_ticket",
        "suspended_enterprise_activity",
        "over_capacity",
    } <= kinds


def test_same_seed_same_data(settings: Settings) -> None:
    urls = [migrated_database("sf_test_demo_seed") for _ in range(2)]
    try:
        first, second = (_run(url, settings, 300, seed=11, workers=1) for url in urls)
        assert first.counts == second.counts
        masses = [
            _rows(
                url,
                "SELECT kind, metal, coalesce(category, product_form), status, net_g"
                " FROM lot ORDER BY 1, 2, 3, 4, 5",
            )
            for url in urls
        ]
        assert masses[0] == masses[1]
    finally:
        for url in urls:
            drop_database(url)
