"""Identity over HTTP: login, access tokens, refresh-token rotation, API keys, users (DESIGN §2.1,
§3 "Authentication")."""

from __future__ import annotations

import hashlib
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.identity.rules import new_api_key
from tests.conftest import JWT_SECRET, Json, World

PROBLEM_JSON = "application/problem+json"
ISSUER = "scrapflow"
AUDIENCE = "scrapflow-api"
PASSWORD = "correct horse battery"


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    body: Json = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_unauthenticated(response: httpx.Response, code: str | None = "unauthenticated") -> Json:
    """401 problem+json with a Bearer challenge; `code=None` accepts any 401 code."""
    body = assert_problem(response, 401, code)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_user(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    username: str = "li.wei",
    password: str = PASSWORD,
    role: str = "operator",
    enterprise_id: uuid.UUID | None = None,
    authority_id: uuid.UUID | None = None,
) -> httpx.Response:
    body: Json = {
        "username": username,
        "display_name": "李伟",
        "password": password,
        "role": role,
    }
    if enterprise_id is not None:
        body["enterprise_id"] = str(enterprise_id)
    if authority_id is not None:
        body["authority_id"] = str(authority_id)
    return await client.post("/api/v1/users", json=body, headers=headers)


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}
    )


@pytest.fixture
async def operator(client: httpx.AsyncClient, world: World) -> Json:
    """An operator user of enterprise A, created over HTTP by A's admin."""
    response = await create_user(client, world.a_admin.headers, enterprise_id=world.enterprise_a)
    assert response.status_code == 201, response.text
    user: Json = response.json()
    return user


async def tokens_of(client: httpx.AsyncClient, username: str = "li.wei") -> Json:
    response = await login(client, username, PASSWORD)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


# --- login and /me ----------------------------------------------------------------------------


async def test_login_and_me(client: httpx.AsyncClient, world: World, operator: Json) -> None:
    assert operator["role"] == "operator"
    assert operator["enterprise_id"] == str(world.enterprise_a)
    assert "password" not in operator and "password_hash" not in operator

    response = await login(client, "li.wei", PASSWORD)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] > 0
    assert tokens["refresh_token"] and tokens["access_token"] != tokens["refresh_token"]

    me = await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["principal_kind"] == "user"
    assert body["principal_id"] == operator["id"]
    assert body["role"] == "operator"
    assert body["enterprise"] == {"id": str(world.enterprise_a), "name": "A recycling"}
    assert body["authority"] is None


async def test_username_is_case_insensitive_at_login(
    client: httpx.AsyncClient, operator: Json
) -> None:
    response = await login(client, "LI.Wei", PASSWORD)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("username", "password"),
    [("li.wei", "wrong password!!"), ("nobody.here", PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
async def test_bad_login_is_401(
    client: httpx.AsyncClient, operator: Json, username: str, password: str
) -> None:
    body = assert_unauthenticated(await login(client, username, password))
    # The same answer for an unknown user and a wrong password: no username enumeration.
    assert body["detail"] == "unknown username or wrong password"


# --- access tokens ----------------------------------------------------------------------------


def claims(user_id: str, **overrides: Any) -> Json:
    now = datetime.now(UTC)
    base: Json = {
        "sub": user_id,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: Json, secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        # PyJWT warns that the test secret is short for HS512; the token is meant to be refused.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(payload, secret, algorithm=algorithm)


async def test_a_correctly_crafted_token_is_accepted(
    client: httpx.AsyncClient, operator: Json
) -> None:
    """The control for the negative cases below: only the stated defect makes them fail."""
    response = await client.get("/api/v1/me", headers=bearer(sign(claims(operator["id"]))))
    assert response.status_code == 200, response.text
    assert response.json()["principal_id"] == operator["id"]


_PAST = datetime.now(UTC) - timedelta(hours=1)

BAD_TOKENS: list[tuple[str, Any, str]] = [
    # (case, how to build the token from the user id, a word the problem's detail names)
    ("alg-none", lambda uid: jwt.encode(claims(uid), None, algorithm="none"), "alg"),
    ("alg-hs512", lambda uid: sign(claims(uid), algorithm="HS512"), "alg"),
    ("wrong-audience", lambda uid: sign(claims(uid, aud="someone-else")), "audience"),
    ("wrong-issuer", lambda uid: sign(claims(uid, iss="evil")), "issuer"),
    (
        "expired",
        lambda uid: sign(claims(uid, iat=_PAST - timedelta(minutes=15), exp=_PAST)),
        "expired",
    ),
    (
        "other-secret",
        lambda uid: sign(claims(uid), secret="another-secret-" + "y" * 32),
        "signature",
    ),
    ("missing-exp", lambda uid: sign(claims(uid, exp=None)), "exp"),
    ("missing-sub", lambda uid: sign(claims(uid, sub=None)), "sub"),
    ("sub-not-a-uuid", lambda uid: sign(claims("admin")), "invalid"),
    ("unknown-user", lambda uid: sign(claims(str(uuid.uuid4()))), "no longer exists"),
    ("not-a-jwt", lambda uid: "not.a.jwt", "invalid"),
]


@pytest.mark.parametrize(("case", "build", "reason"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
async def test_bad_access_tokens_are_401(
    client: httpx.AsyncClient, operator: Json, case: str, build: Any, reason: str
) -> None:
    token = build(operator["id"])
    body = assert_unauthenticated(await client.get("/api/v1/me", headers=bearer(token)))
    assert reason in body["detail"].lower(), body["detail"]


# --- refresh tokens ---------------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})


async def family_rows(session: AsyncSession, user_id: str) -> list[Any]:
    result = await session.execute(
        text(
            "SELECT id, family_id, rotated_at, revoked_at FROM refresh_token "
            "WHERE user_id = :user_id ORDER BY created_at, id"
        ),
        {"user_id": uuid.UUID(user_id)},
    )
    return list(result.all())


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, session: AsyncSession, operator: Json
) -> None:
    first = await tokens_of(client)

    response = await refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    me = await client.get("/api/v1/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["principal_id"] == operator["id"]

    # The first refresh token was rotated: presenting it again means it leaked.
    reused = await refresh(client, first["refresh_token"])
    assert_unauthenticated(reused, "refresh_token_reused")

    # ... so the whole login is revoked, including the second token, which was still valid.
    # (The app answers any revoked token with refresh_token_reused; the status is what matters.)
    assert_unauthenticated(await refresh(client, second["refresh_token"]), code=None)

    rows = await family_rows(session, operator["id"])
    assert len(rows) == 2
    assert len({row.family_id for row in rows}) == 1
    assert all(row.revoked_at is not None for row in rows), rows
    assert rows[0].rotated_at is not None


async def test_logins_are_separate_families(
    client: httpx.AsyncClient, session: AsyncSession, operator: Json
) -> None:
    """Reuse on one device revokes that login only, not the user's other sessions."""
    phone = await tokens_of(client)
    laptop = await tokens_of(client)
    rotated = await refresh(client, phone["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    assert_unauthenticated(await refresh(client, phone["refresh_token"]), "refresh_token_reused")

    still_good = await refresh(client, laptop["refresh_token"])
    assert still_good.status_code == 200, still_good.text


async def test_logout_revokes_the_family(
    client: httpx.AsyncClient, session: AsyncSession, operator: Json
) -> None:
    first = await tokens_of(client)
    second = (await refresh(client, first["refresh_token"])).json()

    response = await client.post(
        "/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]}
    )
    assert response.status_code == 204, response.text

    assert_unauthenticated(await refresh(client, second["refresh_token"]), code=None)
    assert_unauthenticated(await refresh(client, first["refresh_token"]), code=None)
    rows = await family_rows(session, operator["id"])
    assert len(rows) == 2
    assert all(row.revoked_at is not None for row in rows), rows


async def test_unknown_and_expired_refresh_tokens_are_401(
    client: httpx.AsyncClient, session: AsyncSession, operator: Json
) -> None:
    assert_unauthenticated(await refresh(client, "sfr_not-a-token-we-issued"))
    # An API key is not a refresh token.
    assert_unauthenticated(await refresh(client, new_api_key()))
    tokens = await tokens_of(client)

    await session.execute(
        text(
            "UPDATE refresh_token SET expires_at = clock_timestamp() - interval '1 second' "
            "WHERE user_id = :user_id"
        ),
        {"user_id": uuid.UUID(operator["id"])},
    )
    body = assert_unauthenticated(await refresh(client, tokens["refresh_token"]))
    assert "expired" in body["detail"]


# --- API keys ---------------------------------------------------------------------------------


async def create_key(client: httpx.AsyncClient, world: World, **overrides: Any) -> httpx.Response:
    body: Json = {
        "name": "ERP integration",
        "role": "operator",
        "enterprise_id": str(world.enterprise_a),
    }
    body.update(overrides)
    return await client.post("/api/v1/api-keys", json=body, headers=world.a_admin.headers)


async def test_api_key_lifecycle(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    response = await create_key(client, world)
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert secret.startswith("sfk_")
    assert created["prefix"] == secret[:12]
    assert response.headers["location"] == f"/api/v1/api-keys/{created['id']}"

    listed = await client.get("/api/v1/api-keys", headers=world.a_admin.headers)
    assert listed.status_code == 200, listed.text
    assert secret not in listed.text
    assert secret[4:] not in listed.text
    mine = [item for item in listed.json()["items"] if item["id"] == created["id"]]
    assert len(mine) == 1 and "secret" not in mine[0]
    # A's admin lists A's keys only (B's admin key exists too).
    assert {item["enterprise_id"] for item in listed.json()["items"]} == {str(world.enterprise_a)}

    me = await client.get("/api/v1/me", headers=bearer(secret))
    assert me.status_code == 200, me.text
    assert me.json()["principal_kind"] == "api_key"
    assert me.json()["principal_id"] == created["id"]
    assert me.json()["role"] == "operator"
    assert me.json()["enterprise"]["id"] == str(world.enterprise_a)

    revoked = await client.delete(
        f"/api/v1/api-keys/{created['id']}", headers=world.a_admin.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert "secret" not in revoked.json()
    assert_unauthenticated(await client.get("/api/v1/me", headers=bearer(secret)))


async def test_a_mistyped_api_key_fails_its_checksum(
    client: httpx.AsyncClient, world: World
) -> None:
    secret = (await create_key(client, world)).json()["secret"]
    position = 10
    replacement = "A" if secret[position] != "A" else "B"
    mistyped = secret[:position] + replacement + secret[position + 1 :]
    body = assert_unauthenticated(await client.get("/api/v1/me", headers=bearer(mistyped)))
    assert "checksum" in body["detail"]
    truncated = assert_unauthenticated(await client.get("/api/v1/me", headers=bearer(secret[:-1])))
    assert "malformed" in truncated["detail"]


async def test_an_api_key_expiring_in_the_past_is_422(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await create_key(client, world, expires_at="2020-01-01T00:00:00+08:00")
    body = assert_problem(response, 422)
    assert any(e["pointer"] == "/expires_at" for e in body["errors"]), body


async def test_api_key_secret_is_stored_only_as_a_hash(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    created = (await create_key(client, world)).json()
    secret = created["secret"]
    row = (
        await session.execute(
            text("SELECT * FROM api_key WHERE id = :id"), {"id": uuid.UUID(created["id"])}
        )
    ).one()
    for column, value in row._mapping.items():
        assert secret[4:] not in str(value), f"api_key.{column} holds the secret"
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()

    events = await session.scalars(
        text("SELECT payload::text FROM event WHERE subject_id = :id"), {"id": created["id"]}
    )
    payloads = list(events)
    assert payloads, "api_key.created is recorded"
    assert all(secret[4:] not in payload for payload in payloads)


async def test_an_idempotent_api_key_creation_does_not_store_the_secret(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    """DESIGN §3: a key is "shown once, stored only as a hash". Idempotency records keep the
    whole first response, which for POST /api-keys includes the plaintext secret: the stored copy
    must have it blanked, and a replay says null rather than showing the key twice."""
    key = f"create-key-{uuid.uuid4()}"
    response = await client.post(
        "/api/v1/api-keys",
        json={"name": "ERP", "role": "operator", "enterprise_id": str(world.enterprise_a)},
        headers={**world.a_admin.headers, "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    secret = response.json()["secret"]
    stored = (
        await session.execute(
            text("SELECT body, headers::text AS headers FROM idempotency_record WHERE key = :key"),
            {"key": key},
        )
    ).one()
    assert secret[4:].encode() not in bytes(stored.body), "the plaintext key is in the database"
    assert secret[4:] not in stored.headers
    replay = await client.post(
        "/api/v1/api-keys",
        json={"name": "ERP", "role": "operator", "enterprise_id": str(world.enterprise_a)},
        headers={**world.a_admin.headers, "Idempotency-Key": key},
    )
    assert replay.status_code == 201
    assert replay.json()["id"] == response.json()["id"]
    assert replay.json()["secret"] is None


# --- users ------------------------------------------------------------------------------------


async def test_a_short_password_is_422(client: httpx.AsyncClient, world: World) -> None:
    response = await create_user(
        client, world.a_admin.headers, password="x" * 11, enterprise_id=world.enterprise_a
    )
    body = assert_problem(response, 422)
    assert any(e["pointer"] == "/password" for e in body["errors"]), body


async def test_a_duplicate_username_is_409(
    client: httpx.AsyncClient, world: World, operator: Json
) -> None:
    for username in ("li.wei", "LI.WEI"):  # usernames are case-insensitive
        response = await create_user(
            client, world.a_admin.headers, username=username, enterprise_id=world.enterprise_a
        )
        assert_problem(response, 409)


async def test_an_enterprise_admin_cannot_create_users_for_another_enterprise(
    client: httpx.AsyncClient, world: World
) -> None:
    # B is invisible to A's admin: 404, exactly as an enterprise that does not exist.
    response = await create_user(client, world.a_admin.headers, enterprise_id=world.enterprise_b)
    body = assert_problem(response, 404, "not_found")
    assert "B recycling" not in response.text
    missing = await create_user(client, world.a_admin.headers, enterprise_id=uuid.uuid4())
    assert assert_problem(missing, 404)["title"] == body["title"]


async def test_an_enterprise_admin_cannot_create_a_platform_admin(
    client: httpx.AsyncClient, world: World
) -> None:
    # Without an owner the role fits (platform admins have none), so the request is well formed
    # and refused on permission: identity._check_manages answers 403 ("only the owner's admin
    # (or supervisor) or a platform admin manages principals").
    response = await create_user(client, world.a_admin.headers, role="platform_admin")
    assert_problem(response, 403, "forbidden")
    # With its own enterprise as owner the role does not fit the owner: 422 before any
    # permission question (role_fits_owner).
    response = await create_user(
        client, world.a_admin.headers, role="platform_admin", enterprise_id=world.enterprise_a
    )
    body = assert_problem(response, 422)
    assert any(e["pointer"] == "/role" for e in body["errors"]), body


async def test_a_province_supervisor_creates_an_inspector(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await create_user(
        client,
        world.province_supervisor.headers,
        username="inspector.zhang",
        role="inspector",
        authority_id=world.province_authority,
    )
    assert response.status_code == 201, response.text
    assert response.json()["authority_id"] == str(world.province_authority)
    assert response.json()["enterprise_id"] is None

    tokens = await tokens_of(client, "inspector.zhang")
    me = (await client.get("/api/v1/me", headers=bearer(tokens["access_token"]))).json()
    assert me["role"] == "inspector"
    assert me["authority"]["id"] == str(world.province_authority)
    assert me["jurisdiction"] == "52"
    assert me["enterprise"] is None


async def test_a_supervisor_cannot_create_users_for_another_authority(
    client: httpx.AsyncClient, world: World
) -> None:
    # Authorities see only themselves: the province's authority is invisible to Guiyang's.
    response = await create_user(
        client,
        world.guiyang_supervisor.headers,
        role="inspector",
        authority_id=world.province_authority,
    )
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(
    ("role", "owner"),
    [("operator", "authority"), ("inspector", "enterprise"), ("admin", "none")],
)
async def test_role_must_fit_the_owner(
    client: httpx.AsyncClient, world: World, role: str, owner: str
) -> None:
    response = await create_user(
        client,
        world.admin.headers,
        role=role,
        enterprise_id=world.enterprise_a if owner == "enterprise" else None,
        authority_id=world.province_authority if owner == "authority" else None,
    )
    body = assert_problem(response, 422)
    assert any(e["pointer"] == "/role" for e in body["errors"]), body


async def test_both_owners_is_422(client: httpx.AsyncClient, world: World) -> None:
    body: Json = {
        "username": "two.hats",
        "display_name": "Two hats",
        "password": PASSWORD,
        "role": "operator",
        "enterprise_id": str(world.enterprise_a),
        "authority_id": str(world.province_authority),
    }
    response = await client.post("/api/v1/users", json=body, headers=world.admin.headers)
    assert_problem(response, 422)


# --- missing or foreign credentials -----------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic bGkud2VpOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==",
        "Bearer",
        "Bearer ",
        "sfk_0000",
        "Bearer " + new_api_key(),  # well formed, checksum right, never issued
    ],
    ids=["none", "basic", "bearer-no-token", "bearer-blank", "no-scheme", "unknown-key"],
)
async def test_missing_or_foreign_credentials_are_401(
    client: httpx.AsyncClient, world: World, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_unauthenticated(await client.get("/api/v1/me", headers=headers))


async def test_only_the_owners_managers_revoke_a_key(
    client: httpx.AsyncClient, world: World
) -> None:
    created = (await create_key(client, world)).json()
    url = f"/api/v1/api-keys/{created['id']}"
    # B's admin cannot see A's keys: 404, as for a key that does not exist.
    assert_problem(await client.delete(url, headers=world.b_admin.headers), 404, "not_found")
    missing = await client.delete(f"/api/v1/api-keys/{uuid.uuid4()}", headers=world.b_admin.headers)
    assert_problem(missing, 404, "not_found")
    # An operator never manages principals, whichever key it names.
    assert_problem(await client.delete(url, headers=world.a_operator.headers), 403, "forbidden")
    me = await client.get("/api/v1/me", headers=bearer(created["secret"]))
    assert me.status_code == 200, me.text
