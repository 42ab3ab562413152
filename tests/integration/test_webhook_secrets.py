"""No secret written in our source opens a receiver (issue 14, point 1).

Every string in ``KNOWN_PLACEHOLDERS`` (every default that ever appeared in the source,
the tests' old constants, the usual placeholders) is tried as the signature key, the
shared secret and the verify token against each receiver: a hub with no secrets answers
503 ``webhook_not_configured``, one with real secrets 401 (403 for Meta's handshake),
one configured with a placeholder 503, and nothing is ever stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from random_secrets import PERISKOPE_KEY, WHAPI_SECRET
from wahub.config import Settings
from wahub.embedded import free_port
from wahub.runtime import Hub
from wahub.store.schema import inbox
from wahub.webhook_secrets import (
    KNOWN_PLACEHOLDERS,
    RECEIVER_SECRETS,
    PlaceholderSecret,
    refuse_placeholder_secrets,
)

CLOUDAPI_BODY = (
    b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",'
    b'"value":{"statuses":[{"id":"wamid.A","status":"delivered","timestamp":"1700000000"}]}}]}]}'
)
WHAPI_BODY = (
    b'{"messages":[{"id":"m1","from_me":false,"type":"text","chat_id":"491511@s.whatsapp.net",'
    b'"timestamp":1712995245,"text":{"body":"hi"},"from":"491511"}],'
    b'"event":{"type":"messages","event":"post"},"channel_id":"MANTIS-M72HC"}'
)
PERISKOPE_BODY = (
    b'{"event":"message.created","data":{"message_id":"m1","chat_id":"491511@c.us",'
    b'"org_phone":"4930@c.us","body":"hi","message_type":"chat","from_me":false}}'
)

Forge = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


def _hmac(key: str, body: bytes) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


async def _cloudapi(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    headers = {"X-Hub-Signature-256": "sha256=" + _hmac(secret, CLOUDAPI_BODY)}
    return await client.post("/v1/webhooks/cloudapi", content=CLOUDAPI_BODY, headers=headers)


async def _handshake(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    params = {"hub.mode": "subscribe", "hub.verify_token": secret, "hub.challenge": "42"}
    return await client.get("/v1/webhooks/cloudapi", params=params)


async def _whapi_query(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    return await client.post("/v1/webhooks/whapi", params={"secret": secret}, content=WHAPI_BODY)


async def _whapi_header(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    headers = {"X-Wahub-Secret": secret}
    return await client.post("/v1/webhooks/whapi", content=WHAPI_BODY, headers=headers)


def _periskope(path: str) -> Forge:
    async def post(client: httpx.AsyncClient, secret: str) -> httpx.Response:
        headers = {"x-periskope-signature": _hmac(secret, PERISKOPE_BODY)}
        return await client.post(path, content=PERISKOPE_BODY, headers=headers)

    return post


# (receiver, forge, status when the hub has real secrets)
RECEIVERS: list[tuple[str, Forge, int]] = [
    ("cloudapi", _cloudapi, 401),
    ("cloudapi-handshake", _handshake, 403),
    ("whapi-query", _whapi_query, 401),
    ("whapi-header", _whapi_header, 401),
    ("periskope", _periskope("/v1/webhooks/periskope"), 401),
    ("periskopewebhook", _periskope("/periskopewebhook"), 401),
]
RECEIVER_IDS = [name for name, _, _ in RECEIVERS]


async def _stored(hub: Hub) -> int:
    async with hub.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(inbox))).scalar_one())


def _with_every_secret(hub: Hub, value: SecretStr | None) -> None:
    # Handlers read the hub's settings per request.
    hub.settings = hub.settings.model_copy(
        update={spec.setting: value for spec in RECEIVER_SECRETS}
    )


async def _forge_every_placeholder(client: httpx.AsyncClient, forge: Forge) -> dict[str, Any]:
    """{placeholder: (status, error code)} for a delivery forged with each placeholder."""
    answers: dict[str, Any] = {}
    for placeholder in KNOWN_PLACEHOLDERS:
        response = await forge(client, placeholder)
        answers[placeholder] = (response.status_code, response.json()["error"]["code"])
    return answers


@pytest.mark.parametrize(("receiver", "forge", "status"), RECEIVERS, ids=RECEIVER_IDS)
async def test_a_hub_without_secrets_refuses_every_forged_delivery_with_503(
    client: httpx.AsyncClient, hub: Hub, receiver: str, forge: Forge, status: int
) -> None:
    _with_every_secret(hub, None)

    answers = await _forge_every_placeholder(client, forge)

    expected = (503, "webhook_not_configured")
    assert {p: a for p, a in answers.items() if a != expected} == {}, receiver
    assert await _stored(hub) == 0


@pytest.mark.parametrize(("receiver", "forge", "status"), RECEIVERS, ids=RECEIVER_IDS)
async def test_a_hub_with_real_secrets_refuses_every_forged_delivery(
    client: httpx.AsyncClient, hub: Hub, receiver: str, forge: Forge, status: int
) -> None:
    # conftest's settings carry random Cloud API secrets; add the other two.
    hub.settings = hub.settings.model_copy(
        update={
            "whapi_webhook_secret": SecretStr(WHAPI_SECRET),
            "periskope_webhook_secret": SecretStr(PERISKOPE_KEY),
        }
    )

    answers = await _forge_every_placeholder(client, forge)

    assert {p: a for p, a in answers.items() if a[0] != status} == {}, receiver
    assert await _stored(hub) == 0


@pytest.mark.parametrize(("receiver", "forge", "status"), RECEIVERS, ids=RECEIVER_IDS)
async def test_a_receiver_configured_with_a_placeholder_accepts_nothing(
    client: httpx.AsyncClient, hub: Hub, receiver: str, forge: Forge, status: int
) -> None:
    # serve refuses to start like this; an app built another way must still be closed.
    refused: dict[str, Any] = {}
    for placeholder in KNOWN_PLACEHOLDERS:
        _with_every_secret(hub, SecretStr(placeholder))
        response = await forge(client, placeholder)
        refused[placeholder] = (response.status_code, response.json()["error"]["code"])

    expected = (503, "webhook_not_configured")
    assert {p: a for p, a in refused.items() if a != expected} == {}, receiver
    assert await _stored(hub) == 0


@pytest.mark.parametrize("spec", RECEIVER_SECRETS, ids=[s.variable for s in RECEIVER_SECRETS])
def test_a_placeholder_secret_is_refused_naming_its_variable(settings: Settings, spec: Any) -> None:
    # Spelt differently from the list: case and separators do not matter.
    placed = settings.model_copy(update={spec.setting: SecretStr("Change_Me")})

    with pytest.raises(PlaceholderSecret) as refused:
        refuse_placeholder_secrets(placed)

    assert spec.variable in refused.value.message
    assert refused.value.details == {"variables": [spec.variable]}


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_to_start_with_a_placeholder_secret(
    tmp_path: Path, command: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAHUB_")}
    env["WAHUB_DATABASE_URL"] = f"sqlite:///{tmp_path / 'wahub.db'}"
    env["WAHUB_CLOUDAPI_APP_SECRET"] = secrets.token_urlsafe(24)
    env["WAHUB_CLOUDAPI_VERIFY_TOKEN"] = "change-me"  # compose.yaml's old default

    port = ["--port", str(free_port())] if command == "serve" else []
    done = subprocess.run(
        [sys.executable, "-m", "wahub", command, *port],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )

    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 1, output
    assert "WAHUB_CLOUDAPI_VERIFY_TOKEN" in output
    assert "WAHUB_CLOUDAPI_APP_SECRET" not in output, "a random secret is no placeholder"
    assert "Traceback" not in output


def test_compose_ships_no_usable_webhook_secret() -> None:
    compose = (Path(__file__).resolve().parents[2] / "compose.yaml").read_text()
    values = dict(re.findall(r"^\s+(WAHUB_\w+):\s*(.+)$", compose, re.MULTILINE))

    for spec in RECEIVER_SECRETS:
        # ${VAR:?message} (compose refuses to start without it) or ${VAR:-} (unset: 503).
        found = re.fullmatch(r"\$\{(\w+)(:\?|:-)([^}]*)\}", values[spec.variable])
        assert found is not None, f"{spec.variable}: {values[spec.variable]}"
        assert found.group(1) == spec.variable
        assert found.group(2) == ":?" or found.group(3) == "", f"{spec.variable} has a default"
    for required in ("WAHUB_CLOUDAPI_APP_SECRET", "WAHUB_CLOUDAPI_VERIFY_TOKEN"):
        assert values[required].startswith("${" + required + ":?"), values[required]
