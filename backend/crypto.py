"""Field encryption (AES-256-GCM), keyed look-up hashes and masking for ID and phone numbers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.settings import Settings

_PREFIX = "v1:"


class FieldCipher:
    """Encrypts sensitive fields at rest; the purpose string binds a ciphertext to its column."""

    def __init__(self, settings: Settings) -> None:
        self._aead = AESGCM(settings.field_key_bytes())
        self._lookup_key = settings.lookup_key_bytes()

    def encrypt(self, plaintext: str, purpose: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), purpose.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, purpose: str) -> str:
        if not token.startswith(_PREFIX):
            raise ValueError("unknown ciphertext version")
        raw = base64.b64decode(token[len(_PREFIX) :])
        return self._aead.decrypt(raw[:12], raw[12:], purpose.encode()).decode()

    def lookup_hash(self, value: str, purpose: str) -> str:
        """A keyed hash, so a stolen table cannot be matched against a list of ID numbers."""
        message = f"{purpose}:{value}".encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()


def mask_id_number(id_number: str) -> str:
    """1401**********123X: the province and city digits and the last four only."""
    if len(id_number) < 8:
        return "*" * len(id_number)
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]


def mask_phone(phone: str) -> str:
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def token_digest(token: str) -> str:
    """What we store of a bearer token or session cookie."""
    return hashlib.sha256(token.encode()).hexdigest()
