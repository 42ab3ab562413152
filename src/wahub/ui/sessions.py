"""The dashboard's session cookie: signed, timed, and holding no secret.

The cookie carries a CSRF token and who signed in: the id of the API key (never the
key) or the user id with a fingerprint of their password hash. It is signed with a
secret derived from the credentials key (``CredentialCipher.derive_key``), so it needs
no key of its own and every ``serve`` process sharing WAHUB_SECRET_KEY accepts it.
Each request re-checks the key or password in the database, so revoking a key or
changing a password ends its sessions at once.

A visitor who has not signed in gets an anonymous session (a CSRF token only), so the
sign-in form is protected like every other form.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE_NAME = "wahub_session"
COOKIE_PATH = "/ui"
SIGNING_PURPOSE = "wahub dashboard sessions"


@dataclass(frozen=True, slots=True)
class UiSession:
    """One browser's session. Signed in when ``key_id`` or ``user_id`` is set."""

    csrf: str
    key_id: str | None = None
    user_id: str | None = None
    password_fingerprint: str | None = None

    @classmethod
    def anonymous(cls) -> UiSession:
        return cls(csrf=secrets.token_urlsafe(24))

    def signed_in_with_key(self, key_id: str) -> UiSession:
        """A new session for the key (new CSRF token: a token seen before sign-in must
        not outlive it)."""
        return replace(UiSession.anonymous(), key_id=key_id)

    def signed_in_with_password(self, user_id: str, fingerprint: str) -> UiSession:
        return replace(UiSession.anonymous(), user_id=user_id, password_fingerprint=fingerprint)

    @property
    def signed_in(self) -> bool:
        return self.key_id is not None or self.user_id is not None


class SessionCodec:
    """Turns sessions into cookie values and back."""

    def __init__(self, secret: bytes, *, max_age_seconds: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="wahub-ui-session")
        self.max_age_seconds = max_age_seconds

    def dumps(self, session: UiSession) -> str:
        payload: dict[str, Any] = {"c": session.csrf}
        if session.key_id is not None:
            payload["k"] = session.key_id
        if session.user_id is not None:
            payload["u"] = session.user_id
            payload["p"] = session.password_fingerprint
        return str(self._serializer.dumps(payload))

    def loads(self, value: str | None) -> UiSession | None:
        """The session in ``value``; None when it is missing, forged, expired or not ours."""
        if not value:
            return None
        try:
            payload = self._serializer.loads(value, max_age=int(self.max_age_seconds))
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        if not isinstance(payload, dict):
            return None
        csrf = payload.get("c")
        optional = (payload.get("k"), payload.get("u"), payload.get("p"))
        if not isinstance(csrf, str) or not all(f is None or isinstance(f, str) for f in optional):
            return None
        key_id, user_id, fingerprint = optional
        if user_id is not None and fingerprint is None:
            return None
        return UiSession(csrf, key_id, user_id, fingerprint)
