from __future__ import annotations

import uuid

from fastapi import Response

from api.deps import AppSettings, CurrentActor, Session, etag
from api.problems import responses
from api.routes import resource_router
from api.schemas.transformations import TransformationCreate, TransformationOut, VoidIn
from api.uow import Idempotent
from domain.lots.rules import LotKind
from domain.mass import kg_to_g
from domain.transformations import service as transformations

router = resource_router("custody")


def _run(body: TransformationCreate) -> transformations.Run:
    energy = body.energy
    return transformations.Run(
        facility_id=body.facility_id,
        process=body.process,
        started_at=body.started_at,
        ended_at=body.ended_at,
        inputs=[transformations.Take(i.lot_id, kg_to_g(i.kg)) for i in body.inputs],
        primary_inputs=[
            transformations.Primary(p.metal, kg_to_g(p.kg), p.description)
            for p in body.primary_inputs
        ],
        outputs=[
            transformations.Output(
                kind=LotKind(o.kind),
                metal=o.metal,
                grams=kg_to_g(o.kg),
                category=o.category,
                product_form=o.product_form,
                destination_use=o.destination_use,
            )
            for o in body.outputs
        ],
        losses=[transformations.Loss(x.kind.value, kg_to_g(x.kg)) for x in body.losses],
        electricity_kwh=energy.electricity_kwh if energy else None,
        natural_gas_m3=energy.natural_gas_m3 if energy else None,
        other_fuel_kgce=energy.other_fuel_kgce if energy else None,
    )


@router.post(
    "/transformations",
    status_code=201,
    response_model=TransformationOut,
    dependencies=[Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Record a process run: inputs + primary inputs = outputs + losses, to the gram",
)
async def record(
    body: TransformationCreate,
    session: Session,
    actor: CurrentActor,
    settings: AppSettings,
    response: Response,
) -> TransformationOut:
    recorded = await transformations.record(
        session, actor, _run(body), credit_period_days=settings.credit_period_days
    )
    response.headers["Location"] = f"/api/v1/transformations/{recorded.transformation.id}"
    response.headers["ETag"] = etag(recorded.transformation.version)
    return TransformationOut.of(recorded)


@router.get(
    "/transformations/{transformation_id}",
    response_model=TransformationOut,
    responses=responses(401, 404, 422),
    summary="One run, with its inputs, outputs and losses",
)
async def get(
    transformation_id: uuid.UUID, session: Session, actor: CurrentActor
) -> TransformationOut:
    return TransformationOut.of(
        await transformations.get_transformation(session, actor, transformation_id)
    )


@router.post(
    "/transformations/{transformation_id}/void",
    response_model=TransformationOut,
    dependencies=[Idempotent],
    responses=responses(401, 403, 404, 409, 422),
    summary="Void a run while none of its outputs has moved; the inputs get back what was taken",
)
async def void(
    transformation_id: uuid.UUID, body: VoidIn, session: Session, actor: CurrentActor
) -> TransformationOut:
    return TransformationOut.of(
        await transformations.void(session, actor, transformation_id, body.reason)
    )
