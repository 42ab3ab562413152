"""Operations (``/ui/operations``, admins only): API keys, created (the key shown once,
on the answer to the form, never again) and revoked.

The same ``AccessControl`` calls as ``POST/GET/DELETE /v1/admin/keys``; anyone but an
admin gets 403, whatever the link or form.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from wahub.api.errors import status_for
from wahub.domain.errors import PermissionDenied, ValidationError
from wahub.ui.auth import Page, SignedIn, checked_form, hub_of, text_field
from wahub.ui.rendering import render

router = APIRouter(prefix="/ui", include_in_schema=False)


def _require_admin(page: Page) -> None:
    if not page.is_admin:
        raise PermissionDenied(
            f"operations are for admins (you are signed in as {page.actor.role.value})"
        )


@router.get("/operations")
async def operations_page(request: Request, page: SignedIn) -> Response:
    """Every API key (prefix, user, role, state; never a secret)."""
    _require_admin(page)
    return await _page(request, page)


@router.post("/operations/keys")
async def create_key(request: Request, page: SignedIn) -> Response:
    """Create a key and show it once; a bad field is named beside it, the form kept."""
    _require_admin(page)
    form = await checked_form(request, page.session)
    user, role = text_field(form, "user")[:200], text_field(form, "role")
    try:
        created = await hub_of(request).access.create_key(user_name=user, role=role)
    except ValidationError as exc:
        field = str(exc.details.get("field", "user"))
        return await _page(
            request,
            page,
            errors={field: exc.message},
            typed={"user": user, "role": role},
            status_code=status_for(exc),
        )
    return await _page(request, page, created=created.key, created_for=created.user_name)


@router.post("/operations/keys/{key_id}/revoke")
async def revoke_key(request: Request, page: SignedIn, key_id: str) -> Response:
    """Revoke a key at once (a dashboard session opened with it ends too)."""
    _require_admin(page)
    await checked_form(request, page.session)
    await hub_of(request).access.revoke_key(key_id)
    return RedirectResponse("/ui/operations", status_code=303)


async def _page(
    request: Request,
    page: Page,
    *,
    created: str | None = None,
    created_for: str | None = None,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    keys = await hub_of(request).access.list_keys()
    return render(
        "operations.html",
        page.context(
            title="Operations",
            keys=keys,
            created=created,
            created_for=created_for,
            errors=errors or {},
            typed=typed or {"user": "", "role": "agent"},
            roles=["admin", "agent", "viewer"],
        ),
        status_code=status_code,
    )
