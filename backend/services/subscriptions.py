"""The acceptance ledger: how many one-time subscribe acceptances each account has per template.

One tap on the phone is reported twice: by the mini-program (the result of
wx.requestSubscribeMessage, POSTed to /api/v1/subscriptions) and by WeChat's
subscribe_msg_popup_event. Either may arrive first, or alone (the phone may lose its
network, the push may be switched off). The rule that counts the tap once:

1. Whichever report of an accept arrives first credits one acceptance (delta +1).
2. A report from the other source for the same account and template, arriving within
   PAIR_WINDOW while a credit from the first source is still unpaired, only confirms that
   credit: it is recorded with delta 0 and pairs with it.
3. "Unpaired" is counted, not flagged: of the other source's credits in the window, more than
   this source's confirmations in the window means one is waiting for its twin.

So two real taps within the window (report, popup, report, popup in any order) still count
two. Each pairing decision runs after an UPDATE on the ledger row, which serialises the two
reports of one tap on SQLite and MySQL alike: the second sees the first's committed event.

The mini-program may report only template ids that a TemplateConfig uses (VALIDATION_FAILED
otherwise); WeChat's signed popup and change events are recorded as they come.

Withdrawals (subscribe_msg_change_event with "reject") set remaining to 0. A send spends one
with a guarded decrement that never goes below zero. Every change writes a SubscriptionEvent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from backend.errors import ValidationFailed
from backend.models import SubscriptionEvent, SubscriptionLedger, TemplateConfig, WechatAccount

logger = logging.getLogger(__name__)

#: how long after one report of a tap its twin from the other source is expected
PAIR_WINDOW = timedelta(minutes=10)
#: wx.requestSubscribeMessage answers one of these per template
REPORT_STATUSES = frozenset({"accept", "reject", "ban", "filter"})
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

_OTHER_SOURCE = {"report": "popup", "popup": "report"}


async def _ledger_row(
    account_id: int, template_id: str, using: BaseDBAsyncClient | None = None
) -> SubscriptionLedger:
    """The ledger row, created at zero the first time; safe against a racing creator."""
    row = (
        await SubscriptionLedger.filter(account_id=account_id, template_id=template_id)
        .using_db(using)
        .first()
    )
    if row is not None:
        return row
    try:
        # A savepoint, so a lost race does not spoil the caller's transaction.
        async with in_transaction() as conn:
            return await SubscriptionLedger.create(
                account_id=account_id, template_id=template_id, remaining=0, using_db=conn
            )
    except IntegrityError:
        return await SubscriptionLedger.get(account_id=account_id, template_id=template_id)


async def record_answer(account_id: int, template_id: str, source: str, status: str) -> int:
    """Count one answer of the phone (source report or popup); the remaining acceptances."""
    row = await _ledger_row(account_id, template_id)
    now = datetime.now(UTC)
    async with in_transaction() as conn:
        # Lock the row first: the other report of the same tap waits here until we commit.
        await SubscriptionLedger.filter(id=row.id).using_db(conn).update(updated_at=now)
        delta = 0
        if status == "accept":
            delta = 0 if await _pairs_with_other(account_id, template_id, source, now, conn) else 1
        if delta:
            await (
                SubscriptionLedger.filter(id=row.id)
                .using_db(conn)
                .update(remaining=F("remaining") + delta)
            )
        await SubscriptionEvent.create(
            account_id=account_id,
            template_id=template_id,
            source=source,
            action=status,
            delta=delta,
            using_db=conn,
        )
        fresh = await SubscriptionLedger.get(id=row.id, using_db=conn)
    return fresh.remaining


async def _pairs_with_other(
    account_id: int, template_id: str, source: str, now: datetime, conn: BaseDBAsyncClient
) -> bool:
    """True when this accept is the twin of an unpaired credit from the other source."""
    since = now - PAIR_WINDOW
    recent = SubscriptionEvent.filter(
        account_id=account_id, template_id=template_id, action="accept", created_at__gte=since
    ).using_db(conn)
    credits = await recent.filter(source=_OTHER_SOURCE[source], delta=1).count()
    confirmations = await recent.filter(source=source, delta=0).count()
    return credits > confirmations


async def withdraw(account_id: int, template_id: str, source: str = "change") -> None:
    """The user switched the template off: nothing left to spend."""
    row = await _ledger_row(account_id, template_id)
    async with in_transaction() as conn:
        await (
            SubscriptionLedger.filter(id=row.id).using_db(conn).update(updated_at=datetime.now(UTC))
        )
        fresh = await SubscriptionLedger.get(id=row.id, using_db=conn)
        await SubscriptionLedger.filter(id=row.id).using_db(conn).update(remaining=0)
        await SubscriptionEvent.create(
            account_id=account_id,
            template_id=template_id,
            source=source,
            action="withdraw",
            delta=-fresh.remaining,
            using_db=conn,
        )


async def spend(account_id: int, template_id: str, using: BaseDBAsyncClient) -> bool:
    """Spend one acceptance for a send; False (and nothing changed) when none is left."""
    spent = (
        await SubscriptionLedger.filter(
            account_id=account_id, template_id=template_id, remaining__gt=0
        )
        .using_db(using)
        .update(remaining=F("remaining") - 1)
    )
    if not spent:
        return False
    await SubscriptionEvent.create(
        account_id=account_id,
        template_id=template_id,
        source="send",
        action="spend",
        delta=-1,
        using_db=using,
    )
    return True


async def refund(account_id: int, template_id: str, using: BaseDBAsyncClient) -> None:
    """Give back the acceptance of a send that WeChat refused before using it."""
    await (
        SubscriptionLedger.filter(account_id=account_id, template_id=template_id)
        .using_db(using)
        .update(remaining=F("remaining") + 1)
    )
    await SubscriptionEvent.create(
        account_id=account_id,
        template_id=template_id,
        source="refund",
        action="refund",
        delta=1,
        using_db=using,
    )


async def zero(account_id: int, template_id: str, using: BaseDBAsyncClient) -> None:
    """WeChat said 43101: whatever we counted, the user has nothing left for this template."""
    row = (
        await SubscriptionLedger.filter(account_id=account_id, template_id=template_id)
        .using_db(using)
        .first()
    )
    if row is None:
        return
    await SubscriptionLedger.filter(id=row.id).using_db(using).update(remaining=0)
    await SubscriptionEvent.create(
        account_id=account_id,
        template_id=template_id,
        source="send",
        action="zeroed",
        delta=-row.remaining,
        using_db=using,
    )


async def report_acceptance(account: WechatAccount, results: Mapping[str, str]) -> dict[str, int]:
    """The mini-program's report of one subscribe request; remaining acceptances per template.

    Template ids no TemplateConfig uses are refused, the whole report with them: we could never
    send through them, and the ledger would fill with whatever a client makes up.
    """
    known = set(
        await TemplateConfig.filter(template_id__in=list(results)).values_list(
            "template_id", flat=True
        )
    )
    unknown = {
        f"results.{template_id}"[:160]: "没有使用该模板ID的消息通知"
        for template_id in results
        if template_id not in known
    }
    if unknown:
        raise ValidationFailed(details={"fields": unknown})
    remaining: dict[str, int] = {}
    for template_id, status in results.items():
        remaining[template_id] = await record_answer(account.id, template_id, "report", status)
    return remaining


async def account_for(openid: str) -> WechatAccount | None:
    """The account behind an openid of a push event, if it ever logged in."""
    return await WechatAccount.filter(openid=openid).first()


async def on_popup(openid: str, items: list[dict[str, str]]) -> None:
    """subscribe_msg_popup_event: the user answered a subscribe request on the phone."""
    account = await account_for(openid)
    if account is None:
        logger.info("popup event for an account we do not know: ignored")
        return
    for item in items:
        template_id = item.get("TemplateId", "")
        status = item.get("SubscribeStatusString", "")
        if TEMPLATE_ID.match(template_id) and status in REPORT_STATUSES:
            await record_answer(account.id, template_id, "popup", status)


async def on_change(openid: str, items: list[dict[str, str]]) -> None:
    """subscribe_msg_change_event: the user withdrew templates in WeChat's settings."""
    account = await account_for(openid)
    if account is None:
        logger.info("change event for an account we do not know: ignored")
        return
    for item in items:
        template_id = item.get("TemplateId", "")
        # Only withdrawals are reported; switching a template back on grants no acceptance.
        if TEMPLATE_ID.match(template_id) and item.get("SubscribeStatusString") == "reject":
            await withdraw(account.id, template_id)
