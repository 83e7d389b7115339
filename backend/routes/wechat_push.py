"""WeChat's message push URL: the URL check and the safe-mode subscribe-message events.

A push is accepted only when its msg_signature checks (in constant time), its timestamp is
within five minutes and it has not been handled before; then the event goes to the
notifications service. The "seen" mark and the handling commit together, so a push whose
handling fails is not marked and WeChat's retry gets another chance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from sanic import Blueprint, Request
from sanic.exceptions import ServiceUnavailable
from sanic.response import HTTPResponse, text
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from backend.errors import Forbidden, MalformedRequest, PayloadTooLarge
from backend.models.notifications import PushEventSeen
from backend.settings import Settings
from backend.wechat.crypto import (
    PushCrypto,
    PushEvent,
    PushRejected,
    check_url_signature,
    envelope_ciphertext,
    parse_push,
)

logger = logging.getLogger(__name__)

bp = Blueprint("wechat_push", url_prefix="/wechat")

#: how far a push's timestamp may be from our clock before it is refused as a replay
MAX_SKEW_SECONDS = 300

#: event -> the function of backend.services.notifications that takes it
HANDLERS = {
    "subscribe_msg_popup_event": "on_popup",
    "subscribe_msg_change_event": "on_change",
    "subscribe_msg_sent_event": "on_sent",
}

EventHandler = Callable[[str, list[dict[str, str]]], Awaitable[None]]


@bp.get("/push", name="check_push_url")
async def check_push_url(request: Request) -> HTTPResponse:
    """WeChat's URL check: echo echostr when the plain signature is ours."""
    settings: Settings = request.app.ctx.settings
    args = request.args
    if not settings.wechat_push_token or not check_url_signature(
        settings.wechat_push_token,
        args.get("signature", ""),
        args.get("timestamp", ""),
        args.get("nonce", ""),
    ):
        logger.warning("push URL check refused: bad signature")
        raise Forbidden(details={"reason": "signature"})
    return text(args.get("echostr", ""))


@bp.post("/push", name="receive_push")
async def receive_push(request: Request) -> HTTPResponse:
    """Take one safe-mode push from WeChat and hand its event to the notifications service."""
    settings: Settings = request.app.ctx.settings
    if len(request.body) > settings.max_body_bytes:
        raise PayloadTooLarge()
    event = _open(request, settings)

    name = HANDLERS.get(event.event)
    if name is None:
        logger.info("push %s ignored: not an event this service handles", event.event)
        return text("success")
    handler = _handler(name)
    key = _event_key(event)
    async with in_transaction():
        try:
            await PushEventSeen.create(key=key)
        except IntegrityError:
            logger.info("push %s dropped: delivered before", event.event)
            return text("success")
        await handler(event.openid, event.items)
    logger.info("push %s handled (%d items)", event.event, len(event.items))
    return text("success")


def _open(request: Request, settings: Settings) -> PushEvent:
    """Authenticate, decrypt and parse the push, or refuse it."""
    args = request.args
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    if args.get("encrypt_type") != "aes":
        # In plain mode nothing authenticates the body: only safe mode is accepted.
        logger.warning("push refused: not in safe mode")
        raise Forbidden(details={"reason": "safe_mode_required"})
    if not check_url_signature(
        settings.wechat_push_token, args.get("signature", ""), timestamp, nonce
    ):
        logger.warning("push refused: bad signature")
        raise Forbidden(details={"reason": "signature"})
    try:
        encrypted = envelope_ciphertext(request.body)
    except (PushRejected, UnicodeDecodeError) as exc:
        raise MalformedRequest(details={"reason": "envelope"}) from exc
    try:
        plaintext = _crypto(request, settings).open(
            encrypted, args.get("msg_signature", ""), timestamp, nonce
        )
    except PushRejected as exc:
        logger.warning("push refused: %s", exc)
        raise Forbidden(details={"reason": "signature"}) from exc
    # The timestamp is covered by the signature, so a stale one is a replay, not a typo.
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        logger.warning("push refused: stale timestamp")
        raise Forbidden(details={"reason": "stale"})
    try:
        return parse_push(plaintext)
    except PushRejected as exc:
        logger.warning("push refused: %s", exc)
        raise MalformedRequest(details={"reason": "message"}) from exc


def _crypto(request: Request, settings: Settings) -> PushCrypto:
    crypto = getattr(request.app.ctx, "push_crypto", None)
    if crypto is None:
        crypto = PushCrypto(
            settings.wechat_push_token, settings.wechat_aes_key, settings.wechat_appid
        )
        request.app.ctx.push_crypto = crypto
    return crypto


def _handler(name: str) -> EventHandler:
    """The notifications service function, imported when first needed."""
    try:
        from backend.services import notifications
    except ImportError as exc:
        # Refusing makes WeChat deliver again later instead of losing the event.
        logger.error("push cannot be handled: notifications service missing (%s)", exc)
        raise ServiceUnavailable("notifications service unavailable") from exc
    handler: EventHandler = getattr(notifications, name)
    return handler


def _event_key(event: PushEvent) -> str:
    """The identity of a push: WeChat repeats a delivery with the same sender, time and items."""
    items = json.dumps(event.items, sort_keys=True, ensure_ascii=False)
    identity = f"{event.openid}|{event.create_time}|{event.event}|{items}"
    return "push:" + hashlib.sha256(identity.encode()).hexdigest()
