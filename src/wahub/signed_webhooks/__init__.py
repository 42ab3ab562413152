"""Signed webhook POSTs: the one way wahub signs an outgoing request and reads the
receiver's answer, shared by the replication webhook sink and event subscriptions.

Signatures follow Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``. Retry timing is
``wahub.domain.backoff``; what to do with an answer is ``Attempt.outcome``.
"""

from __future__ import annotations

from wahub.signed_webhooks.posting import Attempt, Outcome, post_signed
from wahub.signed_webhooks.signing import (
    SECRET_PREFIX,
    legacy_signature,
    new_secret,
    secret_key,
    standard_headers,
    standard_signature,
)

__all__ = [
    "SECRET_PREFIX",
    "Attempt",
    "Outcome",
    "legacy_signature",
    "new_secret",
    "post_signed",
    "secret_key",
    "standard_headers",
    "standard_signature",
]
