"""Every provider declares its capabilities in one place, and those declarations are
what the rest of wahub reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.routing import APIRoute

from wahub.api.webhooks import router as webhooks_router
from wahub.config import Settings
from wahub.domain.credentials import CredentialCipher, generate_key
from wahub.domain.errors import ValidationError
from wahub.domain.status import Status
from wahub.pipeline.parsers import parse_stored_delivery
from wahub.providers import catalog
from wahub.providers.cloudapi.webhooks import parse_body
from wahub.providers.registry import ProviderRegistry, echoes_tracking_id
from wahub.providers.spec import Capability, ProviderSpec, Receiver
from wahub.providers.web.spec import WHATSAPP_WEB_URL


def test_a_declared_capability_without_its_factory_is_refused() -> None:
    with pytest.raises(ValueError, match="capability 'send' is declared but its factory"):
        ProviderSpec(
            kind="nosender",
            capabilities=frozenset({Capability.SEND}),
            default_base_url="http://x",
            credential_key="token",
            credential_name="token",
        )


def test_a_factory_without_its_declared_capability_is_refused() -> None:
    receiver = Receiver(provider="quiet", dedupe_key=lambda body: "k", parse=parse_body)
    with pytest.raises(ValueError, match="capability 'receive' is not declared"):
        ProviderSpec(
            kind="quiet",
            capabilities=frozenset(),
            default_base_url="http://x",
            credential_key="token",
            credential_name="token",
            receiver=receiver,
        )


def test_the_catalog_names_each_kind_once_with_its_capabilities() -> None:
    assert catalog.kinds() == ("cloudapi", "whapi", "periskope", "web")
    assert catalog.kinds_with(Capability.SEND) == ("cloudapi", "whapi")
    assert catalog.kinds_with(Capability.GROUPS) == ("whapi",)
    assert catalog.kinds_with(Capability.RECEIVE) == ("cloudapi", "whapi", "periskope", "web")
    # Web channels send through the session process's live sessions, not a built adapter.
    assert catalog.kinds_with(Capability.SESSION) == ("web",)
    assert catalog.spec_for("nosuchkind") is None


def test_chat_directories_that_name_people_are_tried_first() -> None:
    assert catalog.chat_directory_kinds() == ("periskope", "whapi")


def test_only_providers_declaring_echoes_settle_uncertain_sends_by_silence() -> None:
    sandbox = "http://127.0.0.1:8999"
    echoing = {spec.kind for spec in catalog.PROVIDERS if echoes_tracking_id(spec.kind, sandbox)}
    assert echoing == {"cloudapi", "web"}
    assert not echoes_tracking_id("nosuchkind", sandbox)


def test_web_channels_echo_only_through_an_engine_that_sends_under_our_ids() -> None:
    # The sandbox engine chooses message ids derived from ours; neonize 0.5.2 cannot
    # choose (whatsmeow picks), so a real phone's receipts settle nothing by silence.
    assert echoes_tracking_id("web", "http://127.0.0.1:8999/")
    assert not echoes_tracking_id("web", WHATSAPP_WEB_URL)
    assert not echoes_tracking_id("web", WHATSAPP_WEB_URL + "/")


def test_every_receiver_is_listed_under_the_inbox_provider_it_stores() -> None:
    for spec in catalog.PROVIDERS:
        if spec.receiver is not None:
            assert catalog.receiver_for(spec.receiver.provider) is spec.receiver


@pytest.mark.parametrize(
    ("capability", "ask"),
    [
        (Capability.SEND, ProviderRegistry.for_channel),
        (Capability.GROUPS, ProviderRegistry.groups_for_channel),
        (Capability.CHATS, ProviderRegistry.chats_for_channel),
    ],
)
def test_asking_a_kind_for_an_undeclared_capability_is_a_validation_error(
    capability: Capability, ask: Callable[[ProviderRegistry, dict[str, Any]], object]
) -> None:
    registry = ProviderRegistry(CredentialCipher([generate_key()]))
    for spec in catalog.PROVIDERS:
        if spec.supports(capability):
            continue
        channel = {"id": "ch_1", "kind": spec.kind, "name": "c", "base_url": "http://x"}
        with pytest.raises(ValidationError) as refused:
            ask(registry, channel)
        assert refused.value.details["kind"] == spec.kind


def test_every_webhook_receiver_gets_a_route_and_a_documented_secret() -> None:
    routes = {
        (route.path, method)
        for route in webhooks_router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    for receiver in catalog.RECEIVERS.values():
        if receiver.webhook is None:
            continue
        assert (f"/v1/webhooks/{receiver.provider}", "POST") in routes
        field = Settings.model_fields[receiver.webhook.secret_setting]
        assert field.description, receiver.webhook.secret_env


def test_a_stored_delivery_is_read_by_the_parser_its_provider_declared() -> None:
    body = orjson.dumps(
        {
            "statuses": [{"id": "w1", "status": "read", "timestamp": 1700000000}],
            "event": {"type": "statuses", "event": "post"},
            "channel_id": "ch",
        }
    )
    (status,) = parse_stored_delivery("whapi", body).statuses
    assert (status.provider_message_id, status.status) == ("w1", Status.READ)
    with pytest.raises(ValidationError, match="no parser for provider 'nosuch'"):
        parse_stored_delivery("nosuch", body)
