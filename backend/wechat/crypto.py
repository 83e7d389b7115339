"""WeChat cryptography and push parsing: the only module that imports wechatpy.

wechatpy is used for what it does well and is well tested on: the SHA-1 signer, the safe-mode
AES envelope (encrypt and decrypt, with its appid check) and the AES-128-CBC decryption of
`encryptedData`. Its own signature checks compare with `!=`, so the comparisons here are ours,
in constant time. Its 1.8 parser knows no subscribe-message events, so those are parsed here.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import xmltodict
from wechatpy.crypto import PrpCrypto, WeChatWxaCrypto
from wechatpy.crypto.base import WeChatCipher
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.utils import WeChatSigner

# The containers WeChat's XML form puts the per-template items in, by event.
_XML_CONTAINERS = {
    "subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
    "subscribe_msg_change_event": "SubscribeMsgChangeEvent",
    "subscribe_msg_sent_event": "SubscribeMsgSentEvent",
}

# What a wrong key, a truncated body or a foreign appid can raise inside wechatpy.
_DECRYPT_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    struct.error,
    binascii.Error,
    UnicodeDecodeError,
    InvalidAppIdException,
)


class PushRejected(Exception):
    """A push whose signature, envelope or content does not check out."""


class EncryptedDataInvalid(Exception):
    """encryptedData that does not decrypt with the session key, or is not for our app."""


@dataclass(frozen=True)
class PushEvent:
    """One decrypted push message, with its per-template items always as a list."""

    event: str
    openid: str
    create_time: int
    to_user: str = ""
    items: list[dict[str, str]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def sign(*parts: str) -> str:
    """SHA-1 of the sorted concatenation: WeChat's signature and msg_signature."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def signature_matches(expected: str, given: str) -> bool:
    """Compare signatures in constant time, so a forger learns nothing from timing."""
    return hmac.compare_digest(expected.encode(), (given or "").encode())


def check_url_signature(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """The plain signature of a push URL check (token, timestamp, nonce; not the body)."""
    return signature_matches(sign(token, timestamp, nonce), signature)


class PushCrypto:
    """Safe-mode (AES) push envelopes for one app: token, EncodingAESKey and appid."""

    def __init__(self, token: str, encoding_aes_key: str, appid: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=")
        except binascii.Error as exc:
            raise ValueError("EncodingAESKey is not base64") from exc
        if len(key) != 32:
            raise ValueError("EncodingAESKey must be 43 characters (32 bytes)")
        self._token = token
        self._prp = PrpCrypto(key)
        self._appid = appid

    def open(self, encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
        """Check msg_signature over the ciphertext, then decrypt; the plaintext message."""
        if not signature_matches(sign(self._token, timestamp, nonce, encrypted), msg_signature):
            raise PushRejected("msg_signature does not match")
        try:
            return str(self._prp.decrypt(encrypted, self._appid))
        except _DECRYPT_ERRORS as exc:
            raise PushRejected("envelope does not decrypt for this app") from exc

    def seal(self, plaintext: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """Encrypt a message as WeChat does; (Encrypt, msg_signature)."""
        encrypted = self._prp.encrypt(plaintext, self._appid).decode()
        return encrypted, sign(self._token, timestamp, nonce, encrypted)


def envelope_ciphertext(body: bytes) -> str:
    """The Encrypt field of a safe-mode body, in its JSON or XML form."""
    text = body.decode("utf-8", errors="strict").strip()
    if text.startswith("<"):
        envelope = _xml(text)
    else:
        try:
            envelope = json.loads(text)
        except ValueError as exc:
            raise PushRejected("body is neither XML nor JSON") from exc
    encrypted = envelope.get("Encrypt") if isinstance(envelope, dict) else None
    if not isinstance(encrypted, str) or not encrypted:
        raise PushRejected("no Encrypt field")
    return encrypted


def parse_push(plaintext: str) -> PushEvent:
    """Parse a decrypted push message (XML or JSON) into a PushEvent."""
    text = plaintext.strip()
    if text.startswith("<"):
        message = _xml(text)
    else:
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise PushRejected("message is neither XML nor JSON") from exc
    if not isinstance(message, dict):
        raise PushRejected("message is not an object")

    event = str(message.get("Event") or message.get("MsgType") or "")
    container = message.get(_XML_CONTAINERS.get(event, ""))
    # JSON puts List at the top; XML wraps it in a per-event element.
    found = message.get("List")
    if found is None and isinstance(container, dict):
        found = container.get("List")
    try:
        create_time = int(message.get("CreateTime") or 0)
    except (TypeError, ValueError) as exc:
        raise PushRejected("CreateTime is not a number") from exc
    return PushEvent(
        event=event,
        openid=str(message.get("FromUserName") or ""),
        create_time=create_time,
        to_user=str(message.get("ToUserName") or ""),
        items=normalise_items(found),
        raw=message,
    )


def normalise_items(found: object) -> list[dict[str, str]]:
    """`List` is an object for one item and an array for several: always a list of text."""
    if found is None:
        return []
    entries = found if isinstance(found, list) else [found]
    items = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise PushRejected("List item is not an object")
        # XML gives every value as text and JSON some as numbers; text for all keeps a
        # 64-bit MsgID exact and makes both forms compare equal.
        items.append({str(k): "" if v is None else str(v) for k, v in entry.items()})
    return items


def _xml(text: str) -> dict[str, Any]:
    try:
        # xmltodict is wechatpy's own XML dependency; entities stay disabled.
        parsed = xmltodict.parse(text, disable_entities=True)
    except Exception as exc:  # expat raises its own ExpatError family
        raise PushRejected("malformed XML") from exc
    root = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(root, dict):
        raise PushRejected("no <xml> root")
    return root


def new_nonce() -> str:
    """A random nonce for a push we sign."""
    return secrets.token_hex(8)


def decrypt_encrypted_data(
    session_key: str, encrypted_data: str, iv: str, appid: str
) -> dict[str, Any]:
    """Decrypt the deprecated `encryptedData` form (AES-128-CBC) and check its watermark."""
    try:
        data = WeChatWxaCrypto(session_key, iv, appid).decrypt_message(encrypted_data)
    except _DECRYPT_ERRORS as exc:
        raise EncryptedDataInvalid("encryptedData does not decrypt for this app") from exc
    if not isinstance(data, dict):
        raise EncryptedDataInvalid("encryptedData is not an object")
    return data


def encrypt_encrypted_data(session_key: str, iv: str, data: dict[str, Any]) -> str:
    """The phone's side of the deprecated form, for the stand-in: AES-128-CBC, PKCS#7."""
    plain = json.dumps(data, ensure_ascii=False).encode()
    pad = 16 - len(plain) % 16
    cipher = WeChatCipher(base64.b64decode(session_key), base64.b64decode(iv))
    return base64.b64encode(cipher.encrypt(plain + bytes([pad]) * pad)).decode()
