"""Every table of every context, gathered for Alembic and the drift check."""

from domain.audit import models as audit_models
from domain.base import metadata
from domain.credits import models as credit_models
from domain.identity import models as identity_models
from domain.industrial_cloud import models as industrial_cloud_models
from domain.lots import models as lot_models
from domain.reference import models as reference_models
from domain.registry import models as registry_models
from domain.shipments import models as shipment_models
from domain.transformations import models as transformation_models
from domain.webhooks import models as webhook_models
from domain.weighbridge import models as weighbridge_models

__all__ = [
    "audit_models",
    "credit_models",
    "identity_models",
    "industrial_cloud_models",
    "lot_models",
    "metadata",
    "reference_models",
    "registry_models",
    "shipment_models",
    "transformation_models",
    "webhook_models",
    "weighbridge_models",
]
