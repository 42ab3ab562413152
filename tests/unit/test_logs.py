"""Logs never carry secrets, even when an error's traceback is logged."""

from __future__ import annotations

import logging
import secrets

import pytest

from wahub.logs import configure_logging


@pytest.mark.parametrize("json", [False, True], ids=["console", "json"])
def test_a_logged_traceback_does_not_show_local_variables(
    json: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=json)
    secret = "wh_" + secrets.token_urlsafe(16)  # built at run time, like a real key
    try:

        def handle(authorization: str) -> None:
            raise RuntimeError("boom")

        handle(f"Bearer {secret}")
    except RuntimeError:
        logging.getLogger("wahub.test").exception("request failed")
    err = capsys.readouterr().err
    assert "request failed" in err, "the error itself is logged"
    assert "RuntimeError: boom" in err, "with its traceback"
    assert secret not in err, "but not the locals holding a key"
