"""The ``web`` provider's declaration: a WhatsApp Web session (a linked phone) held by
wahub's own session process, not an API reached over HTTP.

Its channels have no token (the phone is the credential, kept by the session process),
send through the live session (the registry's ``serve_session_channels``, in the session
process only), and receive through the session too: its events are stored in the inbox
under provider ``web`` by the session process, never by a webhook route.
"""

from __future__ import annotations

import hashlib

import orjson

from wahub.providers.spec import Capability, ProviderSpec, Receiver
from wahub.providers.web import events

# A web channel's base_url says which engine holds its phone: WhatsApp's own servers
# (neonize), or a sandbox at any other URL (the sandbox's web session engine).
WHATSAPP_WEB_URL = "https://web.whatsapp.com"


def sends_under_our_ids(base_url: str) -> bool:
    """Whether the engine holding a channel at ``base_url`` sends under message ids
    derived from ours (``message_ids``), so that its receipts name our messages.

    The sandbox engine does. The neonize engine cannot: neonize 0.5.2's ``SendMessage``
    (Go side) calls whatsmeow's ``SendMessage`` without a ``SendRequestExtra``, so
    whatsmeow picks a random id, and receipts for a send whose answer was lost name
    nothing we know. Its channels stay under ``WAHUB_UNCERTAIN_POLICY``.
    """
    return base_url.rstrip("/") != WHATSAPP_WEB_URL


def dedupe_key(body: bytes) -> str:
    """The key the session process stored the event under (it travels in the body), or
    a digest of a body that has none."""
    try:
        key = orjson.loads(body).get("key")
    except (orjson.JSONDecodeError, AttributeError):
        key = None
    if isinstance(key, str) and key:
        return key
    return "web:body:" + hashlib.sha256(body).hexdigest()[:48]


SPEC = ProviderSpec(
    kind="web",
    capabilities=frozenset({Capability.SESSION, Capability.RECEIVE}),
    default_base_url=WHATSAPP_WEB_URL,
    credential_key="",
    credential_name="linked phone",
    receiver=Receiver(provider=events.PROVIDER, dedupe_key=dedupe_key, parse=events.parse_body),
    echoes_tracking_id_at=sends_under_our_ids,
)
