"""Provider credentials sealed at rest: Fernet tokens under a list of rotatable keys.

A channel's credentials (``{"access_token": ...}``) are stored as one Fernet token of
their JSON. ``MultiFernet`` encrypts with the first key and decrypts with any, so a new
key goes first, ``rotate`` re-seals every channel under it, and the old key can then be
dropped. A database copied without the key reveals no token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from wahub.domain.errors import CredentialsUnreadable, SecretKeyError

# How an operator makes a key, for error messages and the README.
GENERATE_HINT = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes)."""
    return Fernet.generate_key().decode()


def parse_keys(value: str) -> list[str]:
    """Split a comma-separated key list; blanks around and between keys are ignored."""
    return [part.strip() for part in value.split(",") if part.strip()]


class CredentialCipher:
    """Seals and opens credentials. The first key seals; every key opens.

    Raises ``SecretKeyError`` at construction for an empty list or a string that is not a
    Fernet key, naming which one (by position: keys are never printed).
    """

    def __init__(self, keys: Sequence[str], *, source: str = "WAHUB_SECRET_KEY") -> None:
        if not keys:
            raise SecretKeyError(f"{source}: no key given")
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode()))
            except ValueError:
                raise SecretKeyError(
                    f"{source}: key {position} of {len(keys)} is not a Fernet key "
                    f"(32 url-safe base64-encoded bytes; {GENERATE_HINT})"
                ) from None
        self._fernet = MultiFernet(fernets)
        self._first_key = keys[0].encode()
        self.source = source

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte secret for ``purpose`` (e.g. signing dashboard sessions), derived
        from the first key with HMAC-SHA256: one key to keep, and a secret that cannot
        open any credential. Rotating the first key changes every derived secret."""
        return hmac.new(self._first_key, purpose.encode(), hashlib.sha256).digest()

    def seal(self, credentials: Mapping[str, str]) -> str:
        """The credentials as one Fernet token under the first key."""
        return self._fernet.encrypt(orjson.dumps(dict(credentials))).decode()

    def open(self, sealed: object, *, channel: str) -> dict[str, str]:
        """The credentials inside ``sealed``. Raises ``CredentialsUnreadable`` naming
        ``channel`` when no key opens them (or the stored value is not a token)."""
        if not isinstance(sealed, str):
            raise CredentialsUnreadable(
                f"channel {channel}: its credentials are not sealed (stored by an older "
                "wahub and not migrated): run `wahub migrate`",
                details={"channel": channel},
            )
        try:
            opened = orjson.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            raise CredentialsUnreadable(
                f"channel {channel}: its credentials do not decrypt with {self.source} "
                "(set the key that sealed them, or give the channel a new token with "
                "`wahub channels update CHANNEL --token ...`)",
                details={"channel": channel},
            ) from None
        return {str(k): str(v) for k, v in opened.items()}

    def reseal(self, sealed: object, *, channel: str) -> str:
        """``sealed`` re-encrypted under the first key (legacy plaintext objects are
        sealed). Raises ``CredentialsUnreadable`` like ``open``."""
        if isinstance(sealed, Mapping):
            return self.seal({str(k): str(v) for k, v in sealed.items()})
        return self.seal(self.open(sealed, channel=channel))
