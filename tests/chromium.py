"""The real browser the dashboard's tests drive, and the real server they drive it at.

Debian's chromium (``scripts/ensure-chromium`` installs it; Playwright's own browser
download cannot be reached from our machines) through Playwright's ``executable_path``.
Without it the tests fail, unless ``WAHUB_TEST_BROWSER=optional`` says to skip them.

Screenshots go to a temporary directory, or to ``WAHUB_UI_SCREENSHOTS`` when set
(``make screenshots`` sets it to ``docs/screenshots``, regenerating the README's).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM_CANDIDATES = ("chromium", "/usr/bin/chromium", "chromium-browser")


def chromium_path() -> str:
    """Debian's chromium, or a skip (``WAHUB_TEST_BROWSER=optional``), or a failure."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    if os.environ.get("WAHUB_TEST_BROWSER") == "optional":
        pytest.skip(
            "chromium is not installed and WAHUB_TEST_BROWSER=optional: browser tests skipped"
        )
    pytest.fail(
        "chromium is not installed: run ./scripts/ensure-chromium (make test does), "
        "or set WAHUB_TEST_BROWSER=optional to skip the browser tests"
    )


def screenshot_dir(tmp: Path) -> Path:
    chosen = os.environ.get("WAHUB_UI_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp
    path.mkdir(parents=True, exist_ok=True)
    return path
