"""transformations and lineage

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 13:15:23.331829
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate emits sqlmodel.sql.sqltypes.AutoString)
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('transformation',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('facility_id', sa.Uuid(), nullable=False),
    sa.Column('enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('region_code', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('process', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('metal', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('input_g', sa.BigInteger(), nullable=False),
    sa.Column('primary_g', sa.BigInteger(), nullable=False),
    sa.Column('output_g', sa.BigInteger(), nullable=False),
    sa.Column('loss_g', sa.BigInteger(), nullable=False),
    sa.Column('loss_flagged', sa.Boolean(), nullable=False),
    sa.Column('electricity_kwh', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('natural_gas_m3', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('other_fuel_kgce', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('void_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('voided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint('input_g + primary_g = output_g + loss_g', name=op.f('ck_transformation_mass_balance')),
    sa.ForeignKeyConstraint(['enterprise_id'], ['enterprise.id'], name=op.f('fk_transformation_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['facility_id'], ['facility.id'], name=op.f('fk_transformation_facility_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transformation'))
    )
    op.create_index(op.f('ix_transformation_facility_id'), 'transformation', ['facility_id'], unique=False)
    op.create_table('lot_source',
    sa.Column('lot_id', sa.Uuid(), nullable=False),
    sa.Column('source_lot_id', sa.Uuid(), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('of_g', sa.BigInteger(), nullable=False),
    sa.Column('via', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('transformation_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('grams >= 0 AND grams <= of_g', name=op.f('ck_lot_source_share_within_mass')),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_lot_source_lot_id_lot')),
    sa.ForeignKeyConstraint(['source_lot_id'], ['lot.id'], name=op.f('fk_lot_source_source_lot_id_lot')),
    sa.ForeignKeyConstraint(['transformation_id'], ['transformation.id'], name=op.f('fk_lot_source_transformation_id_transformation')),
    sa.PrimaryKeyConstraint('lot_id', 'source_lot_id', name=op.f('pk_lot_source'))
    )
    op.create_index('ix_lot_source_source', 'lot_source', ['source_lot_id'], unique=False)
    op.create_table('transformation_input',
    sa.Column('transformation_id', sa.Uuid(), nullable=False),
    sa.Column('lot_id', sa.Uuid(), nullable=False),
    sa.Column('taken_g', sa.BigInteger(), nullable=False),
    sa.Column('post_consumer_g', sa.BigInteger(), nullable=False),
    sa.Column('pre_consumer_g', sa.BigInteger(), nullable=False),
    sa.Column('primary_g', sa.BigInteger(), nullable=False),
    sa.Column('status_before', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_transformation_input_lot_id_lot')),
    sa.ForeignKeyConstraint(['transformation_id'], ['transformation.id'], name=op.f('fk_transformation_input_transformation_id_transformation')),
    sa.PrimaryKeyConstraint('transformation_id', 'lot_id', name=op.f('pk_transformation_input'))
    )
    op.create_table('transformation_loss',
    sa.Column('transformation_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('post_consumer_g', sa.BigInteger(), nullable=False),
    sa.Column('pre_consumer_g', sa.BigInteger(), nullable=False),
    sa.Column('primary_g', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['transformation_id'], ['transformation.id'], name=op.f('fk_transformation_loss_transformation_id_transformation')),
    sa.PrimaryKeyConstraint('transformation_id', 'position', name=op.f('pk_transformation_loss'))
    )
    op.create_table('transformation_output',
    sa.Column('transformation_id', sa.Uuid(), nullable=False),
    sa.Column('lot_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_transformation_output_lot_id_lot')),
    sa.ForeignKeyConstraint(['transformation_id'], ['transformation.id'], name=op.f('fk_transformation_output_transformation_id_transformation')),
    sa.PrimaryKeyConstraint('transformation_id', 'lot_id', name=op.f('pk_transformation_output'))
    )
    op.create_table('transformation_primary_input',
    sa.Column('transformation_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('metal', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['transformation_id'], ['transformation.id'], name=op.f('fk_transformation_primary_input_transformation_id_transformation')),
    sa.PrimaryKeyConstraint('transformation_id', 'position', name=op.f('pk_transformation_primary_input'))
    )
    op.add_column('lot', sa.Column('destination_use', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))


def downgrade() -> None:
    op.drop_column('lot', 'destination_use')
    op.drop_table('transformation_primary_input')
    op.drop_table('transformation_output')
    op.drop_table('transformation_loss')
    op.drop_table('transformation_input')
    op.drop_index('ix_lot_source_source', table_name='lot_source')
    op.drop_table('lot_source')
    op.drop_index(op.f('ix_transformation_facility_id'), table_name='transformation')
    op.drop_table('transformation')
