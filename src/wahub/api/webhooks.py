"""Provider webhooks: verify, store, acknowledge. Nothing else happens in the request.

Order matters (invariant 9): size limit before reading, signature before storing,
commit before ``200``. The body is never parsed here: the inbox processor parses it in
its own retryable step, and turns a malformed body into a dead letter with the reason.
(The WHAPI and Periskope dedupe keys peek at the provider's ids, tolerating any body.)

Authenticity per provider: Cloud API and Periskope sign the body (HMAC-SHA256 with the
app secret / Signing Key); WHAPI signs nothing, so its webhook URL carries a secret of
ours (``?secret=`` or ``X-Wahub-Secret``). A receiver whose secret is not configured
(or is a placeholder from our public source, see ``wahub.webhook_secrets``) answers
``503 webhook_not_configured``, the handshake included: accepting unauthenticated
deliveries would let anyone write into conversations, and a 5xx makes the provider retry
until the operator sets the secret.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from wahub.api.auth import HubDep
from wahub.api.bodies import read_limited_body
from wahub.api.errors import ErrorOut, error_response
from wahub.domain.errors import AuthenticationFailed
from wahub.providers.cloudapi.webhooks import SIGNATURE_HEADER, verify_handshake, verify_signature
from wahub.providers.periskope import webhooks as periskope_webhooks
from wahub.providers.whapi import webhooks as whapi_webhooks
from wahub.webhook_secrets import secret_value

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

# Kept with the delivery for debugging and audit. The signature is an HMAC of the body,
# not a secret; Authorization-style headers are never kept.
_KEPT_HEADERS = ("content-type", "user-agent", "x-hub-signature-256")

_OK = b'{"status":"ok"}'
_LIMIT = "WAHUB_MAX_WEBHOOK_BYTES"
# Meta's handshake values are short tokens; the secret in WHAPI's URL is ours.
_HANDSHAKE_MAX = 500


@router.get(
    "/cloudapi",
    response_class=PlainTextResponse,
    responses={
        403: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "WAHUB_CLOUDAPI_VERIFY_TOKEN is not set"},
    },
    summary="Meta's verification handshake",
)
async def cloudapi_handshake(
    request: Request,
    hub: HubDep,
    _mode: Annotated[str | None, Query(alias="hub.mode", max_length=_HANDSHAKE_MAX)] = None,
    _token: Annotated[
        str | None, Query(alias="hub.verify_token", max_length=_HANDSHAKE_MAX)
    ] = None,
    _challenge: Annotated[
        str | None, Query(alias="hub.challenge", max_length=_HANDSHAKE_MAX)
    ] = None,
) -> Response:
    """Echo ``hub.challenge`` when ``hub.mode=subscribe`` and the verify token matches."""
    token = secret_value(hub.settings.cloudapi_verify_token)
    if token is None:
        return _not_configured("Cloud API", "WAHUB_CLOUDAPI_VERIFY_TOKEN")
    challenge = verify_handshake(request.query_params, token)
    if challenge is None:
        return error_response(
            403, "forbidden", "webhook verification failed: wrong hub.mode or hub.verify_token"
        )
    return PlainTextResponse(challenge)


@router.post(
    "/cloudapi",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ok"}}}},
        401: {"model": ErrorOut, "description": "Missing or wrong X-Hub-Signature-256"},
        413: {"model": ErrorOut},
        503: {"model": ErrorOut, "description": "WAHUB_CLOUDAPI_APP_SECRET is not set"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
    summary="Receive Cloud API status webhooks",
)
async def cloudapi_webhook(request: Request, hub: HubDep) -> Response:
    """Store a signed delivery once (a redelivery is acknowledged, not stored twice)."""
    settings = hub.settings
    secret = secret_value(settings.cloudapi_app_secret)
    if secret is None:
        return _not_configured("Cloud API", "WAHUB_CLOUDAPI_APP_SECRET")
    body = await read_limited_body(request, settings.max_webhook_bytes, setting=_LIMIT)
    if not verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise AuthenticationFailed(f"missing or invalid {SIGNATURE_HEADER} signature")
    headers = {name: value for name in _KEPT_HEADERS if (value := request.headers.get(name))}
    # Durable before the 200: the intake commits this row (with whatever other
    # deliveries arrived meanwhile) and only then lets us answer.
    await hub.intake.store(
        provider="cloudapi",
        dedupe_key=hashlib.sha256(body).hexdigest(),
        headers=headers,
        body=body,
    )
    return Response(_OK, media_type="application/json")


_WHAPI_KEPT_HEADERS = ("content-type", "user-agent")
_PERISKOPE_KEPT_HEADERS = ("content-type", "user-agent", periskope_webhooks.SIGNATURE_HEADER)

_STORED_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": {"status": "ok"}}}},
    413: {"model": ErrorOut},
    503: {"model": ErrorOut, "description": "The receiver's secret is not configured"},
}
_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post(
    "/whapi",
    responses={
        **_STORED_RESPONSES,
        401: {"model": ErrorOut, "description": "Missing or wrong secret"},
    },
    openapi_extra=_JSON_BODY,
    summary="Receive WHAPI webhooks (messages, statuses, any other event)",
)
async def whapi_webhook(
    request: Request,
    hub: HubDep,
    _secret: Annotated[
        str | None,
        Query(
            alias=whapi_webhooks.SECRET_QUERY,
            max_length=_HANDSHAKE_MAX,
            description="WAHUB_WHAPI_WEBHOOK_SECRET (or send it as X-Wahub-Secret)",
        ),
    ] = None,
) -> Response:
    """Store a delivery carrying our shared secret once, whatever its event family."""
    settings = hub.settings
    secret = secret_value(settings.whapi_webhook_secret)
    if secret is None:
        return _not_configured("WHAPI", "WAHUB_WHAPI_WEBHOOK_SECRET")
    # The secret is in the URL, so it is checked before a byte of the body is read.
    if not whapi_webhooks.verify_secret(
        secret,
        request.query_params.get(whapi_webhooks.SECRET_QUERY),
        request.headers.get(whapi_webhooks.SECRET_HEADER),
    ):
        raise AuthenticationFailed(
            f"missing or wrong webhook secret (?{whapi_webhooks.SECRET_QUERY}= "
            f"or {whapi_webhooks.SECRET_HEADER})"
        )
    body = await read_limited_body(request, settings.max_webhook_bytes, setting=_LIMIT)
    await hub.intake.store(
        provider=whapi_webhooks.PROVIDER,
        dedupe_key=whapi_webhooks.dedupe_key(body),
        headers=_kept(request, _WHAPI_KEPT_HEADERS),
        body=body,
    )
    return Response(_OK, media_type="application/json")


# Also documents the same receiver under seed 002's path (``POST /periskopewebhook``).
PERISKOPE_DOCS: dict[str, Any] = {
    "responses": {
        **_STORED_RESPONSES,
        401: {"model": ErrorOut, "description": "Missing or wrong x-periskope-signature"},
    },
    "openapi_extra": _JSON_BODY,
}


@router.post(
    "/periskope",
    **PERISKOPE_DOCS,
    summary="Receive Periskope webhooks (message.created, any other event)",
)
async def periskope_webhook(request: Request, hub: HubDep) -> Response:
    """Store a signed delivery once (``POST /periskopewebhook`` is the same handler)."""
    settings = hub.settings
    secret = secret_value(settings.periskope_webhook_secret)
    if secret is None:
        return _not_configured("Periskope", "WAHUB_PERISKOPE_WEBHOOK_SECRET")
    body = await read_limited_body(request, settings.max_webhook_bytes, setting=_LIMIT)
    header = request.headers.get(periskope_webhooks.SIGNATURE_HEADER)
    if not periskope_webhooks.verify_signature(secret, body, header):
        raise AuthenticationFailed(
            f"missing or invalid {periskope_webhooks.SIGNATURE_HEADER} signature"
        )
    await hub.intake.store(
        provider=periskope_webhooks.PROVIDER,
        dedupe_key=periskope_webhooks.dedupe_key(body),
        headers=_kept(request, _PERISKOPE_KEPT_HEADERS),
        body=body,
    )
    return Response(_OK, media_type="application/json")


def _not_configured(provider: str, setting: str) -> Response:
    return error_response(
        503,
        "webhook_not_configured",
        f"{provider} webhooks are off: set {setting} to your secret (unset, or a "
        "placeholder from wahub's source, authenticates nobody); the provider retries "
        "meanwhile",
    )


def _kept(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {name: value for name in names if (value := request.headers.get(name))}
