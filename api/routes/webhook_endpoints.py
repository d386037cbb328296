"""Outbound webhook endpoints (admin): register (the signing secret is shown once), list,
disable, and read the delivery log. A URL whose host is a loopback, private, link-local or
metadata address is refused (422) unless RECUR_WEBHOOK_ALLOW_PRIVATE_TARGETS allows it;
names are checked again, resolved, at every delivery (domain/webhook_targets.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from activities.webhook_signing import new_secret
from api.deps import AdminKey, SessionDep, SettingsDep
from api.errors import not_found
from api.idempotency import IdempotencyDep
from api.ids import new_id
from api.operator_schemas import (
    WebhookDeliveryOut,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointOut,
)
from db.delivery_tables import WebhookEndpoint
from db.repositories import notifications
from domain import errors
from domain.webhook_targets import refusal_for_host

router = APIRouter(prefix="/v1/webhook_endpoints", tags=["webhook endpoints"])

DeliveryStatus = Annotated[str | None, Query(pattern="^(retrying|delivered|failed|skipped)$")]


@router.post("", status_code=201, response_model=WebhookEndpointCreated)
async def create_endpoint(
    body: WebhookEndpointCreate,
    idem: IdempotencyDep,
    session: SessionDep,
    settings: SettingsDep,
    key: AdminKey,
) -> object:
    """Events are delivered from now on, signed with the returned secret (shown only here)."""
    reason = refusal_for_host(body.url.host or "")
    if reason is not None and not settings.allows_private_webhook_targets:
        raise errors.WEBHOOK_TARGET_NOT_ALLOWED(
            f"url: webhooks may not target a {reason.replace('_', '-')} address"
        )
    if (replay := await idem.replay()) is not None:
        return replay
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        url=str(body.url),
        events=list(dict.fromkeys(body.events)),
        secret=new_secret(),
        description=body.description,
        created_at=datetime.now(UTC),
    )
    notifications.add_endpoint(session, endpoint)
    out = WebhookEndpointCreated(
        **WebhookEndpointOut.model_validate(endpoint, from_attributes=True).model_dump(),
        secret=endpoint.secret,
    )
    # The secret is shown once: a replay of this request answers with `secret: null`.
    return await idem.respond(201, out, secret="secret")


@router.get("", response_model=list[WebhookEndpointOut])
async def list_endpoints(session: SessionDep, _: AdminKey) -> object:
    return await notifications.all_endpoints(session)


@router.get("/{endpoint_id}", response_model=WebhookEndpointOut)
async def get_endpoint(endpoint_id: str, session: SessionDep, _: AdminKey) -> object:
    endpoint = await notifications.get_endpoint(session, endpoint_id)
    if endpoint is None:
        raise not_found("webhook endpoint", endpoint_id)
    return endpoint


@router.delete("/{endpoint_id}", response_model=WebhookEndpointOut)
async def disable_endpoint(endpoint_id: str, session: SessionDep, _: AdminKey) -> object:
    """Stop delivering to this endpoint (pending deliveries are skipped); the log stays."""
    endpoint = await notifications.get_endpoint(session, endpoint_id)
    if endpoint is None:
        raise not_found("webhook endpoint", endpoint_id)
    notifications.disable_endpoint(session, endpoint)
    return endpoint


@router.get("/{endpoint_id}/deliveries", response_model=list[WebhookDeliveryOut])
async def list_deliveries(
    endpoint_id: str,
    session: SessionDep,
    _: AdminKey,
    status: DeliveryStatus = None,
    event_id: str | None = None,
    subscription_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """The delivery log of one endpoint, newest first."""
    if await notifications.get_endpoint(session, endpoint_id) is None:
        raise not_found("webhook endpoint", endpoint_id)
    return await notifications.deliveries(
        session,
        endpoint_id,
        status=status,
        event_id=event_id,
        subscription_id=subscription_id,
        limit=limit,
    )
