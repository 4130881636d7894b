"""custody: lots, shipments, discrepancies

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 12:35:45.826531
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate emits sqlmodel.sql.sqltypes.AutoString)
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Serial numbers behind the printable lot codes.
    # Serial numbers behind the printable lot codes; each nextval reserves a block of 100 for the
    # calling process (domain/lots/service.py, CODE_BLOCK).
    op.execute("CREATE SEQUENCE lot_code_seq START WITH 100 INCREMENT BY 100")
    op.create_table('lot',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('metal', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('product_form', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('net_g', sa.BigInteger(), nullable=False),
    sa.Column('post_consumer_g', sa.BigInteger(), nullable=False),
    sa.Column('pre_consumer_g', sa.BigInteger(), nullable=False),
    sa.Column('primary_g', sa.BigInteger(), nullable=False),
    sa.Column('consumer_class', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('origin', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('import_country', sqlmodel.sql.sqltypes.AutoString(length=2), nullable=True),
    sa.Column('customs_declaration_no', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('conformity_standard', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('collected_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('seller_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('seller_name_masked', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('seller_id_masked', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('seller_sealed', sa.LargeBinary(), nullable=True),
    sa.Column('registered_facility_id', sa.Uuid(), nullable=False),
    sa.Column('holder_facility_id', sa.Uuid(), nullable=False),
    sa.Column('holder_enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('parent_lot_id', sa.Uuid(), nullable=True),
    sa.Column('enterprise_ids', postgresql.ARRAY(sa.Uuid()), nullable=False),
    sa.Column('region_prefixes', postgresql.ARRAY(sa.String(length=6)), nullable=False),
    sa.Column('facility_ids', postgresql.ARRAY(sa.Uuid()), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('net_g > 0', name=op.f('ck_lot_net_positive')),
    sa.CheckConstraint('post_consumer_g + pre_consumer_g + primary_g = net_g', name=op.f('ck_lot_composition_sums_to_net')),
    sa.CheckConstraint('post_consumer_g >= 0 AND pre_consumer_g >= 0 AND primary_g >= 0', name=op.f('ck_lot_composition_not_negative')),
    sa.ForeignKeyConstraint(['holder_enterprise_id'], ['enterprise.id'], name=op.f('fk_lot_holder_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['holder_facility_id'], ['facility.id'], name=op.f('fk_lot_holder_facility_id_facility')),
    sa.ForeignKeyConstraint(['parent_lot_id'], ['lot.id'], name=op.f('fk_lot_parent_lot_id_lot')),
    sa.ForeignKeyConstraint(['registered_facility_id'], ['facility.id'], name=op.f('fk_lot_registered_facility_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lot')),
    sa.UniqueConstraint('code', name=op.f('uq_lot_code'))
    )
    op.create_index('ix_lot_enterprise_ids', 'lot', ['enterprise_ids'], unique=False, postgresql_using='gin')
    op.create_index('ix_lot_holder', 'lot', ['holder_facility_id', 'status', 'id'], unique=False)
    op.create_index('ix_lot_parent', 'lot', ['parent_lot_id'], unique=False, postgresql_where=sa.text('parent_lot_id IS NOT NULL'))
    op.create_index('ix_lot_region_prefixes', 'lot', ['region_prefixes'], unique=False, postgresql_using='gin')
    op.create_index(op.f('ix_lot_status'), 'lot', ['status'], unique=False)
    op.create_table('shipment',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('from_facility_id', sa.Uuid(), nullable=False),
    sa.Column('to_facility_id', sa.Uuid(), nullable=False),
    sa.Column('sender_enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('receiver_enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('from_region', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('to_region', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
    sa.Column('carrier', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('vehicle_plate', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('vehicle_energy', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('emission_standard', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('distance_km', sa.Numeric(precision=9, scale=1), nullable=True),
    sa.Column('dispatched_g', sa.BigInteger(), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('weighbridge_ticket_no', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint('from_facility_id <> to_facility_id', name=op.f('ck_shipment_moves_somewhere')),
    sa.ForeignKeyConstraint(['from_facility_id'], ['facility.id'], name=op.f('fk_shipment_from_facility_id_facility')),
    sa.ForeignKeyConstraint(['receiver_enterprise_id'], ['enterprise.id'], name=op.f('fk_shipment_receiver_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['sender_enterprise_id'], ['enterprise.id'], name=op.f('fk_shipment_sender_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['to_facility_id'], ['facility.id'], name=op.f('fk_shipment_to_facility_id_facility')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shipment'))
    )
    op.create_index('ix_shipment_receiver', 'shipment', ['receiver_enterprise_id', 'id'], unique=False)
    op.create_index('ix_shipment_sender', 'shipment', ['sender_enterprise_id', 'id'], unique=False)
    op.create_table('discrepancy',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('shipment_id', sa.Uuid(), nullable=False),
    sa.Column('lot_id', sa.Uuid(), nullable=False),
    sa.Column('sender_enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('receiver_enterprise_id', sa.Uuid(), nullable=False),
    sa.Column('from_region', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('to_region', sqlmodel.sql.sqltypes.AutoString(length=6), nullable=False),
    sa.Column('metal', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('dispatched_g', sa.BigInteger(), nullable=False),
    sa.Column('received_g', sa.BigInteger(), nullable=False),
    sa.Column('difference_g', sa.BigInteger(), nullable=False),
    sa.Column('tolerance_g', sa.BigInteger(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sender_note', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
    sa.Column('opened_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_discrepancy_lot_id_lot')),
    sa.ForeignKeyConstraint(['receiver_enterprise_id'], ['enterprise.id'], name=op.f('fk_discrepancy_receiver_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['sender_enterprise_id'], ['enterprise.id'], name=op.f('fk_discrepancy_sender_enterprise_id_enterprise')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipment.id'], name=op.f('fk_discrepancy_shipment_id_shipment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_discrepancy'))
    )
    op.create_index(op.f('ix_discrepancy_shipment_id'), 'discrepancy', ['shipment_id'], unique=False)
    op.create_index('ix_discrepancy_status', 'discrepancy', ['status', 'id'], unique=False)
    op.create_table('shipment_item',
    sa.Column('shipment_id', sa.Uuid(), nullable=False),
    sa.Column('lot_id', sa.Uuid(), nullable=False),
    sa.Column('status_before', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('dispatched_g', sa.BigInteger(), nullable=False),
    sa.Column('received_g', sa.BigInteger(), nullable=True),
    sa.Column('refused_g', sa.BigInteger(), nullable=True),
    sa.Column('difference_g', sa.BigInteger(), nullable=True),
    sa.Column('refusal_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('refused_lot_id', sa.Uuid(), nullable=True),
    sa.CheckConstraint('received_g IS NULL OR received_g > 0', name=op.f('ck_shipment_item_received_positive')),
    sa.CheckConstraint('refused_g IS NULL OR (refused_g >= 0 AND refused_g <= received_g)', name=op.f('ck_shipment_item_refused_within_received')),
    sa.ForeignKeyConstraint(['lot_id'], ['lot.id'], name=op.f('fk_shipment_item_lot_id_lot')),
    sa.ForeignKeyConstraint(['refused_lot_id'], ['lot.id'], name=op.f('fk_shipment_item_refused_lot_id_lot')),
    sa.ForeignKeyConstraint(['shipment_id'], ['shipment.id'], name=op.f('fk_shipment_item_shipment_id_shipment')),
    sa.PrimaryKeyConstraint('shipment_id', 'lot_id', name=op.f('pk_shipment_item'))
    )
    op.create_index('ix_shipment_item_lot', 'shipment_item', ['lot_id'], unique=False)
    op.add_column('event', sa.Column('lot_ids', postgresql.ARRAY(sa.Uuid()), server_default=sa.text("'{}'"), nullable=False))
    op.create_index('ix_event_lot_ids', 'event', ['lot_ids'], unique=False, postgresql_using='gin')


def downgrade() -> None:
    op.execute("DROP SEQUENCE lot_code_seq")
    op.drop_index('ix_event_lot_ids', table_name='event', postgresql_using='gin')
    op.drop_column('event', 'lot_ids')
    op.drop_index('ix_shipment_item_lot', table_name='shipment_item')
    op.drop_table('shipment_item')
    op.drop_index('ix_discrepancy_status', table_name='discrepancy')
    op.drop_index(op.f('ix_discrepancy_shipment_id'), table_name='discrepancy')
    op.drop_table('discrepancy')
    op.drop_index('ix_shipment_sender', table_name='shipment')
    op.drop_index('ix_shipment_receiver', table_name='shipment')
    op.drop_table('shipment')
    op.drop_index(op.f('ix_lot_status'), table_name='lot')
    op.drop_index('ix_lot_region_prefixes', table_name='lot', postgresql_using='gin')
    op.drop_index('ix_lot_parent', table_name='lot', postgresql_where=sa.text('parent_lot_id IS NOT NULL'))
    op.drop_index('ix_lot_holder', table_name='lot')
    op.drop_index('ix_lot_enterprise_ids', table_name='lot', postgresql_using='gin')
    op.drop_table('lot')
