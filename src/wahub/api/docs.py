"""``/docs``: Swagger UI served from the package, so the API docs work offline.

FastAPI's own ``/docs`` page loads Swagger UI's script and style from a CDN and its icon
from FastAPI's site: on a server without internet access it stays blank. Here every
file comes from the ``swagger-ui-bundle-v2`` wheel (Swagger UI 5.31.0, its files
byte-identical to npm's ``swagger-ui-dist`` 5.31.0; Apache-2.0, the licence ships in the
wheel). Swagger UI 5 is needed: FastAPI writes OpenAPI 3.1, which Swagger UI 4 (the one
in the older ``swagger-ui-bundle`` wheel) refuses to render.

ReDoc stays off (``redoc_url=None``): its page loads from a CDN too.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"

router = APIRouter()


@router.get(DOCS_PATH, include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    """The Swagger UI page; every URL in it is on this server (under the app's root path,
    when it is mounted behind a proxy prefix)."""
    app: FastAPI = request.app
    root = str(request.scope.get("root_path", "")).rstrip("/")
    assets = f"{root}{ASSETS_PATH}"
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - API docs",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=f"{assets}/favicon-32x32.png",
        # No online validator badge: it would send the spec to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets; create the app with ``docs_url=None`` so FastAPI's
    CDN-loading page does not answer first."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    app.include_router(router)
