"""event log trigger: the sealing update is let through by a WHEN clause

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24 15:46:00

The append-only trigger used to run PL/pgSQL on every sealing UPDATE, converting both row versions
to jsonb to compare them: half of the sealer's time. A WHEN clause compares the columns in C and
calls the function only for an UPDATE that is not a pure sealing (which it refuses). DELETE gets a
trigger of its own (a DELETE trigger's WHEN cannot name NEW).

Every column of `event` except seq, prev_hash and hash must be listed in SEALING_ONLY: a column
added later must be added here too (tests edit every sealed column and expect a refusal).
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    "id", "txid", "type", "subject_type", "subject_id", "actor_kind", "actor_principal_id",
    "actor_role", "actor_enterprise_id", "actor_authority_id", "request_id", "enterprise_ids",
    "facility_ids", "lot_ids", "region_codes", "occurred_at", "payload",
)
OLD = ", ".join(f"OLD.{c}" for c in COLUMNS)
NEW = ", ".join(f"NEW.{c}" for c in COLUMNS)
NOT_A_PURE_SEALING = f"OLD.seq IS NOT NULL OR NEW.seq IS NULL OR ({OLD}) IS DISTINCT FROM ({NEW})"


def upgrade() -> None:
    op.execute("DROP TRIGGER event_append_only ON event")
    op.execute(
        "CREATE TRIGGER event_append_only BEFORE UPDATE ON event FOR EACH ROW"
        f" WHEN ({NOT_A_PURE_SEALING}) EXECUTE FUNCTION event_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER event_no_delete BEFORE DELETE ON event"
        " FOR EACH ROW EXECUTE FUNCTION event_refuse_change()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER event_no_delete ON event")
    op.execute("DROP TRIGGER event_append_only ON event")
    op.execute(
        "CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON event"
        " FOR EACH ROW EXECUTE FUNCTION event_refuse_change()"
    )
