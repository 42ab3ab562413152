"""Every provider wahub knows, in one place: each package's declaration (``spec.SPEC``).

The registry builds adapters from these, the features ask them what a channel kind can
do, and the webhook routes and the inbox parsers read their receivers. A new provider is
added here, once, after declaring itself in its package.
"""

from __future__ import annotations

from typing import Final

from wahub.providers.cloudapi.spec import SPEC as CLOUDAPI
from wahub.providers.periskope.spec import SPEC as PERISKOPE
from wahub.providers.spec import Capability, ProviderSpec, Receiver
from wahub.providers.web.spec import SPEC as WEB
from wahub.providers.whapi.spec import SPEC as WHAPI

PROVIDERS: Final[tuple[ProviderSpec, ...]] = (CLOUDAPI, WHAPI, PERISKOPE, WEB)

_BY_KIND: Final = {spec.kind: spec for spec in PROVIDERS}
RECEIVERS: Final[dict[str, Receiver]] = {
    spec.receiver.provider: spec.receiver for spec in PROVIDERS if spec.receiver is not None
}


def spec_for(kind: str) -> ProviderSpec | None:
    """The declaration of channel kind ``kind``; None for a kind wahub does not know."""
    return _BY_KIND.get(kind)


def kinds() -> tuple[str, ...]:
    """Every channel kind, in catalog order."""
    return tuple(_BY_KIND)


def kinds_with(capability: Capability) -> tuple[str, ...]:
    """The channel kinds declaring ``capability``, in catalog order."""
    return tuple(spec.kind for spec in PROVIDERS if spec.supports(capability))


def receiver_for(provider: str) -> Receiver | None:
    """The receiver of deliveries stored under ``inbox.provider == provider``."""
    return RECEIVERS.get(provider)


def chat_directory_kinds() -> tuple[str, ...]:
    """The kinds with a chat directory, in the order a chat without a channel tries them:
    directories that name people as well as groups first, then catalog order."""
    found = [spec for spec in PROVIDERS if spec.supports(Capability.CHATS)]
    return tuple(spec.kind for spec in sorted(found, key=lambda spec: not spec.names_people))
