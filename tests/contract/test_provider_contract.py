"""One contract for every provider adapter, run against the real sandbox over HTTP.

Every test runs once per provider in ``providers.catalog`` and skips by what the
provider declares (its ``ProviderSpec``), never by name: a new provider gets the whole
suite by declaring itself and saying, in ``SANDBOX`` below, how the sandbox plays it.
Adapters are built the way the hub builds them, by ``ProviderRegistry`` from a channel
row with sealed credentials. The receiver round trip stores into a real inbox, so it
runs on every store backend.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from sealing import TEST_CIPHER
from wahub.domain.errors import NotFound, PermanentProviderError, RetryableProviderError
from wahub.providers import catalog
from wahub.providers.base import OutboundMessage
from wahub.providers.registry import ProviderRegistry
from wahub.providers.sandbox import Sandbox, SandboxConfig
from wahub.providers.spec import Capability, ProviderSpec, WebhookRequest
from wahub.store import inbox as inbox_q
from wahub.store.database import Database
from webhook_catcher import WebhookCatcher

StartSandbox = Callable[..., Awaitable[tuple[Sandbox, str]]]

CLOUDAPI_TOKEN = "contract-cloudapi-token"
PERSON = "4915112345678"


@dataclass(frozen=True)
class SandboxSide:
    """How a channel of one kind reaches the sandbox, and the knobs that make the sandbox
    misbehave for it or send its webhooks somewhere.

    ``too_many`` makes its API answer 429 with a Retry-After (possibly after one request
    allowed); ``webhooks(url, secret)`` sends its inbound webhooks to ``url``,
    authenticated with ``secret``.
    """

    path: str
    credentials: dict[str, str]
    wrong_credentials: dict[str, str]
    channel: dict[str, Any]
    too_many: dict[str, Any]
    webhooks: Callable[[str, str], dict[str, Any]]


SANDBOX: dict[str, SandboxSide] = {
    "cloudapi": SandboxSide(
        path="",
        credentials={"access_token": CLOUDAPI_TOKEN},
        wrong_credentials={"access_token": "not-the-token"},
        channel={"phone_number_id": "106540352242922", "api_version": "21.0"},
        too_many={"rate_http_429": 1.0, "retry_after_s": 7.0},
        webhooks=lambda url, secret: {"webhook_url": url, "app_secret": secret},
    ),
    "whapi": SandboxSide(
        path="/whapi",
        credentials={"token": SandboxConfig().whapi_token or ""},
        wrong_credentials={"token": "not-the-token"},
        channel={"phone_number": "+" + SandboxConfig().whapi_own_phone},
        too_many={"whapi_rate_limit": 1, "whapi_rate_window_s": 60.0},
        webhooks=lambda url, secret: {"whapi_webhook_url": url, "whapi_webhook_secret": secret},
    ),
    "periskope": SandboxSide(
        path="/periskope",
        credentials={"api_key": SandboxConfig().periskope_api_key or ""},
        wrong_credentials={"api_key": "not-the-key"},
        channel={"phone_number": "+" + SandboxConfig().periskope_org_phone},
        too_many={"periskope_fail_status": 429, "periskope_retry_after_s": 7.0},
        webhooks=lambda url, secret: {
            "periskope_webhook_url": url,
            "periskope_signing_key": secret,
        },
    ),
}

# What a message of each type looks like (stored content, Cloud API shape).
CONTENT: dict[str, dict[str, Any]] = {
    "text": {"type": "text", "text": {"body": "contract"}},
    "template": {
        "type": "template",
        "template": {"name": "hello_world", "language": {"code": "en_US"}},
    },
    "image": {"type": "image", "image": {"link": "https://example.com/cat.jpg"}},
}


# Session providers (web) hold a linked phone, not an HTTP API: their engines meet the
# web session port's own contract (test_web_engine_contract.py) and the session process
# its tests (test_web_sessions.py).
@pytest.fixture(
    params=[kind for kind in catalog.kinds() if kind not in catalog.kinds_with(Capability.SESSION)]
)
def spec(request: pytest.FixtureRequest) -> ProviderSpec:
    found = catalog.spec_for(request.param)
    assert found is not None
    assert found.kind in SANDBOX, f"say in SANDBOX how the sandbox plays {found.kind!r}"
    return found


def require(spec: ProviderSpec, capability: Capability) -> None:
    if not spec.supports(capability):
        pytest.skip(f"{spec.kind} does not declare {capability.value}")


@pytest.fixture
async def registry() -> AsyncIterator[ProviderRegistry]:
    registry = ProviderRegistry(TEST_CIPHER, timeout_s=10.0)
    yield registry
    await registry.close()


Channel = Callable[..., Awaitable[tuple[Sandbox, dict[str, Any]]]]


@pytest.fixture
def channel(spec: ProviderSpec, start_sandbox: StartSandbox) -> Channel:
    """Start a sandbox with the given knobs; a channel row of ``spec``'s kind on it."""

    async def start(*, wrong_token: bool = False, **knobs: Any) -> tuple[Sandbox, dict[str, Any]]:
        side = SANDBOX[spec.kind]
        sandbox, url = await start_sandbox(access_token=CLOUDAPI_TOKEN, **knobs)
        credentials = side.wrong_credentials if wrong_token else side.credentials
        row = {
            "id": f"ch_contract_{spec.kind}",
            "kind": spec.kind,
            "name": f"contract-{spec.kind}",
            "base_url": url + side.path,
            "credentials": TEST_CIPHER.seal(credentials),
            "phone_number": None,
            "phone_number_id": None,
            "api_version": None,
            **side.channel,
        }
        return sandbox, row

    return start


def message(message_type: str = "text") -> OutboundMessage:
    return OutboundMessage(
        tracking_id="msg_contract",
        recipient=PERSON,
        is_group=False,
        content=CONTENT[message_type],
    )


async def first_call(
    registry: ProviderRegistry, capability: Capability, row: dict[str, Any]
) -> object:
    """One call of the port ``capability`` names, the cheapest it has."""
    if capability is Capability.SEND:
        return await registry.for_channel(row).send(message())
    if capability is Capability.GROUPS:
        return await registry.groups_for_channel(row).list_groups(count=1)
    return await registry.chats_for_channel(row).list_chats(limit=1)


async def first_refusal(
    registry: ProviderRegistry, capability: Capability, row: dict[str, Any]
) -> Exception | None:
    """The error of the first of two calls that fails (a fixed-window rate limit lets
    the first request of its window through); None when both succeed."""
    for _ in range(2):
        try:
            await first_call(registry, capability, row)
        except Exception as exc:  # the caller asserts which class it is
            return exc
    return None


PORTS = [Capability.SEND, Capability.GROUPS, Capability.CHATS]


# -- sending -----------------------------------------------------------------------------


@pytest.mark.parametrize("message_type", sorted(CONTENT))
async def test_a_declared_message_type_is_sent_and_recorded(
    spec: ProviderSpec, message_type: str, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, Capability.SEND)
    if message_type not in spec.send_types:
        pytest.skip(f"{spec.kind} does not send {message_type}")
    sandbox, row = await channel()

    result = await registry.for_channel(row).send(message(message_type))

    assert [(s.wamid, s.type) for s in sandbox.sends] == [
        (result.provider_message_id, message_type)
    ]


async def test_an_undeclared_message_type_is_refused_before_any_request(
    spec: ProviderSpec, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, Capability.SEND)
    undeclared = sorted(set(CONTENT) - spec.send_types)
    if not undeclared:
        pytest.skip(f"{spec.kind} sends every type this suite knows")
    sandbox, row = await channel()

    with pytest.raises(PermanentProviderError):
        await registry.for_channel(row).send(message(undeclared[0]))
    assert sandbox.sends == []


async def test_check_proves_the_credentials_and_refuses_a_wrong_token_for_good(
    spec: ProviderSpec, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, Capability.SEND)
    _, row = await channel()
    _, wrong = await channel(wrong_token=True)

    await registry.for_channel(row).check()
    with pytest.raises(PermanentProviderError):
        await registry.for_channel(wrong).check()


# -- error mapping -----------------------------------------------------------------------


@pytest.mark.parametrize("capability", PORTS, ids=[p.value for p in PORTS])
async def test_too_many_requests_is_retryable_with_the_providers_retry_after(
    spec: ProviderSpec, capability: Capability, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, capability)
    _, row = await channel(**SANDBOX[spec.kind].too_many)

    refused = await first_refusal(registry, capability, row)

    assert isinstance(refused, RetryableProviderError), refused
    assert refused.retry_after is not None
    assert refused.retry_after >= 1


@pytest.mark.parametrize("capability", PORTS, ids=[p.value for p in PORTS])
async def test_a_refused_token_is_permanent(
    spec: ProviderSpec, capability: Capability, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, capability)
    sandbox, row = await channel(wrong_token=True)

    with pytest.raises(PermanentProviderError):
        await first_call(registry, capability, row)
    assert sandbox.sends == []


# -- directories -------------------------------------------------------------------------


async def test_the_group_directory_pages_and_fetches_groups(
    spec: ProviderSpec, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, Capability.GROUPS)
    _, row = await channel()
    directory = registry.groups_for_channel(row)

    page = await directory.list_groups(count=5)
    group = await directory.get_group(page.groups[0].chat_id)

    assert 0 < len(page.groups) <= 5 <= page.total
    assert group.chat_id == page.groups[0].chat_id
    assert group.participants
    with pytest.raises(NotFound):
        await directory.get_group("120363999999999999@g.us")


async def test_the_chat_directory_names_groups_and_people_when_it_says_so(
    spec: ProviderSpec, channel: Channel, registry: ProviderRegistry
) -> None:
    require(spec, Capability.CHATS)
    _, row = await channel()
    directory = registry.chats_for_channel(row)

    page = await directory.list_chats(limit=50)
    groups = [c for c in page.chats if c.kind == "group"]
    people = [c for c in page.chats if c.kind == "person"]

    assert groups
    assert (await directory.get_chat(groups[0].chat_id)).name == groups[0].name
    if spec.names_people:
        assert people
        assert (await directory.get_chat(people[0].chat_id)).kind == "person"
    else:
        assert not people
        with pytest.raises(NotFound):
            await directory.get_chat(PERSON + "@s.whatsapp.net")


# -- receiving ---------------------------------------------------------------------------


@pytest.fixture
async def catcher() -> AsyncIterator[WebhookCatcher]:
    catcher = WebhookCatcher()
    yield catcher
    await catcher.stop()


async def emit_text(http: aiohttp.ClientSession, url: str, provider: str) -> str:
    """Have the sandbox send one inbound text on ``provider``; its message id."""
    body = {"provider": provider, "count": 1, "kinds": ["text"]}
    async with http.post(url + "/_sandbox/inbound", json=body) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status == 200, answer
    message_id: str = answer["emitted"][0]["message_id"]
    return message_id


async def test_a_sandbox_webhook_is_verified_deduped_and_parsed(
    spec: ProviderSpec,
    db: Database,
    http: aiohttp.ClientSession,
    catcher: WebhookCatcher,
    start_sandbox: StartSandbox,
) -> None:
    require(spec, Capability.RECEIVE)
    receiver = spec.receiver
    assert receiver is not None
    assert receiver.webhook is not None
    secret = secrets.token_urlsafe(16)
    hook = await catcher.start()
    sandbox, url = await start_sandbox(
        webhook_backoff_initial_s=0.01,
        webhook_delay_ms=1,
        **SANDBOX[spec.kind].webhooks(f"{hook}/{receiver.provider}", secret),
    )

    first, second = [await emit_text(http, url, receiver.provider) for _ in range(2)]
    await sandbox.wait_webhooks_idle(5)

    posts = catcher.on(f"/{receiver.provider}")
    assert len(posts) == 2
    requests = [WebhookRequest(CIMultiDict(p.headers), p.query, p.body) for p in posts]
    verify = receiver.webhook.verify
    assert all(verify(secret, request) for request in requests)
    assert not verify(secret + "x", requests[0])
    if receiver.webhook.reads_body:
        forged = posts[0].body.rstrip()[:-1] + b',"forged":true}'
        assert not verify(secret, WebhookRequest(requests[0].headers, requests[0].query, forged))

    keys = [receiver.dedupe_key(p.body) for p in posts]
    stored = [
        await store(db, receiver.provider, key, p.body) for key, p in zip(keys, posts, strict=True)
    ]
    redelivered = await store(db, receiver.provider, keys[0], posts[0].body)
    assert stored == [True, True]
    assert redelivered is False

    parsed = {m.provider_message_id for p in posts for m in receiver.parse(p.body).messages}
    assert parsed == {first, second}


async def store(db: Database, provider: str, dedupe_key: str, body: bytes) -> bool:
    async with db.transaction() as conn:
        return await inbox_q.store_delivery(
            conn, provider=provider, dedupe_key=dedupe_key, headers={}, body=body, now=time.time()
        )
