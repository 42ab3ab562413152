"""Our own fake Meta Cloud API: a real HTTP server with failure knobs and a send record.

    sandbox = Sandbox(SandboxConfig(webhook_url="http://127.0.0.1:8000/webhooks/meta"))
    base_url = await sandbox.start()   # POST {base_url}/v21.0/{phone_number_id}/messages
    ...
    await sandbox.wait_webhooks_idle(5)
    await sandbox.stop()

The same server is a WHAPI channel under ``{base_url}/whapi`` (token
``SandboxConfig.whapi_token``), with a deterministic default group directory
(``default_directory``; ``sandbox.whapi.set_groups`` replaces it), and a Periskope
chat directory under ``{base_url}/periskope`` (API key ``SandboxConfig.periskope_api_key``,
``x-phone`` ``periskope_org_phone``; ``default_chats``, ``sandbox.periskope.set_chats``).

``run_sandbox`` serves it standalone (``wahub sandbox``) until SIGINT or SIGTERM.
The modules behind this package are private; import from here.
"""

from __future__ import annotations

from wahub.providers.sandbox.config import SandboxConfig
from wahub.providers.sandbox.periskope import (
    DEFAULT_CHAT_COUNT,
    PeriskopeSandbox,
    default_chat_id,
    default_chats,
)
from wahub.providers.sandbox.server import Sandbox, run_sandbox
from wahub.providers.sandbox.state import SendRecord
from wahub.providers.sandbox.whapi import WhapiSandbox
from wahub.providers.sandbox.whapi_directory import (
    DEFAULT_GROUP_COUNT,
    HUB_PERSON,
    LEFT_GROUP_INDICES,
    default_directory,
    lid_for,
    people,
)

__all__ = [
    "DEFAULT_CHAT_COUNT",
    "DEFAULT_GROUP_COUNT",
    "HUB_PERSON",
    "LEFT_GROUP_INDICES",
    "PeriskopeSandbox",
    "Sandbox",
    "SandboxConfig",
    "SendRecord",
    "WhapiSandbox",
    "default_chat_id",
    "default_chats",
    "default_directory",
    "lid_for",
    "people",
    "run_sandbox",
]
