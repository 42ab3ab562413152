"""Jinja2 templates of the package, rendered with autoescaping always on.

Everything a user or a provider wrote (message text, chat and file names, CSV values)
reaches a page through ``{{ }}`` and is escaped; no template marks such a value safe.
The Content-Security-Policy allows scripts and styles from our own origin only, so even
a value that slipped through could not run.
"""

from __future__ import annotations

import time
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import HTMLResponse

NOTHING = "\u2013"  # an en dash: no value

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def ago(seconds: float | None) -> str:
    """``12 s``, ``4 min``, ``3 h``, ``2 d``: an age for people."""
    if seconds is None:
        return NOTHING
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def clock(timestamp: float | None) -> str:
    """A UTC time of day, with the date when it is not today."""
    if timestamp is None:
        return NOTHING
    now = time.gmtime()
    moment = time.gmtime(timestamp)
    if moment[:3] == now[:3]:
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%Y-%m-%d %H:%M", moment)


TICKS = {
    "queued": "\u25f7",  # a clock: waiting its turn
    "sending": "\u25f7",
    "uncertain": "?",
    "sent": "\u2713",
    "delivered": "\u2713\u2713",
    "read": "\u2713\u2713",
    "failed": "\u2717",
}


def tick(status: str) -> str:
    """The delivery tick people know from WhatsApp for a message status."""
    return TICKS.get(status, status)


def countdown(until: float | None, now: float) -> str:
    """``closes in 3 h 12 min`` for an open 24-hour window, ``closed`` otherwise."""
    if until is None or until <= now:
        return "closed"
    left = int(until - now)
    hours, minutes = divmod(left // 60, 60)
    return f"closes in {hours} h {minutes:02d} min"


environment = Environment(
    loader=PackageLoader("wahub.ui", "templates"),
    autoescape=True,  # every template, whatever its name
    undefined=StrictUndefined,  # a misspelt variable is an error, not an empty string
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["ago"] = ago
environment.filters["clock"] = clock
environment.filters["tick"] = tick
environment.globals["countdown"] = countdown


def render(template: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """The template rendered as an HTML response with the dashboard's security headers."""
    html = environment.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
