"""Who is looking at the dashboard: sign-in (API key or password), sign-out, CSRF.

Pages depend on ``signed_in``, which re-checks the key or password behind the session
cookie on every request and raises ``SignInRequired`` (a redirect to the sign-in page,
never an error) for a missing, forged, expired or ended session. Every form posts the
session's CSRF token; ``checked_form`` refuses a form without it (``CsrfRefused``, 403).
Roles are the API's: pages call the same feature-layer checks with the same ``Actor``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from wahub.domain.actors import Actor, Role
from wahub.domain.errors import AuthenticationFailed
from wahub.runtime import Hub
from wahub.ui.rendering import render
from wahub.ui.sessions import COOKIE_NAME, COOKIE_PATH, SIGNING_PURPOSE, SessionCodec, UiSession

router = APIRouter(prefix="/ui", include_in_schema=False)

HOME = "/ui"
SIGN_IN = "/ui/sign-in"
# Form fields are short: a key is 55 characters, a password rarely 100.
MAX_FIELD_CHARS = 1000


class SignInRequired(Exception):
    """No valid session: answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A form without this session's CSRF token: answered with 403."""


@dataclass(frozen=True, slots=True)
class Page:
    """A signed-in request: who asks, and their session (for its CSRF token)."""

    actor: Actor
    session: UiSession

    @property
    def is_admin(self) -> bool:
        return self.actor.role == Role.ADMIN

    def context(self, **values: Any) -> dict[str, Any]:
        """The template context every signed-in page gets, plus ``values``."""
        return {"actor": self.actor, "csrf": self.session.csrf, "is_admin": self.is_admin, **values}


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def codec_of(request: Request) -> SessionCodec:
    """The app's session codec, made on first use (the hub, which holds the key the
    signing secret derives from, may be built only when the app starts)."""
    codec: SessionCodec | None = getattr(request.app.state, "ui_sessions", None)
    if codec is None:
        hub = hub_of(request)
        codec = SessionCodec(
            hub.channels.cipher.derive_key(SIGNING_PURPOSE),
            max_age_seconds=hub.settings.ui_session_hours * 3600,
        )
        request.app.state.ui_sessions = codec
    return codec


def session_of(request: Request) -> UiSession | None:
    return codec_of(request).loads(request.cookies.get(COOKIE_NAME))


def set_session_cookie(request: Request, response: Response, session: UiSession) -> None:
    codec = codec_of(request)
    response.set_cookie(
        COOKIE_NAME,
        codec.dumps(session),
        max_age=int(codec.max_age_seconds),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


async def signed_in(request: Request) -> Page:
    """The signed-in page context. Raises SignInRequired when there is no live session."""
    session = session_of(request)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if session is None or not session.signed_in:
        raise SignInRequired(here)
    hub = hub_of(request)
    try:
        if session.key_id is not None:
            actor = await hub.access.actor_for_key_id(session.key_id)
        else:
            actor = await hub.passwords.actor(
                session.user_id or "", session.password_fingerprint or ""
            )
    except AuthenticationFailed:
        raise SignInRequired(here) from None
    return Page(actor, session)


SignedIn = Annotated[Page, Depends(signed_in)]


async def checked_form(request: Request, session: UiSession | None) -> FormData:
    """The posted form, once its ``csrf`` field matches the session's token.

    Raises CsrfRefused when the session or the token is missing or different.
    """
    form = await request.form(max_files=1, max_fields=50)
    token = form.get("csrf")
    if (
        session is None
        or not isinstance(token, str)
        or not secrets.compare_digest(token.encode(), session.csrf.encode())
    ):
        raise CsrfRefused
    return form


def text_field(form: FormData, name: str) -> str:
    """A text field's value, stripped ("" when missing, cut at MAX_FIELD_CHARS)."""
    value = form.get(name)
    return value.strip()[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a dashboard path on this site, else the home page
    (a ``next`` pointing elsewhere would make the sign-in page an open redirect)."""
    if not value:
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith(HOME) or "\\" in value:
        return HOME
    return value


def sign_in_url(next_path: str) -> str:
    return f"{SIGN_IN}?{urlencode({'next': next_path})}" if next_path != HOME else SIGN_IN


def _sign_in_page(
    request: Request,
    session: UiSession,
    *,
    next_path: str,
    errors: dict[str, str] | None = None,
    user: str = "",
    method: str = "key",
    status_code: int = 200,
) -> Response:
    response = render(
        "sign_in.html",
        {
            "csrf": session.csrf,
            "next": next_path,
            "errors": errors or {},
            "user": user,
            "method": method,
            "actor": None,
        },
        status_code=status_code,
    )
    set_session_cookie(request, response, session)
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    """The sign-in page (straight to ``next`` when already signed in)."""
    target = safe_next(next)
    session = session_of(request)
    if session is not None and session.signed_in:
        try:
            await signed_in(request)
            return RedirectResponse(target, status_code=303)
        except SignInRequired:
            pass  # the key was revoked or the password changed: sign in again
    return _sign_in_page(request, UiSession.anonymous(), next_path=target)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Sign in with an API key (``method=key``) or a user's password (``method=password``);
    a wrong field is shown beside it, with what was typed kept (never a secret)."""
    session = session_of(request)
    form = await checked_form(request, session)
    assert session is not None
    target = safe_next(text_field(form, "next"))
    method = text_field(form, "method")
    hub = hub_of(request)
    user = text_field(form, "user")
    errors: dict[str, str] = {}
    new_session: UiSession | None = None
    if method == "key":
        key = text_field(form, "api_key")
        if not key:
            errors["api_key"] = "enter an API key (wahub keys create)"
        else:
            try:
                actor = await hub.access.authenticate(key)
                new_session = session.signed_in_with_key(actor.key_id)
            except AuthenticationFailed:
                errors["api_key"] = "this key is unknown or revoked"
    elif method == "password":
        password = form.get("password")
        if not user:
            errors["user"] = "enter your user name"
        if not isinstance(password, str) or not password:
            errors["password"] = "enter your password"
        if not errors:
            assert isinstance(password, str)
            try:
                actor, fingerprint = await hub.passwords.sign_in(user, password)
                new_session = session.signed_in_with_password(actor.user_id, fingerprint)
            except AuthenticationFailed:
                errors["password"] = "wrong user name or password"
    else:
        errors["method"] = "choose to sign in with an API key or a password"
    if new_session is None:
        # A sign-in page answer: missing fields are 422, wrong credentials 401.
        wrong = any(e.startswith(("this key", "wrong")) for e in errors.values())
        return _sign_in_page(
            request,
            session,
            next_path=target,
            errors=errors,
            user=user,
            method=method if method in ("key", "password") else "key",
            status_code=401 if wrong else 422,
        )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, new_session)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End this browser's session (the cookie is replaced by an anonymous one)."""
    await checked_form(request, session_of(request))
    response = RedirectResponse(SIGN_IN, status_code=303)
    set_session_cookie(request, response, UiSession.anonymous())
    return response
