"""The rules of scrapflow, one package per bounded context.

Nothing here imports `api`, `integrations`, FastAPI or httpx (tests/unit/test_import_rule.py).
"""

from sqlmodel import SQLModel

# Set before any table is declared: constraint names are fixed when a table is built.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
