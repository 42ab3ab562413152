"""Our own fake Meta Cloud API: a real HTTP server with failure knobs and a send record.

    sandbox = Sandbox(SandboxConfig(webhook_url="http://127.0.0.1:8000/webhooks/meta"))
    base_url = await sandbox.start()   # POST {base_url}/v21.0/{phone_number_id}/messages
    ...
    await sandbox.wait_webhooks_idle(5)
    await sandbox.stop()

``run_sandbox`` serves it standalone (``wahub sandbox``) until SIGINT or SIGTERM.
The modules behind this package are private; import from here.
"""

from __future__ import annotations

from wahub.providers.sandbox.config import SandboxConfig
from wahub.providers.sandbox.server import Sandbox, run_sandbox
from wahub.providers.sandbox.state import SendRecord

__all__ = ["Sandbox", "SandboxConfig", "SendRecord", "run_sandbox"]
