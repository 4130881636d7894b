"""foundation: registry, identity, the event log, idempotency records, reference data

Revision ID: 0001
Revises:
Create Date: 2026-11-24 12:18:47.888900
"""

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate emits sqlmodel.sql.sqltypes.AutoString)
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import UserDefinedType

from domain.reference.rules import read_csv


class _Xid8(UserDefinedType):  # type: ignore[type-arg]
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


XID8 = _Xid8()

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authority",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "jurisdiction", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authority")),
    )
    op.create_index(
        op.f("ix_authority_jurisdiction"), "authority", ["jurisdiction"], unique=False
    )
    op.create_table(
        "enterprise",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("uscc", sqlmodel.sql.sqltypes.AutoString(length=18), nullable=False),
        sa.Column("roles", postgresql.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column(
            "region_code", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False
        ),
        sa.Column(
            "status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enterprise")),
        sa.UniqueConstraint("uscc", name=op.f("uq_enterprise_uscc")),
    )
    op.create_index(
        op.f("ix_enterprise_region_code"), "enterprise", ["region_code"], unique=False
    )
    op.create_table(
        "event",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column(
            "txid", XID8, server_default=sa.text("pg_current_xact_id()"), nullable=False
        ),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column(
            "subject_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        ),
        sa.Column(
            "subject_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "actor_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column("actor_principal_id", sa.Uuid(), nullable=True),
        sa.Column(
            "actor_role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False
        ),
        sa.Column("actor_enterprise_id", sa.Uuid(), nullable=True),
        sa.Column("actor_authority_id", sa.Uuid(), nullable=True),
        sa.Column(
            "request_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True
        ),
        sa.Column("enterprise_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("facility_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column(
            "region_codes", postgresql.ARRAY(sa.String(length=6)), nullable=False
        ),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("prev_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
        sa.UniqueConstraint("seq", name=op.f("uq_event_seq")),
    )
    op.create_index(
        "ix_event_enterprise_ids",
        "event",
        ["enterprise_ids"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_event_facility_ids",
        "event",
        ["facility_ids"],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_event_subject", "event", ["subject_type", "subject_id", "id"], unique=False
    )
    op.create_index(op.f("ix_event_type"), "event", ["type"], unique=False)
    op.create_index(
        "ix_event_unsealed",
        "event",
        ["id"],
        unique=False,
        postgresql_where=sa.text("seq IS NULL"),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("principal_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column(
            "fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "principal_id", "key", name=op.f("pk_idempotency_record")
        ),
    )
    op.create_index(
        op.f("ix_idempotency_record_created_at"),
        "idempotency_record",
        ["created_at"],
        unique=False,
    )
    op.create_table(
        "ref_emission_factor_set",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "label", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False
        ),
        sa.Column(
            "source", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False
        ),
        sa.Column(
            "published_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_ref_emission_factor_set")),
    )
    op.create_table(
        "ref_region",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
        sa.Column("level", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "name_zh", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "name_en", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column(
            "confidence", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ref_region")),
    )
    op.create_table(
        "ref_scrap_category",
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("metal", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "scheme", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False
        ),
        sa.Column(
            "name_zh", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False
        ),
        sa.Column(
            "name_en", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column(
            "source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column(
            "confidence", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ref_scrap_category")),
    )
    op.create_index(
        op.f("ix_ref_scrap_category_metal"),
        "ref_scrap_category",
        ["metal"],
        unique=False,
    )
    op.create_table(
        "api_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column(
            "prefix", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column(
            "secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("enterprise_id", sa.Uuid(), nullable=True),
        sa.Column("authority_id", sa.Uuid(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(role = 'platform_admin') = (enterprise_id IS NULL AND authority_id IS NULL)",
            name=op.f("ck_app_user_owner_matches_role"),
        ),
        sa.CheckConstraint(
            "(enterprise_id IS NULL) OR (authority_id IS NULL)",
            name=op.f("ck_app_user_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_api_key_authority_id_authority"),
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_api_key_enterprise_id_enterprise"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_api_key_secret_hash")),
    )
    op.create_index(
        op.f("ix_api_key_authority_id"), "api_key", ["authority_id"], unique=False
    )
    op.create_index(
        op.f("ix_api_key_enterprise_id"), "api_key", ["enterprise_id"], unique=False
    )
    op.create_table(
        "app_user",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "username", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "display_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column(
            "password_hash",
            sqlmodel.sql.sqltypes.AutoString(length=200),
            nullable=False,
        ),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("enterprise_id", sa.Uuid(), nullable=True),
        sa.Column("authority_id", sa.Uuid(), nullable=True),
        sa.Column(
            "status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(role = 'platform_admin') = (enterprise_id IS NULL AND authority_id IS NULL)",
            name=op.f("ck_app_user_owner_matches_role"),
        ),
        sa.CheckConstraint(
            "(enterprise_id IS NULL) OR (authority_id IS NULL)",
            name=op.f("ck_app_user_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["authority_id"],
            ["authority.id"],
            name=op.f("fk_app_user_authority_id_authority"),
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_app_user_enterprise_id_enterprise"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_user")),
        sa.UniqueConstraint("username", name=op.f("uq_app_user_username")),
    )
    op.create_index(
        op.f("ix_app_user_authority_id"), "app_user", ["authority_id"], unique=False
    )
    op.create_index(
        op.f("ix_app_user_enterprise_id"), "app_user", ["enterprise_id"], unique=False
    )
    op.create_table(
        "facility",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("enterprise_id", sa.Uuid(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column(
            "region_code", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False
        ),
        sa.Column(
            "address", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False
        ),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("annual_capacity_g", sa.BigInteger(), nullable=True),
        sa.Column(
            "permit_no", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
        ),
        sa.Column(
            "status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "annual_capacity_g >= 0", name=op.f("ck_facility_capacity_not_negative")
        ),
        sa.CheckConstraint(
            "latitude BETWEEN -90 AND 90", name=op.f("ck_facility_latitude_range")
        ),
        sa.CheckConstraint(
            "longitude BETWEEN -180 AND 180", name=op.f("ck_facility_longitude_range")
        ),
        sa.ForeignKeyConstraint(
            ["enterprise_id"],
            ["enterprise.id"],
            name=op.f("fk_facility_enterprise_id_enterprise"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facility")),
    )
    op.create_index(
        op.f("ix_facility_enterprise_id"), "facility", ["enterprise_id"], unique=False
    )
    op.create_index(
        op.f("ix_facility_region_code"), "facility", ["region_code"], unique=False
    )
    op.create_table(
        "ref_emission_factor",
        sa.Column("set_version", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Numeric(precision=14, scale=6), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column(
            "scope", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False
        ),
        sa.Column(
            "source", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False
        ),
        sa.Column(
            "confidence", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["set_version"],
            ["ref_emission_factor_set.version"],
            name=op.f("fk_ref_emission_factor_set_version_ref_emission_factor_set"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "set_version", "key", name=op.f("pk_ref_emission_factor")
        ),
    )
    op.create_table(
        "refresh_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column(
            "token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name=op.f("fk_refresh_token_user_id_app_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_token_token_hash")),
    )
    op.create_index(
        op.f("ix_refresh_token_family_id"), "refresh_token", ["family_id"], unique=False
    )
    op.create_index(
        op.f("ix_refresh_token_user_id"), "refresh_token", ["user_id"], unique=False
    )

    for statement in EVENT_LOG_IS_APPEND_ONLY:
        op.execute(statement)
    _load_reference_data()


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS event_append_only ON event")
    op.execute("DROP TRIGGER IF EXISTS event_no_truncate ON event")
    op.execute("DROP FUNCTION IF EXISTS event_refuse_change()")
    op.drop_index(op.f("ix_refresh_token_user_id"), table_name="refresh_token")
    op.drop_index(op.f("ix_refresh_token_family_id"), table_name="refresh_token")
    op.drop_table("refresh_token")
    op.drop_table("ref_emission_factor")
    op.drop_index(op.f("ix_facility_region_code"), table_name="facility")
    op.drop_index(op.f("ix_facility_enterprise_id"), table_name="facility")
    op.drop_table("facility")
    op.drop_index(op.f("ix_app_user_enterprise_id"), table_name="app_user")
    op.drop_index(op.f("ix_app_user_authority_id"), table_name="app_user")
    op.drop_table("app_user")
    op.drop_index(op.f("ix_api_key_enterprise_id"), table_name="api_key")
    op.drop_index(op.f("ix_api_key_authority_id"), table_name="api_key")
    op.drop_table("api_key")
    op.drop_index(op.f("ix_ref_scrap_category_metal"), table_name="ref_scrap_category")
    op.drop_table("ref_scrap_category")
    op.drop_table("ref_region")
    op.drop_table("ref_emission_factor_set")
    op.drop_index(
        op.f("ix_idempotency_record_created_at"), table_name="idempotency_record"
    )
    op.drop_table("idempotency_record")
    op.drop_index(
        "ix_event_unsealed", table_name="event", postgresql_where=sa.text("seq IS NULL")
    )
    op.drop_index(op.f("ix_event_type"), table_name="event")
    op.drop_index("ix_event_subject", table_name="event")
    op.drop_index("ix_event_facility_ids", table_name="event", postgresql_using="gin")
    op.drop_index("ix_event_enterprise_ids", table_name="event", postgresql_using="gin")
    op.drop_table("event")
    op.drop_index(op.f("ix_enterprise_region_code"), table_name="enterprise")
    op.drop_table("enterprise")
    op.drop_index(op.f("ix_authority_jurisdiction"), table_name="authority")
    op.drop_table("authority")


# Rows are never edited or removed. The only UPDATE allowed is the sealer's: setting seq and the
# hashes of a row that has none yet, leaving every other column as it was.
EVENT_LOG_IS_APPEND_ONLY = (
    """
CREATE FUNCTION event_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND NEW.seq IS NOT NULL
       AND (to_jsonb(NEW) - ARRAY['seq', 'prev_hash', 'hash'])
           = (to_jsonb(OLD) - ARRAY['seq', 'prev_hash', 'hash']) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$
""",
    """
CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event
    FOR EACH ROW EXECUTE FUNCTION event_refuse_change()
""",
    """
CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON event
    FOR EACH STATEMENT EXECUTE FUNCTION event_refuse_change()
""",
)


def _load_reference_data() -> None:
    regions = sa.table(
        "ref_region",
        *(
            sa.column(c)
            for c in ("code", "level", "name_zh", "name_en", "source", "confidence")
        ),
    )
    op.bulk_insert(regions, read_csv("regions.csv"))
    categories = sa.table(
        "ref_scrap_category",
        *(
            sa.column(c)
            for c in (
                "code",
                "metal",
                "scheme",
                "name_zh",
                "name_en",
                "note",
                "source",
                "confidence",
            )
        ),
    )
    op.bulk_insert(
        categories,
        [{**row, "source": row["scheme"]} for row in read_csv("scrap-categories.csv")],
    )
    factor_sets = sa.table(
        "ref_emission_factor_set",
        sa.column("version"),
        sa.column("label"),
        sa.column("source"),
    )
    op.bulk_insert(
        factor_sets,
        [
            {
                "version": 1,
                "label": "default factors 2026-11",
                "source": "shared/reference/emission-factors.csv",
            }
        ],
    )
    factors = sa.table(
        "ref_emission_factor",
        *(
            sa.column(c)
            for c in (
                "set_version",
                "key",
                "value",
                "unit",
                "year",
                "scope",
                "source",
                "confidence",
            )
        ),
    )
    op.bulk_insert(
        factors,
        [
            {
                **row,
                "set_version": 1,
                "value": Decimal(row["value"]),
                "year": int(row["year"]) if row["year"] else None,
            }
            for row in read_csv("emission-factors.csv")
        ],
    )
