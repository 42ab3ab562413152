"""Which engine holds a web channel's phone: the one its ``base_url`` names.

``https://web.whatsapp.com`` (the default) is WhatsApp itself, reached through neonize
(``wahub.providers.web.neonize_engine``, imported only when such a channel exists, so
a machine without neonize still runs sandbox sessions); any other URL is a sandbox,
whose web session engine the ``SandboxWebEngine`` talks to over HTTP.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from wahub.config import Settings
from wahub.domain.errors import ValidationError
from wahub.features.channels import WHATSAPP_WEB_URL
from wahub.providers.web.sandbox_engine import SandboxWebEngine
from wahub.providers.web.session import WebEngine

NEONIZE_MODULE = "wahub.providers.web.neonize_engine"


def state_dir(settings: Settings) -> Path:
    """Where sessions keep credentials and the event journal: the setting, else a
    ``sessions`` directory beside the SQLite database, else ``./sessions``."""
    if settings.session_state_dir:
        return Path(settings.session_state_dir)
    url = settings.database_url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).resolve().parent / "sessions"
    return Path("sessions").resolve()


class Engines:
    """One engine per distinct ``base_url``, built on first use; ``close`` closes all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state_dir = state_dir(settings)
        self._engines: dict[str, WebEngine] = {}

    def for_channel(self, channel: dict[str, Any]) -> WebEngine:
        """The engine of ``channel`` (a web channel row). Raises ValidationError when it
        needs neonize and neonize is not installed."""
        base_url = str(channel["base_url"]).rstrip("/")
        engine = self._engines.get(base_url)
        if engine is None:
            engine = self._build(base_url)
            self._engines[base_url] = engine
        return engine

    def _build(self, base_url: str) -> WebEngine:
        if base_url == WHATSAPP_WEB_URL:
            try:
                # Imported only when a channel needs it: neonize loads a Go library
                # (and libmagic) at import, which sandbox-only set-ups can do without.
                module: Any = importlib.import_module(NEONIZE_MODULE)
            except ImportError as exc:
                raise ValidationError(
                    f"linking a real phone needs the neonize engine ({NEONIZE_MODULE}): {exc}"
                ) from exc
            # Credentials: schema wahub_sessions of our PostgreSQL database, or one file
            # per channel under the state directory beside the SQLite database.
            engine: WebEngine = module.build_engine(self.settings, self.state_dir)
            return engine
        return SandboxWebEngine(base_url, self.state_dir)

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()
