"""Signing keys (issue 5): created on first start in the data folder (mode 0600); `scrapflow keys
rotate` puts a new one in place; the old public key stays published, so what it signed still
verifies, with the published key and `cryptography` alone."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from api.app import create_app
from integrations.settings import Settings
from tests.conftest import JWT_SECRET, World, build_world
from tests.credits.conftest import issue, melt
from tests.custody.conftest import Plant, build_custody, build_plant

SCRAPFLOW = Path(sys.executable).parent / "scrapflow"


@asynccontextmanager
async def serving(
    settings: Settings, database_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on its own engine (every request commits), as a server started with `settings`."""
    app = create_app(settings, database_url)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield app, client
    finally:
        await app.state.engine.dispose()


def rotate(data_dir: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
    env |= {"SCRAPFLOW_DATA_DIR": str(data_dir), "DATABASE_URL": database_url}
    return subprocess.run(
        [str(SCRAPFLOW), "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify(keys: list[dict[str, Any]], certificate: dict[str, Any], key_id: str) -> None:
    (key,) = [k for k in keys if k["key_id"] == key_id]
    Ed25519PublicKey.from_public_bytes(b64url_decode(key["public_key"])).verify(
        b64url_decode(certificate["signature"]), certificate["payload_canonical"].encode()
    )


async def _plant(app: FastAPI, client: httpx.AsyncClient) -> Plant:
    async with async_sessionmaker(app.state.engine, expire_on_commit=False)() as session:
        world: World = await build_world(session)
        await session.commit()
        return await build_plant(session, await build_custody(session, world, client))


async def test_a_rotated_key_stays_published_and_verifies_what_it_signed(
    tmp_path: Path, database_url: str
) -> None:
    settings = Settings(database_url=None, data_dir=tmp_path, jwt_secret=JWT_SECRET)
    key_file = tmp_path / "keys" / "signing.key"
    async with serving(settings, database_url) as (app, client):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert len(key_file.read_bytes()) == 32
        plant = await _plant(app, client)
        made = await melt(plant, [48, 48])
        before = await issue(plant, made.products[0], plant.world.enterprise_a, mass_kg=10)
        assert before.status_code == 201, before.text
        old = before.json()
    old_seed = key_file.read_bytes()

    rotated = await asyncio.to_thread(rotate, tmp_path, database_url)
    assert rotated.returncode == 0, rotated.stderr
    assert old["key_id"] in rotated.stdout
    assert key_file.read_bytes() != old_seed
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (key_file.parent / f"{old['key_id']}.key.retired").read_bytes() == old_seed

    async with serving(settings, database_url) as (_, client):  # restarted: signs with the new key
        plant.custody.client = client
        after = await issue(plant, made.products[1], plant.world.enterprise_a, mass_kg=10)
        assert after.status_code == 201, after.text
        new = after.json()
        assert new["key_id"] != old["key_id"]
        assert new["key_id"] in rotated.stdout

        response = await client.get("/api/v1/public/keys")
        assert response.status_code == 200, response.text
        keys = response.json()
        listed = {k["key_id"]: k["current"] for k in keys}
        assert listed[old["key_id"]] is False and listed[new["key_id"]] is True
        assert [k for k in keys if k["current"]] == [
            k for k in keys if k["key_id"] == new["key_id"]
        ]

        # Each certificate verifies, from its public record, with the key that signed it only.
        for certificate in (old, new):
            found = await client.get(f"/api/v1/public/certificates/{certificate['number']}")
            assert found.status_code == 200, found.text
            assert found.json()["key_id"] == certificate["key_id"]
            verify(keys, found.json(), certificate["key_id"])
        with pytest.raises(InvalidSignature):
            verify(keys, old, new["key_id"])
        with pytest.raises(InvalidSignature):
            verify(keys, new, old["key_id"])


def test_a_key_from_settings_is_not_rotated_by_the_command(
    tmp_path: Path, database_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPFLOW_")}
    seed = base64.b64encode(bytes(range(32))).decode()
    env |= {
        "SCRAPFLOW_DATA_DIR": str(tmp_path),
        "DATABASE_URL": database_url,
        "SCRAPFLOW_SIGNING_KEY": seed,
    }
    refused = subprocess.run(
        [str(SCRAPFLOW), "keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 2
    assert "SCRAPFLOW_SIGNING_KEY" in refused.stderr
    assert not (tmp_path / "keys" / "signing.key").exists()
