"""``PATCH /v1/leads/{id}`` and ``PATCH /v1/contacts/{id}``: what a CRM changes on them.

Writers only (admins and agents); agents only the contacts and leads of conversations
they see (others are 404). Each change is replicated (the change log) and published on
``/v1/stream`` (``lead.updated``, ``contact.updated``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from wahub.api.auth import HubDep, WriterDep
from wahub.api.bodies import JsonBodyRoute
from wahub.api.params import ID_MAX_LENGTH, IdPath
from wahub.api.responses import JsonResponse
from wahub.api.serializers import contact_out, lead_out
from wahub.domain.errors import ValidationError
from wahub.store.conversations import LEAD_STATUSES

router = APIRouter(prefix="/v1", route_class=JsonBodyRoute)


class LeadPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A plain string, not an enum: an unknown status is answered by the feature with
    # the allowed ones listed in the error's details.
    status: str | None = Field(
        default=None, max_length=32, description="One of " + ", ".join(LEAD_STATUSES) + "."
    )
    owner_user_id: str | None = Field(
        default=None, max_length=ID_MAX_LENGTH, description="A user id, or null for no owner."
    )


class ContactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        max_length=300,
        description="Null or empty clears it; a name set here outranks WhatsApp profile names.",
    )
    attributes: Any = Field(
        default=None,
        description="A JSON object replacing the contact's attributes (at most 16 KiB as "
        "JSON, 8 levels deep); null clears them.",
    )


def set_fields(body: BaseModel) -> dict[str, Any]:
    """The fields the client sent (``null`` included). Raises ValidationError when none."""
    fields = body.model_dump(mode="json", exclude_unset=True)
    if not fields:
        names = ", ".join(type(body).model_fields)
        raise ValidationError(
            f"nothing to change: send at least one of {names}", details={"fields": names}
        )
    return fields


@router.patch("/leads/{lead_id}", tags=["leads"], summary="Change a lead's status or owner")
async def update_lead(lead_id: IdPath, body: LeadPatch, hub: HubDep, actor: WriterDep) -> Response:
    edited = await hub.records.update_lead(actor, lead_id, set_fields(body))
    hub.realtime.publish(edited.event)
    return JsonResponse(lead_out(edited.row))


@router.patch(
    "/contacts/{contact_id}", tags=["contacts"], summary="Change a contact's name or attributes"
)
async def update_contact(
    contact_id: IdPath, body: ContactPatch, hub: HubDep, actor: WriterDep
) -> Response:
    edited = await hub.records.update_contact(actor, contact_id, set_fields(body))
    hub.realtime.publish(edited.event)
    return JsonResponse(contact_out(edited.row))
