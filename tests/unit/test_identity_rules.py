from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from domain.actor import Role
from domain.identity.rules import (
    api_key_well_formed,
    display_prefix,
    new_api_key,
    role_fits_owner,
    secret_hash,
)
from domain.ids import new_id


def test_new_keys_are_well_formed_and_distinct() -> None:
    keys = {new_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("sfk_")
        assert api_key_well_formed(key)
        assert display_prefix(key) == key[:12]
        assert len(secret_hash(key)) == 64


@given(st.integers(4, 41), st.sampled_from("0123456789abcdefXYZ"))
def test_a_mistyped_key_fails_its_checksum(position: int, char: str) -> None:
    key = new_api_key()
    if key[position] == char:
        return
    assert not api_key_well_formed(key[:position] + char + key[position + 1 :])


def test_truncated_or_foreign_tokens_are_not_keys() -> None:
    key = new_api_key()
    assert not api_key_well_formed(key[:-1])
    assert not api_key_well_formed("sfr_" + key[4:])
    assert not api_key_well_formed("")


def test_roles_fit_their_owner() -> None:
    assert role_fits_owner(Role.operator, enterprise=True, authority=False)
    assert not role_fits_owner(Role.inspector, enterprise=True, authority=False)
    assert role_fits_owner(Role.supervisor, enterprise=False, authority=True)
    assert not role_fits_owner(Role.admin, enterprise=False, authority=True)
    assert role_fits_owner(Role.platform_admin, enterprise=False, authority=False)
    assert not role_fits_owner(Role.admin, enterprise=False, authority=False)


def test_ids_are_version_7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    # Same-millisecond ids are random in their low bits; across milliseconds they sort by time.
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)
