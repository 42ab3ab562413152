"""The exception tree every wahub error belongs to.

Each class maps to exactly one HTTP status (see ``wahub.api.errors``), and carries a
stable machine-readable ``code`` plus optional ``details`` (e.g. the offending field).

    WahubError
    ├── ValidationError          422  bad input: a field, a phone number, a body too long
    │   ├── OutsideServiceWindow       free-form text after the 24-hour window: use a template
    │   └── OptedOut                   the recipient opted out (STOP)
    ├── NotFound                 404
    ├── AuthenticationFailed     401  missing/unknown API key, bad webhook signature
    ├── PermissionDenied         403  role or group assignment forbids the action
    ├── ConflictError            409  idempotency key reused with another body, wrong state
    │   └── DuplicateChannel           a channel with that name or number exists already
    ├── PayloadTooLarge          413  a request body over its limit
    ├── UnsupportedMediaType     415  a request body in a content type the route does not take
    ├── InvalidEncoding          400  a request body that is not UTF-8
    ├── StoreUnavailable         503  the database cannot be reached
    ├── CredentialsUnreadable    503  a channel's sealed token does not open with our keys
    ├── SecretKeyError                WAHUB_SECRET_KEY missing (PostgreSQL) or malformed
    └── ProviderError                 raised by provider adapters, never reaches a client as-is
        ├── RetryableProviderError     throttling, 5xx, timeouts: try again later
        ├── PermanentProviderError     bad number, missing template, 24 h window: give up
        │   └── QuotedMessageNotSent       a reply's quoted message of ours failed to send
        └── ProviderOutcomeUnknown     timeout after the request left: maybe sent, reconcile
"""

from __future__ import annotations

from typing import Any


class WahubError(Exception):
    """Base of every error wahub raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class ValidationError(WahubError):
    code = "validation_error"


class OutsideServiceWindow(ValidationError):
    """A free-form message to a person whose last message is more than 24 hours old (or
    who never wrote): WhatsApp only delivers an approved template there (Meta 131047)."""

    code = "outside_service_window"


class MediaRefused(ValidationError):
    """An uploaded file WhatsApp would not deliver, or whose name lies about its content
    (422: the request was well-formed, the file is not acceptable)."""

    code = "media_refused"


class OptedOut(ValidationError):
    """The recipient sent an opt-out keyword (STOP, ...) and has not opted in again."""

    code = "opted_out"


class NotFound(WahubError):
    code = "not_found"


class AuthenticationFailed(WahubError):
    code = "unauthenticated"


class PermissionDenied(WahubError):
    code = "forbidden"


class ConflictError(WahubError):
    code = "conflict"


class DuplicateChannel(ConflictError):
    code = "duplicate_channel"


class SessionNotWorking(ConflictError):
    """A WhatsApp Web channel's session is not ``working`` (the message says its state):
    a send is refused at the API, a QR or pairing code asked of a linked one too."""

    code = "session_not_working"


class SessionLinked(ConflictError):
    """A QR code or pairing code was asked of a session that is already linked."""

    code = "session_linked"


class DailyCapReached(ConflictError):
    """A web channel sent its daily cap (a young number's protection against bans);
    ``details.resets_at`` says when sending is allowed again."""

    code = "daily_cap_reached"


class PayloadTooLarge(WahubError):
    code = "payload_too_large"


class UnsupportedMediaType(WahubError):
    code = "unsupported_media_type"


class InvalidEncoding(WahubError):
    code = "invalid_encoding"


class StoreUnavailable(WahubError):
    code = "store_unavailable"


class CredentialsUnreadable(WahubError):
    """A channel's stored credentials do not open with the configured keys (a wrong or
    missing ``WAHUB_SECRET_KEY``, or a key file that is not the one that sealed them)."""

    code = "credentials_unreadable"


class SecretKeyError(WahubError):
    """``WAHUB_SECRET_KEY`` is missing where it is required, or is not a Fernet key."""

    code = "secret_key_invalid"


class ProviderError(WahubError):
    """A provider refused or failed a call.

    ``provider_code`` is the provider's own error code (Meta's ``error.code``) when it gave
    one; ``retry_after`` is the delay in seconds the provider asked for, if any.
    """

    code = "provider_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider_code: int | str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.provider_code = provider_code
        self.http_status = http_status
        self.retry_after = retry_after


class RetryableProviderError(ProviderError):
    code = "provider_retryable"
    retryable = True


class PermanentProviderError(ProviderError):
    code = "provider_permanent"
    retryable = False


class QuotedMessageNotSent(PermanentProviderError):
    """A reply held behind the message of ours it quotes, which then failed: there is no
    provider id to quote. Raised by the outbox before the provider is called."""

    code = "reply_to_not_sent"


class MediaTooLarge(PermanentProviderError):
    """A file to download is larger than we take (``WAHUB_MEDIA_MAX_BYTES``): fetching
    it again would not make it smaller."""

    code = "media_too_large"


class ProviderOutcomeUnknown(ProviderError):
    """The request may have reached the provider but no answer came (timeout, reset
    after sending). Not proof of non-delivery: the pipeline marks the message
    ``uncertain`` and waits for a status webhook instead of resending at once."""

    code = "provider_outcome_unknown"
    retryable = False
