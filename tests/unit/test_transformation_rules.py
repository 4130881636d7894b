"""Pooled composition and balance: every sum exact, nothing negative, within 1 g of the share."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from domain.lots.rules import Composition, largest_remainder
from domain.registry.rules import FacilityKind
from domain.transformations.rules import (
    Process,
    loss_flagged,
    pool,
    processes_at,
    taken_part,
    unbalanced,
)

grams = st.integers(0, 10**10)
compositions = st.tuples(grams, grams, grams).filter(lambda c: sum(c) > 0).map(Composition.of)


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[Composition], int, list[int]]:
    taken = draw(st.lists(compositions, min_size=1, max_size=6))
    primary = draw(st.integers(0, 10**10))
    total = sum(c.total_g for c in taken) + primary
    weights = draw(st.lists(st.integers(1, 1000), min_size=1, max_size=8))
    return taken, primary, largest_remainder(total, weights)


@given(runs())
def test_pooling_is_exact_non_negative_and_proportional(
    run: tuple[list[Composition], int, list[int]],
) -> None:
    taken, primary, results = run
    pooled = pool(taken, primary, results)
    pool_parts = [
        sum(c.post_consumer_g for c in taken),
        sum(c.pre_consumer_g for c in taken),
        sum(c.primary_g for c in taken) + primary,
    ]
    total = sum(pool_parts)
    assert [c.total_g for c in pooled.compositions] == results
    for k in range(3):
        assert sum(c.parts[k] for c in pooled.compositions) == pool_parts[k]
    for result, composition in zip(results, pooled.compositions, strict=True):
        for k in range(3):
            assert composition.parts[k] >= 0
            assert abs(composition.parts[k] - Fraction(result * pool_parts[k], total)) < 1
    # Lineage edges: each input's grams are shared out exactly, each row's edges + its primary
    # share make its mass.
    for i, source in enumerate(taken):
        assert sum(row[i] for row in pooled.from_inputs) == source.total_g
    for result, row in zip(results, pooled.from_inputs, strict=True):
        assert 0 <= result - sum(row) <= primary
        assert all(g >= 0 for g in row)


@given(compositions, st.data())
def test_a_partly_taken_lot_keeps_the_rest(composition: Composition, data: st.DataObject) -> None:
    taken_g = data.draw(st.integers(1, composition.total_g))
    taken, kept = taken_part(composition, taken_g)
    assert taken.total_g == taken_g
    assert kept.total_g == composition.total_g - taken_g
    for k in range(3):
        assert taken.parts[k] + kept.parts[k] == composition.parts[k]
        assert taken.parts[k] >= 0 and kept.parts[k] >= 0


def test_balance_names_both_sums() -> None:
    assert unbalanced(1000, 200, 1100, 100) is None
    reason = unbalanced(1000, 0, 990, 5)
    assert reason is not None
    assert "1000 g" in reason and "995 g" in reason


def test_processes_follow_the_facility_kind() -> None:
    assert Process.melting in processes_at(FacilityKind.smelter)
    assert Process.melting not in processes_at(FacilityKind.pretreatment_center)
    assert Process.shredding in processes_at(FacilityKind.collection_point)
    assert processes_at(FacilityKind.warehouse) == frozenset()


def test_loss_flag_above_threshold() -> None:
    assert not loss_flagged(Process.melting, 80, 1000, 0)
    assert loss_flagged(Process.melting, 81, 1000, 0)
