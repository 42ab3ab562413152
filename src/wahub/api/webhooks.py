"""Provider webhooks: verify, store, acknowledge. Nothing else happens in the request.

Order matters (invariant 9): size limit before reading, signature before storing,
commit before ``200``. The body is never parsed here: the inbox processor parses it in
its own retryable step, and turns a malformed body into a dead letter with the reason.
(The WHAPI and Periskope dedupe keys peek at the provider's ids, tolerating any body.)

The POST routes are not written here one by one: each provider declares its receiver
(``providers/<name>/spec.py``: how to verify, the dedupe key, the parser, the secret's
setting) and ``providers.catalog`` lists them; a route is made for every receiver that
takes webhooks. Authenticity per provider: Cloud API and Periskope sign the body
(HMAC-SHA256 with the app secret / Signing Key); WHAPI signs nothing, so its webhook URL
carries a secret of ours (``?secret=`` or ``X-Wahub-Secret``). A receiver whose secret is
not configured (or is a placeholder from our public source, see
``wahub.webhook_secrets``) answers ``503 webhook_not_configured``, the handshake
included: accepting unauthenticated deliveries would let anyone write into
conversations, and a 5xx makes the provider retry until the operator sets the secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from wahub.api.auth import HubDep
from wahub.api.bodies import read_limited_body
from wahub.api.errors import ErrorOut, error_response
from wahub.domain.errors import AuthenticationFailed
from wahub.providers import catalog
from wahub.providers.cloudapi.webhooks import verify_handshake
from wahub.providers.spec import Receiver, WebhookAuth, WebhookRequest
from wahub.runtime import Hub
from wahub.webhook_secrets import secret_value

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

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


def _webhook(receiver: Receiver) -> WebhookAuth:
    if receiver.webhook is None:
        raise ValueError(f"receiver {receiver.provider!r} takes no webhooks")
    return receiver.webhook


def receive_handler(receiver: Receiver) -> Callable[[Request, Hub], Awaitable[Response]]:
    """The endpoint storing ``receiver``'s webhook deliveries: secret configured (else
    503), authentic (else 401; before the body is read when the secret is in the URL),
    within the size limit (else 413), stored once under its dedupe key, then 200.
    Raises ``ValueError`` for a receiver that takes no webhooks."""
    webhook = _webhook(receiver)

    async def receive(request: Request, hub: HubDep) -> Response:
        settings = hub.settings
        secret = secret_value(getattr(settings, webhook.secret_setting))
        if secret is None:
            return _not_configured(webhook.label, webhook.secret_env)
        if not webhook.reads_body and not webhook.verify(
            secret, WebhookRequest(request.headers, request.query_params)
        ):
            raise AuthenticationFailed(webhook.failure)
        body = await read_limited_body(request, settings.max_webhook_bytes, setting=_LIMIT)
        if webhook.reads_body and not webhook.verify(
            secret, WebhookRequest(request.headers, request.query_params, body)
        ):
            raise AuthenticationFailed(webhook.failure)
        # Durable before the 200: the intake commits this row (with whatever other
        # deliveries arrived meanwhile) and only then lets us answer.
        await hub.intake.store(
            provider=receiver.provider,
            dedupe_key=receiver.dedupe_key(body),
            headers=_kept(request, webhook.kept_headers),
            body=body,
        )
        return Response(_OK, media_type="application/json")

    receive.__name__ = f"{receiver.provider}_webhook"
    receive.__doc__ = (
        "Store an authentic delivery once (a redelivery is acknowledged, not stored twice)."
    )
    return receive


def receive_docs(receiver: Receiver) -> dict[str, Any]:
    """The OpenAPI description of a receiver's route: its errors and its JSON body."""
    webhook = _webhook(receiver)
    extra: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    if webhook.secret_query is not None:
        extra["parameters"] = [
            {
                "name": webhook.secret_query,
                "in": "query",
                "required": False,
                "schema": {"type": "string", "maxLength": _HANDSHAKE_MAX},
                "description": f"{webhook.secret_env} (or send it in a header)",
            }
        ]
    return {
        "responses": {
            200: {"content": {"application/json": {"example": {"status": "ok"}}}},
            401: {"model": ErrorOut, "description": webhook.failure},
            413: {"model": ErrorOut},
            503: {"model": ErrorOut, "description": f"{webhook.secret_env} is not set"},
        },
        "openapi_extra": extra,
    }


# One POST route per receiver that takes webhooks, from the providers' declarations.
for _receiver in catalog.RECEIVERS.values():
    if _receiver.webhook is not None:
        router.add_api_route(
            f"/{_receiver.provider}",
            receive_handler(_receiver),
            methods=["POST"],
            name=f"{_receiver.provider}_webhook",
            summary=_receiver.webhook.summary,
            **receive_docs(_receiver),
        )


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
