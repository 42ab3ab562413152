"""The dashboard: server-rendered pages under ``/ui`` for the people who work in wahub.

``install_ui(app)`` mounts the pages, the vendored static files (``/ui/static``) and the
answers a browser gets instead of the API's JSON errors: the sign-in page for a missing
or ended session, and an error page for a refused form or action.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from wahub.api.errors import status_for, wahub_error_response
from wahub.domain.errors import WahubError
from wahub.ui import (
    auth,
    campaigns,
    channels,
    groups,
    inbox,
    messages,
    operations,
    overview,
)
from wahub.ui.auth import CsrfRefused, SignInRequired, sign_in_url
from wahub.ui.rendering import render

__all__ = ["install_ui"]

STATIC_DIR = Path(__file__).parent / "static"


def install_ui(app: FastAPI) -> None:
    """Mount the dashboard on ``app``, after the API's error handlers (which still answer
    outside ``/ui``)."""
    api_http_handler = app.exception_handlers[HTTPException]
    for module in (auth, overview, inbox, messages, channels, campaigns, groups, operations):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return RedirectResponse(sign_in_url(exc.next_path), status_code=303)

    async def on_csrf_refused(request: Request, exc: Exception) -> Response:
        return _error_page(
            403,
            "This form was refused",
            "It did not carry this session's security token (CSRF): it was sent from "
            "another site, or from a page older than your session. Reload the page and "
            "try again.",
        )

    async def on_wahub_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WahubError)
        if _is_ui(request):
            return _error_page(status_for(exc), "That did not work", exc.message)
        return wahub_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if _is_ui(request):
            message = "No such page." if exc.status_code == 404 else str(exc.detail)
            return _error_page(exc.status_code, "That did not work", message)
        response = api_http_handler(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(CsrfRefused, on_csrf_refused)
    app.add_exception_handler(WahubError, on_wahub_error)
    app.add_exception_handler(HTTPException, on_http_error)


def _is_ui(request: Request) -> bool:
    return request.url.path == "/ui" or request.url.path.startswith("/ui/")


def _error_page(status_code: int, title: str, message: str) -> Response:
    return render(
        "error.html",
        {"title": title, "message": message, "actor": None, "status_code": status_code},
        status_code=status_code,
    )
