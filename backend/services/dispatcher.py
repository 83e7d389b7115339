"""The outbox dispatcher: sends due subscribe messages to WeChat and records every outcome.

Claiming. A worker reads a page of due rows (pending, or retry whose time has come), then
claims each with one guarded UPDATE (WHERE id=? AND status=<seen> AND (locked_until IS NULL
OR locked_until < now)) that moves it to "sending" under a lease. Of two workers, on SQLite
or MySQL, in one process or two, exactly one UPDATE matches; the other moves on. Claims are
made one at a time by a few concurrent lanes, each sending right after claiming, so at most
one message per lane is between its claim and its call.

Spending. The claim of a pending message spends one acceptance from the ledger in the same
transaction (a guarded decrement). None left: "undeliverable" and a phone task, no call. A
retry does not spend again: the acceptance stays held across retries.

Outcomes of the call:
- accepted (errcode 0): msgid kept as text; delivery is settled by the sent event.
- -1, busy, unreachable, token still refused after the client's one renewal: "retry" with
  exponential backoff plus jitter; after MAX_ATTEMPTS, "failed" and a phone task.
- 43101: never retried; "undeliverable", the ledger is set to 0, a phone task.
- 47003, 40003, 40037, 41030: a configuration problem; "failed", WARNING, a phone task.
- a time-out (sent, answer lost): "unknown", never resent (WeChat has no idempotency key);
  the sent event settles it. A worker that dies mid-send leaves "sending" whose lease
  expires: the next worker marks it "unknown" for the same reason.

Refunds. An acceptance is given back only when WeChat refused the message before accepting
it for a reason that cannot have used it: the configuration errors above and a retry
budget exhausted on -1. Nothing is refunded for 43101 (WeChat says there is none), for a
time-out (WeChat may have used it) or for a failed delivery (WeChat used it when it
accepted the message).

Unknown messages with no sent event after UNKNOWN_GRACE get a phone task, since the
veteran may never have received them; a late event still settles them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import F, Q
from tortoise.transactions import in_transaction

from backend import context
from backend.errors import (
    WechatBadAnswer,
    WechatBusy,
    WechatError,
    WechatRefused,
    WechatTimeout,
)
from backend.models import OutboxAttempt, OutboxMessage, WechatAccount
from backend.services import subscriptions
from backend.services.notifications import open_phone_task

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
LANES = 16
UNKNOWN_GRACE = timedelta(hours=1)
NO_ACCEPTANCE = 43101
#: WeChat refused the message itself: fixing it needs a person, not a retry
CONFIG_ERRORS = frozenset({47003, 40003, 40037, 41030})
#: statuses a sent event may still settle
OPEN_STATUSES = ("sending", "accepted", "unknown")
SENT_STASH_TTL = 86400

_REASONS = {
    "no_acceptance": "微信订阅消息无法送达：用户没有剩余的订阅次数，请电话告知。",
    "refused_43101": "微信订阅消息无法送达：用户已拒收该类消息，请电话告知。",
    "unbound": "微信已解绑，消息未通过微信发送，请电话告知。",
    "busy": "微信服务持续繁忙，消息未能发送，请电话告知。",
    "config": "消息模板配置有误（错误码 {errcode}），微信未发送，请电话告知并联系管理员。",
    "delivery": "微信未能送达消息（{status}），请电话告知。",
    "unconfirmed": "微信未确认消息是否送达，请电话告知。",
}


def backoff(attempts: int) -> timedelta:
    """The wait before retry number `attempts`: doubling from 30 s, capped, plus jitter."""
    base = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    # Jitter spreads a burst of -1 answers so that the retries do not arrive together.
    return timedelta(seconds=base + random.uniform(0, base / 4))


def _lease() -> timedelta:
    # Long enough for one call, a token renewal and the retried call, each with its timeout.
    timeout = context.current().settings.wechat_timeout
    return timedelta(seconds=max(60.0, 4 * timeout + 30))


async def run_once(worker_id: str, *, now: datetime | None = None) -> int:
    """Send one page of due messages; how many were handled (sent or given up)."""
    now = now or datetime.now(UTC)
    settings = context.current().settings
    recovered = await _recover_expired(worker_id, now)
    overdue = await _flag_unconfirmed(now)

    rows = (
        await OutboxMessage.filter(status__in=("pending", "retry"), next_attempt_at__lte=now)
        .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
        .order_by("next_attempt_at", "id")
        .limit(settings.dispatcher_batch)
        .values_list("id", "status")
    )
    # Two workers read the same page: starting at different points keeps them from colliding.
    queue = deque(random.sample(rows, len(rows)))
    outcomes: Counter[str] = Counter()

    async def lane() -> None:
        while queue:
            message_id, seen = queue.popleft()
            claimed = await _claim(message_id, seen, worker_id, now)
            if claimed is None:
                continue
            if isinstance(claimed, str):
                outcomes[claimed] += 1
                continue
            outcomes[await _deliver(claimed, worker_id)] += 1

    await asyncio.gather(*(lane() for _ in range(min(LANES, len(queue)))))
    handled = sum(outcomes.values())
    if handled or recovered or overdue:
        logger.info(
            "dispatch batch worker=%s handled=%d outcomes=%s recovered=%d unconfirmed=%d",
            worker_id,
            handled,
            dict(outcomes),
            recovered,
            overdue,
        )
    return handled


async def _claim(
    message_id: int, seen: str, worker: str, now: datetime
) -> OutboxMessage | str | None:
    """Take one message for this worker; None when another took it, a status when given up."""
    async with in_transaction() as conn:
        taken = await (
            OutboxMessage.filter(id=message_id, status=seen, next_attempt_at__lte=now)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lt=now))
            .using_db(conn)
            .update(status="sending", locked_by=worker, locked_until=now + _lease())
        )
        if not taken:
            return None
        message = await OutboxMessage.get(id=message_id, using_db=conn)

        reason = await _cannot_send(message, seen, conn)
        if reason is not None:
            await _record(message, worker, "no_acceptance", reason, None, conn)
            await (
                OutboxMessage.filter(id=message_id)
                .using_db(conn)
                .update(
                    status="undeliverable",
                    locked_by=None,
                    locked_until=None,
                    settled_at=datetime.now(UTC),
                    last_error=reason,
                )
            )
            await open_phone_task(message.veteran_id, message.id, _REASONS[reason], using=conn)
            return "undeliverable"

        await (
            OutboxMessage.filter(id=message_id)
            .using_db(conn)
            .update(attempts=F("attempts") + 1, sent_at=datetime.now(UTC))
        )
        message.attempts += 1
    return message


async def _cannot_send(message: OutboxMessage, seen: str, conn: Any) -> str | None:
    """Why the message must not go to WeChat now, or None; spends an acceptance if it may."""
    if message.account_id is None:
        return "unbound"
    # Never send a veteran's message to an account that is no longer theirs.
    still_bound = (
        await WechatAccount.filter(id=message.account_id, veteran_id=message.veteran_id)
        .using_db(conn)
        .exists()
    )
    if not still_bound:
        return "unbound"
    if seen == "pending":
        spent = await subscriptions.spend(message.account_id, message.template_id, conn)
        if not spent:
            return "no_acceptance"
    return None


async def _deliver(message: OutboxMessage, worker: str) -> str:
    """Call WeChat for a claimed message and record the outcome; the outcome's name."""
    wechat = context.current().wechat
    try:
        msgid = await wechat.send_subscribe(message.payload)
    except WechatTimeout as exc:
        return await _conclude(message, worker, "unknown", exc.errcode, exc.errmsg)
    except WechatRefused as exc:
        return await _refused(message, worker, exc)
    except WechatBadAnswer as exc:
        # An answer we cannot read may still have been an acceptance: do not risk a resend.
        return await _conclude(message, worker, "unknown", exc.errcode, exc.errmsg)
    except WechatBusy as exc:
        return await _retry(message, worker, exc.errcode, exc.errmsg)
    except WechatError as exc:
        logger.warning("outbox message %s: WeChat error %s, will retry", message.id, exc.errcode)
        return await _retry(message, worker, exc.errcode, exc.errmsg)
    return await _accepted(message, worker, msgid)


async def _refused(message: OutboxMessage, worker: str, exc: WechatRefused) -> str:
    if exc.errcode == NO_ACCEPTANCE:
        return await _conclude(
            message,
            worker,
            "undeliverable",
            exc.errcode,
            exc.errmsg,
            zero=True,
            phone=_REASONS["refused_43101"],
        )
    if exc.errcode in CONFIG_ERRORS:
        logger.warning(
            "outbox message %s refused by WeChat: errcode=%s %s",
            message.id,
            exc.errcode,
            exc.errmsg,
        )
        return await _conclude(
            message,
            worker,
            "failed",
            exc.errcode,
            exc.errmsg,
            refund=True,
            phone=_REASONS["config"].format(errcode=exc.errcode),
        )
    logger.warning("outbox message %s: errcode=%s, will retry", message.id, exc.errcode)
    return await _retry(message, worker, exc.errcode, exc.errmsg)


async def _retry(message: OutboxMessage, worker: str, errcode: int, errmsg: str) -> str:
    if message.attempts >= MAX_ATTEMPTS:
        return await _conclude(
            message, worker, "failed", errcode, errmsg, refund=True, phone=_REASONS["busy"]
        )
    due = datetime.now(UTC) + backoff(message.attempts)
    return await _conclude(message, worker, "retry", errcode, errmsg, next_attempt_at=due)


async def _conclude(
    message: OutboxMessage,
    worker: str,
    status: str,
    errcode: int | None,
    errmsg: str,
    *,
    refund: bool = False,
    zero: bool = False,
    phone: str | None = None,
    **extra: Any,
) -> str:
    """Record an attempt and move the message on, if it is still this worker's to move."""
    values: dict[str, Any] = {
        "status": status,
        "locked_by": None,
        "locked_until": None,
        "last_errcode": errcode,
        "last_error": (errmsg or "")[:255],
        **extra,
    }
    if status in ("failed", "undeliverable"):
        values["settled_at"] = datetime.now(UTC)
    outcome = {"undeliverable": "refused", "failed": "refused"}.get(status, status)
    async with in_transaction() as conn:
        moved = (
            await OutboxMessage.filter(id=message.id, status="sending", locked_by=worker)
            .using_db(conn)
            .update(**values)
        )
        await _record(message, worker, outcome, errmsg, errcode, conn)
        # A message settled meanwhile (by its sent event, or recovered) keeps that outcome.
        if moved and message.account_id is not None:
            if refund:
                await subscriptions.refund(message.account_id, message.template_id, conn)
            if zero:
                await subscriptions.zero(message.account_id, message.template_id, conn)
        if moved and phone:
            await open_phone_task(message.veteran_id, message.id, phone, using=conn)
    return status


async def _accepted(message: OutboxMessage, worker: str, msgid: str) -> str:
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        moved = (
            await OutboxMessage.filter(id=message.id, status__in=("sending", "unknown"))
            .using_db(conn)
            .update(
                status="accepted",
                msgid=msgid,
                locked_by=None,
                locked_until=None,
                last_errcode=0,
                last_error="",
                sent_at=now,
            )
        )
        if not moved:
            # The sent event came first and settled it; keep its outcome, add the msgid.
            await (
                OutboxMessage.filter(id=message.id, msgid__isnull=True)
                .using_db(conn)
                .update(msgid=msgid)
            )
        await _record(message, worker, "accepted", "ok", 0, conn)
    stash_key = _stash_key(msgid)
    stashed = await context.current().store.get(stash_key)
    if stashed:
        # Its sent event arrived before we knew the msgid: settle it now.
        result = json.loads(stashed)
        await _settle(OutboxMessage.filter(msgid=msgid), msgid, result["code"], result["status"])
        await context.current().store.delete(stash_key)
    return "accepted"


async def _record(
    message: OutboxMessage, worker: str, outcome: str, errmsg: str, errcode: int | None, conn: Any
) -> None:
    await OutboxAttempt.create(
        message_id=message.id,
        worker=worker[:64],
        outcome=outcome,
        errcode=errcode,
        errmsg=(errmsg or "")[:255],
        using_db=conn,
    )


async def _recover_expired(worker: str, now: datetime) -> int:
    """Messages whose worker died mid-send: they may have gone out, so they become unknown."""
    limit = context.current().settings.dispatcher_batch
    ids = (
        await OutboxMessage.filter(status="sending", locked_until__lt=now)
        .limit(limit)
        .values_list("id", flat=True)
    )
    recovered = 0
    for message_id in ids:
        async with in_transaction() as conn:
            moved = (
                await OutboxMessage.filter(id=message_id, status="sending", locked_until__lt=now)
                .using_db(conn)
                .update(
                    status="unknown",
                    locked_by=None,
                    locked_until=None,
                    last_error="发送进程中断，结果未知",
                )
            )
            if moved:
                await OutboxAttempt.create(
                    message_id=message_id,
                    worker=worker[:64],
                    outcome="unknown",
                    errmsg="lease expired: the worker stopped mid-send",
                    using_db=conn,
                )
                recovered += 1
    return recovered


async def _flag_unconfirmed(now: datetime) -> int:
    """Unknown messages nobody confirmed in time: the county phones, a late event still counts."""
    limit = context.current().settings.dispatcher_batch
    rows = (
        await OutboxMessage.filter(
            status="unknown", settled_at__isnull=True, sent_at__lt=now - UNKNOWN_GRACE
        )
        .limit(limit)
        .values_list("id", "veteran_id")
    )
    flagged = 0
    for message_id, veteran_id in rows:
        async with in_transaction() as conn:
            marked = (
                await OutboxMessage.filter(id=message_id, status="unknown", settled_at__isnull=True)
                .using_db(conn)
                .update(settled_at=now)
            )
            if marked:
                await open_phone_task(veteran_id, message_id, _REASONS["unconfirmed"], using=conn)
                flagged += 1
    return flagged


# -- the sent event ------------------------------------------------------------------------------


def _stash_key(msgid: str) -> str:
    return f"outbox:sent:{msgid}"


def _error_code(raw: str | None) -> int:
    try:
        return int(raw or 0)
    except ValueError:
        return -1


async def on_sent(openid: str, items: list[dict[str, str]]) -> None:
    """subscribe_msg_sent_event: mark each message delivered or failed."""
    account = await WechatAccount.filter(openid=openid).first()
    for item in items:
        msgid = item.get("MsgID", "")
        code = _error_code(item.get("ErrorCode"))
        status_text = item.get("ErrorStatus", "")
        template_id = item.get("TemplateId", "")
        if not msgid.isdigit() or len(msgid) > 32:
            logger.warning("sent event with a malformed MsgID: ignored")
            continue
        if await _settle(OutboxMessage.filter(msgid=msgid), msgid, code, status_text):
            continue
        if account is not None and await _settle_lost_answer(
            account.id, template_id, msgid, code, status_text
        ):
            continue
        # Not ours yet: the dispatcher may not have recorded the msgid. Leave it where the
        # dispatcher looks after recording, then look once more in case it just did.
        payload = json.dumps({"code": code, "status": status_text[:200]})
        await context.current().store.set(_stash_key(msgid), payload, SENT_STASH_TTL)
        if await _settle(OutboxMessage.filter(msgid=msgid), msgid, code, status_text):
            await context.current().store.delete(_stash_key(msgid))


async def _settle_lost_answer(
    account_id: int, template_id: str, msgid: str, code: int, status_text: str
) -> bool:
    """Match a message whose answer we never got: the only one to this user and template."""
    candidates = (
        await OutboxMessage.filter(
            account_id=account_id,
            template_id=template_id,
            status__in=("sending", "unknown"),
            msgid__isnull=True,
        )
        .limit(2)
        .values_list("id", flat=True)
    )
    if len(candidates) != 1:
        if candidates:
            logger.warning("sent event matches several messages without msgid: left unsettled")
        return False
    return await _settle(OutboxMessage.filter(id=candidates[0]), msgid, code, status_text)


async def _settle(query: Any, msgid: str, code: int, status_text: str) -> bool:
    """Apply a delivery result to the message the query finds; False when none."""
    message = await query.first()
    if message is None:
        return False
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "msgid": msgid,
        "settled_at": now,
        "locked_by": None,
        "locked_until": None,
        "status": "delivered" if code == 0 else "failed",
        "last_errcode": code,
        "last_error": "" if code == 0 else status_text[:255],
    }
    async with in_transaction() as conn:
        moved = (
            await OutboxMessage.filter(id=message.id, status__in=OPEN_STATUSES)
            .using_db(conn)
            .update(**values)
        )
        if moved and code != 0:
            reason = _REASONS["delivery"].format(status=status_text[:80] or code)
            await open_phone_task(message.veteran_id, message.id, reason, using=conn)
    return True


# -- running ---------------------------------------------------------------------------------------


async def run_forever(
    worker_id: str, stop_event: asyncio.Event, *, idle_seconds: float = 1.0
) -> None:
    """Dispatch until stop_event is set; `vetsvc dispatch` and the demo server run this."""
    logger.info("dispatcher %s started", worker_id)
    while not stop_event.is_set():
        try:
            handled = await run_once(worker_id)
        except Exception:
            logger.exception("dispatcher %s: batch failed", worker_id)
            handled, pause = 0, idle_seconds * 5
        else:
            pause = idle_seconds
        if handled:
            continue
        try:
            await asyncio.wait_for(stop_event.wait(), pause)
        except TimeoutError:
            pass
    logger.info("dispatcher %s stopped", worker_id)
