"""The secrets that authenticate provider webhooks: set, unset, or known to everyone.

A receiver without its secret answers ``503 webhook_not_configured``. A secret that
appears in our public source (a default we once shipped, a value from our tests, a
compose placeholder) or is an obvious placeholder is no secret at all: ``serve`` and
``worker`` refuse to start with one, and a receiver treats one as unset, so nobody can
forge deliveries by reading the repository. The sandbox and the demo never need a
fixed secret: they generate random ones at start (``with_generated_secrets``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

from wahub.config import Settings
from wahub.domain.errors import WahubError
from wahub.providers import catalog


@dataclass(frozen=True)
class ReceiverSecret:
    """One setting that authenticates a receiver (named as the start-up summary names
    it), and the variable an operator sets."""

    receiver: str
    setting: str
    variable: str


# Every receiver that takes webhooks declares its secret (``providers.catalog``); Meta's
# verification handshake is no receiver (it stores nothing) but has a token of its own.
RECEIVER_SECRETS: Final = (
    *(
        ReceiverSecret(receiver.provider, webhook.secret_setting, webhook.secret_env)
        for receiver in catalog.RECEIVERS.values()
        if (webhook := receiver.webhook) is not None
    ),
    ReceiverSecret("cloudapi_handshake", "cloudapi_verify_token", "WAHUB_CLOUDAPI_VERIFY_TOKEN"),
)

# Every webhook secret or token default that ever appeared in our source (config
# defaults, the sandbox's and the bench's, compose.yaml, the tests' constants; found with
# `git log -p -S`), and the placeholders people type. Compared after `_normalized`, so
# "CHANGE_ME" and "change me" are "change-me".
KNOWN_PLACEHOLDERS: Final[tuple[str, ...]] = (
    # Shipped defaults.
    "sandbox-app-secret",
    "wahub-verify",
    "change-me",
    "sandbox-token",
    "sandbox-whapi-token",
    "sandbox-periskope-key",
    "bench-app-secret",
    "wahub",
    # Our tests' constants.
    "test-app-secret",
    "test-verify-token",
    "test-whapi-secret",
    "test-periskope-key",
    "test-periskope-signing-key",
    "periskope-signing-key",
    "app-secret-123",
    "whsec-test",
    "s3cret",
    "new-secret",
    "secret-token",
    "whapi-secret-token",
    "good-token",
    "tok",
    # Placeholders.
    "changeme",
    "change-this",
    "changeit",
    "secret",
    "password",
    "passw0rd",
    "token",
    "verify-token",
    "app-secret",
    "webhook-secret",
    "your-app-secret",
    "your-verify-token",
    "test",
    "example",
    "default",
    "admin",
    "todo",
    "xxx",
    "123456",
    "12345678",
    "...",
)


def _normalized(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


_PLACEHOLDERS: Final = frozenset(_normalized(p) for p in KNOWN_PLACEHOLDERS)


def is_placeholder(value: str) -> bool:
    """Whether ``value`` is a secret everyone knows (see ``KNOWN_PLACEHOLDERS``); a value
    of only spaces and punctuation is one too."""
    return _normalized(value) in _PLACEHOLDERS


def secret_value(secret: SecretStr | None) -> str | None:
    """The secret to check deliveries with, or None when unset, empty or a placeholder
    (the receiver then answers 503: a placeholder authenticates nobody)."""
    value = secret.get_secret_value() if secret is not None else ""
    if not value or is_placeholder(value):
        return None
    return value


class PlaceholderSecret(WahubError):
    """A receiver's secret is a value from our public source or an obvious placeholder."""

    code = "placeholder_secret"


def refuse_placeholder_secrets(settings: Settings) -> None:
    """Raise ``PlaceholderSecret`` naming every variable whose value is a known placeholder.

    Unset secrets pass: their receivers answer 503 until they are set.
    """
    bad = [
        spec.variable
        for spec in RECEIVER_SECRETS
        if (value := getattr(settings, spec.setting)) is not None
        and value.get_secret_value()
        and is_placeholder(value.get_secret_value())
    ]
    if bad:
        raise PlaceholderSecret(
            f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} set to a placeholder "
            "anyone can read in wahub's source: set a random value (e.g. `python -c "
            '"import secrets; print(secrets.token_urlsafe(32))"`), the one your provider '
            "shows you, or unset it to turn that receiver off",
            details={"variables": bad},
        )


def with_generated_secrets(settings: Settings) -> Settings:
    """``settings`` with a random secret for every signing receiver left unset.

    For the sandbox, in process or started by ``serve --sandbox`` and the demo: it signs
    with the secrets the hub checks, and nobody else knows them. Secrets an operator set
    are kept (the sandbox then signs with them). The verify token is left alone: only
    Meta's handshake uses it, and the sandbox never sends one.
    """
    updates = {
        spec.setting: SecretStr(secrets.token_urlsafe(24))
        for spec in RECEIVER_SECRETS
        if spec.setting != "cloudapi_verify_token"
        and secret_value(getattr(settings, spec.setting)) is None
    }
    return settings.model_copy(update=updates) if updates else settings
