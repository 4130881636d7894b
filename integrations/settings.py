"""Configuration from the environment (documented in the README)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCRAPFLOW_", extra="ignore")

    # Without a database URL the service runs its own embedded PostgreSQL in data_dir/pg.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SCRAPFLOW_DATABASE_URL")
    )
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    port: int = 8000
    # Server processes; each has its own connection pool (db_pool_size connections).
    workers: int = 1
    # A fixed pool: connections opened beyond it ("overflow") are closed when returned, and under
    # load that churn (connect, codec set-up, cold statement cache) shows in the latency tail.
    db_pool_size: int = 20
    db_max_overflow: int = 0
    # How long a request waits for a free connection before it is told to retry (503
    # database_busy): a stalled database must not hold every request for SQLAlchemy's 30 s.
    db_pool_timeout_seconds: float = Field(default=10, gt=0)
    # A streaming replica for the heavy read-only reads of reports and regulators (statements,
    # credits, oversight reports, registers, EPCIS, audit listing and verification); its sessions
    # are read-only, so a stray write fails instead of landing on a copy. Unset: the primary.
    read_database_url: str | None = None
    read_db_pool_size: int = Field(default=10, ge=1)

    # HS256 secret for access tokens; without one a 0600 key file in data_dir is used.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "scrapflow"
    jwt_audience: str = "scrapflow-api"
    access_token_minutes: int = 15
    refresh_token_days: int = 30

    # AES-256 key (base64) sealing sellers' personal data; without one a 0600 key file in
    # data_dir is used.
    seller_key: SecretStr | None = None
    # Weight difference above which a receipt opens a discrepancy, as a fraction of the
    # dispatched mass, per metal (JSON in the environment: {"copper": "0.005"}).
    discrepancy_tolerance: dict[str, Decimal] = {
        "aluminium": Decimal("0.01"),
        "copper": Decimal("0.01"),
    }
    # Ed25519 private key (base64 of the 32-byte seed) signing certificates and checkpoints;
    # without one, data_dir/keys/signing.key (mode 0600) is used, created on first start.
    signing_key: SecretStr | None = None
    # Public keys (base64 of the raw 32 bytes) of signing keys used before, for audit
    # verification: checkpoints are only trusted when signed by a key known outside the database.
    retired_public_keys: list[str] = []
    # Recycled credits expire this many days after they were earned (the accounting period).
    credit_period_days: int = Field(default=365, ge=1)
    # Where the public reaches the service: certificates carry a verification URL under it.
    public_base_url: str = "http://127.0.0.1:8000"
    # The audit sealer: in the API process too (else only in `scrapflow worker`), how often it
    # looks for new events, and how often the chain head is signed (events or seconds).
    sealer_in_api: bool = True
    seal_interval_seconds: float = Field(default=0.5, gt=0)
    checkpoint_every_events: int = Field(default=10_000, ge=1)
    checkpoint_every_seconds: float = Field(default=300, gt=0)
    # Limits at the door (0 disables a rate). Rates are per server process.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_body_bytes: int = Field(default=16_777_216, ge=1024)  # 5,000 lots fit well
    rate_per_principal: float = Field(default=3000, ge=0)  # requests per second per credential
    rate_burst_principal: float = Field(default=3000, ge=1)
    rate_per_ip_public: float = Field(default=20, ge=0)  # public and login endpoints, per address
    rate_burst_ip_public: float = Field(default=60, ge=1)
    # Limits on what a request asks for (422 problem+json naming the parameter and the maximum):
    # the `limit` of every list, the anomalies per kind in a report, the lots of one batch (the
    # batch body limit above must hold them: about 350 bytes a lot), and how deeply a JSON body
    # may nest objects and arrays (the deepest request model nests 4).
    max_page_size: int = Field(default=500, ge=1)
    max_anomalies_per_kind: int = Field(default=5000, ge=1)
    max_batch_items: int = Field(default=5000, ge=1)
    max_json_depth: int = Field(default=32, ge=4)

    # Webhooks: destinations in private, loopback, link-local or reserved ranges are refused
    # unless allowed (tests, or a relay inside a private network); the relay runs in the API
    # process too (else only in `scrapflow worker`). An endpoint is disabled after
    # `webhook_disable_after_failures` failed attempts in a row spanning more than
    # `webhook_disable_after_hours`; retries wait by `webhook_retry_schedule_seconds` (the last
    # step repeats) or longer when the receiver's Retry-After says so.
    webhook_allow_private_destinations: bool = False
    webhook_relay_in_api: bool = True
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_disable_after_failures: int = Field(default=10, ge=1)
    webhook_disable_after_hours: float = Field(default=24.0, ge=0)
    webhook_retry_schedule_seconds: list[float] = Field(
        default=[5.0, 30.0, 120.0, 600.0, 3600.0], min_length=1
    )
    webhook_relay_interval_seconds: float = Field(default=0.5, gt=0)
    webhook_relay_concurrency: int = Field(default=16, ge=1)  # subscriptions sent to at once

    # The industrial-cloud report (README "Industrial-cloud report"): pushed to this URL (HTTPS;
    # plain HTTP only when allowed, for tests and development), signed with HMAC-SHA256 under
    # the secret. A push makes 1 + `retries` attempts, waiting `backoff` × 2^n between them (at
    # most `max_backoff`, also for a receiver's Retry-After). The worker pushes each enterprise's
    # previous month once, `grace_hours` after the month ended (late receipts and runs).
    industrial_cloud_url: str | None = None
    industrial_cloud_secret: SecretStr | None = None
    industrial_cloud_allow_http: bool = False
    industrial_cloud_retries: int = Field(default=5, ge=0, le=50)
    industrial_cloud_backoff_seconds: float = Field(default=2.0, ge=0)
    industrial_cloud_max_backoff_seconds: float = Field(default=300.0, ge=0)
    industrial_cloud_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    industrial_cloud_grace_hours: float = Field(default=24.0, ge=0)
    industrial_cloud_schedule_interval_seconds: float = Field(default=600.0, gt=0)

    idempotency_ttl_hours: int = 24
    # How long a credential's principal is remembered in memory; other processes of the service
    # see a revocation or suspension within this many seconds (0 disables the cache).
    principal_cache_seconds: float = 5.0
    cors_origins: list[str] = []
    log_level: str = "INFO"

    @field_validator("database_url", "read_database_url")
    @classmethod
    def _asyncpg_driver(cls, url: str | None) -> str | None:
        return None if url is None else asyncpg_url(url)


def asyncpg_url(url: str) -> str:
    """Accept plain libpq URLs (postgresql://, postgres://) and use the asyncpg driver."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    return url


@lru_cache
def get_settings() -> Settings:
    return Settings()
