"""The webhook secrets the tests' hubs check, random per run.

A secret written in our source is refused by every receiver (``wahub.webhook_secrets``
lists them), so the tests sign with these, and anything that must match (conftest's
settings, the helpers that sign deliveries) imports them from here.
"""

from __future__ import annotations

import secrets

APP_SECRET = secrets.token_urlsafe(24)
VERIFY_TOKEN = secrets.token_urlsafe(24)
WHAPI_SECRET = secrets.token_urlsafe(24)
PERISKOPE_KEY = secrets.token_urlsafe(24)
