"""The one signing code (replication sink and subscriptions): Standard Webhooks headers
that the ``standardwebhooks`` package verifies, and how a receiver's answer is read."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from wahub.signed_webhooks import Outcome, new_secret, secret_key, standard_headers
from wahub.signed_webhooks.posting import classify


def test_a_generated_secret_signs_what_standardwebhooks_verifies() -> None:
    secret = new_secret()
    body = b'{"type":"ping","data":{}}'
    headers = standard_headers(secret_key(secret), "evt_1", int(time.time()), body)

    assert Webhook(secret).verify(body, headers) == {"type": "ping", "data": {}}
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32


def test_a_tampered_body_or_another_secret_does_not_verify() -> None:
    secret = new_secret()
    headers = standard_headers(secret_key(secret), "evt_1", int(time.time()), b"{}")

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"x":1}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(b"{}", headers)


def test_a_free_form_secret_is_its_bytes_as_the_key() -> None:
    headers = standard_headers(secret_key("sink-secret"), "evt_2", int(time.time()), b"{}")
    as_whsec = "whsec_" + base64.b64encode(b"sink-secret").decode()

    assert Webhook(as_whsec).verify(b"{}", headers) == {}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (301, Outcome.RETRY),
        (400, Outcome.REFUSED),
        (404, Outcome.REFUSED),
        (408, Outcome.RETRY),
        (410, Outcome.GONE),
        (425, Outcome.RETRY),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_an_answer_means_delivered_refused_gone_or_retry(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome
