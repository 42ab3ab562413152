"""The JSON response every route returns, rendered with orjson.

Routes return these directly, so FastAPI skips its own (slower) response validation
and encoding; the ``response_model`` on each route still documents the shape.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JsonResponse(Response):
    """``application/json`` rendered by orjson (datetimes, dataclasses and non-str keys)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
