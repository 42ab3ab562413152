"""wahub: a self-hosted WhatsApp messaging hub for CRMs."""

from __future__ import annotations

from wahub.config import Settings
from wahub.domain.errors import (
    AuthenticationFailed,
    ConflictError,
    NotFound,
    PayloadTooLarge,
    PermanentProviderError,
    PermissionDenied,
    ProviderError,
    ProviderOutcomeUnknown,
    RetryableProviderError,
    StoreUnavailable,
    ValidationError,
    WahubError,
)
from wahub.domain.status import Status

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "ConflictError",
    "NotFound",
    "PayloadTooLarge",
    "PermanentProviderError",
    "PermissionDenied",
    "ProviderError",
    "ProviderOutcomeUnknown",
    "RetryableProviderError",
    "Settings",
    "Status",
    "StoreUnavailable",
    "ValidationError",
    "WahubError",
    "__version__",
]
