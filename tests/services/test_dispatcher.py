"""The outbox dispatcher against the real WeChat stand-in, with sent events pushed to the server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend import context
from backend.models import (
    InboxMessage,
    OutboxAttempt,
    OutboxMessage,
    PhoneTask,
    SubscriptionLedger,
    Veteran,
    WechatAccount,
)
from backend.services import dispatcher, notifications
from backend.settings import Settings
from tests.factories import make_veteran

SEND = "/cgi-bin/message/subscribe/send"
TID = "DEMO-registration-result-0001"


class Wechat:
    """The stand-in's phone side and its records."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def login(self, openid: str) -> None:
        # The stand-in only sends to openids that logged in to the app.
        code = (await self.http.post("/__standin__/login-code", json={"openid": openid})).json()
        await context.current().wechat.code2session(code["code"])

    async def accept(self, openid: str, template_id: str = TID) -> None:
        body = {"openid": openid, "templates": {template_id: "accept"}}
        await self.http.post("/__standin__/subscribe", json=body)

    async def fault(self, **fault: Any) -> None:
        await self.http.post("/__standin__/faults", json={"path": SEND, **fault})

    async def sent(self) -> list[dict[str, Any]]:
        return list((await self.http.get("/__standin__/sent")).json()["sent"])

    async def calls(self, path: str = SEND) -> int:
        return int((await self.http.get("/__standin__/calls")).json()["calls"].get(path, 0))


@pytest.fixture
async def wechat(server: tuple[str, Settings], standin: str) -> AsyncIterator[Wechat]:
    await notifications.ensure_default_templates()
    async with httpx.AsyncClient(base_url=standin, timeout=10) as http:
        yield Wechat(http)


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait for a pushed event to be handled by the server."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def ledger(account: WechatAccount) -> int:
    row = await SubscriptionLedger.get_or_none(account_id=account.id, template_id=TID)
    return row.remaining if row else 0


async def subscribed_veteran(
    wechat: Wechat, openid: str, accepts: int = 1
) -> tuple[Veteran, WechatAccount]:
    """A bound veteran whose phone accepted the template `accepts` times."""
    veteran = await make_veteran()
    account = await WechatAccount.create(
        openid=openid, veteran=veteran, bound_at=datetime.now(UTC), privacy_version="2026-01"
    )
    await wechat.login(openid)
    for n in range(accepts):
        await wechat.accept(openid)
        await eventually(lambda n=n: _at_least(account, n + 1))
    return veteran, account


async def _at_least(account: WechatAccount, count: int) -> bool:
    return await ledger(account) >= count


async def approve(veteran: Veteran, object_id: int = 1) -> OutboxMessage:
    message = await notifications.enqueue(
        "registration.approved",
        veteran,
        {"year": 2025},
        object_type="registration",
        object_id=object_id,
    )
    assert message is not None
    return message


async def status_of(message: OutboxMessage) -> str:
    return (await OutboxMessage.get(id=message.id)).status


def later(minutes: int = 120) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def test_accepted_message_is_marked_delivered_by_the_sent_event(wechat: Wechat) -> None:
    veteran, account = await subscribed_veteran(wechat, "o-deliver")
    message = await approve(veteran)

    assert await dispatcher.run_once("w1") == 1

    await eventually(lambda: _is(message, "delivered"))
    row = await OutboxMessage.get(id=message.id)
    sent = await wechat.sent()
    assert [s["msgid"] for s in sent] == [row.msgid]
    assert sent[0]["data"]["thing1"] == {"value": "2025年度登记审核"}
    assert await ledger(account) == 0
    assert [a.outcome for a in await OutboxAttempt.filter(message_id=message.id)] == ["accepted"]


async def _is(message: OutboxMessage, status: str) -> bool:
    return await status_of(message) == status


async def test_busy_answer_is_retried_with_backoff_then_accepted(wechat: Wechat) -> None:
    veteran, account = await subscribed_veteran(wechat, "o-busy")
    message = await approve(veteran)
    await wechat.fault(errcode=-1)

    await dispatcher.run_once("w1")

    row = await OutboxMessage.get(id=message.id)
    assert row.status == "retry"
    assert row.next_attempt_at >= datetime.now(UTC) + timedelta(seconds=25)
    assert await dispatcher.run_once("w1") == 0  # not due yet

    await dispatcher.run_once("w1", now=later())

    await eventually(lambda: _is(message, "delivered"))
    outcomes = [a.outcome for a in await OutboxAttempt.filter(message_id=message.id).order_by("id")]
    assert outcomes == ["retry", "accepted"]
    assert len(await wechat.sent()) == 1
    assert await ledger(account) == 0  # the retry spent no second acceptance


async def test_busy_until_the_attempts_run_out_fails_refunds_and_opens_a_phone_task(
    wechat: Wechat,
) -> None:
    veteran, account = await subscribed_veteran(wechat, "o-always-busy")
    message = await approve(veteran)
    await wechat.fault(errcode=-1, times=dispatcher.MAX_ATTEMPTS)

    for hour in range(dispatcher.MAX_ATTEMPTS):
        await dispatcher.run_once("w1", now=later(60 * (hour + 1) * 2))

    assert await status_of(message) == "failed"
    assert await wechat.calls() == dispatcher.MAX_ATTEMPTS
    assert await PhoneTask.filter(message_id=message.id).count() == 1
    assert await ledger(account) == 1


async def test_43101_is_undeliverable_with_a_phone_task_and_never_retried(
    wechat: Wechat,
) -> None:
    veteran, account = await subscribed_veteran(wechat, "o-refuses")
    # WeChat has none left although we counted one (say, a change event that never came).
    await wechat.fault(errcode=43101)
    message = await approve(veteran)

    await dispatcher.run_once("w1")
    await dispatcher.run_once("w1", now=later())

    assert await status_of(message) == "undeliverable"
    assert await wechat.calls() == 1
    task = await PhoneTask.get(message_id=message.id)
    assert task.county_code == veteran.county_code
    assert task.status == "open"
    assert await InboxMessage.filter(veteran_id=veteran.id).count() == 1
    assert await ledger(account) == 0


async def test_no_acceptance_left_is_undeliverable_without_calling_wechat(
    wechat: Wechat,
) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-no-accept", accepts=0)
    message = await approve(veteran)

    assert await dispatcher.run_once("w1") == 1

    assert await status_of(message) == "undeliverable"
    assert await wechat.calls() == 0
    assert await PhoneTask.filter(message_id=message.id).exists()
    assert await InboxMessage.filter(veteran_id=veteran.id).exists()


async def test_configuration_error_fails_refunds_and_opens_a_phone_task(wechat: Wechat) -> None:
    veteran, account = await subscribed_veteran(wechat, "o-config")
    message = await approve(veteran)
    await wechat.fault(errcode=47003, errmsg="argument invalid! data.thing1.value invalid")

    await dispatcher.run_once("w1")
    await dispatcher.run_once("w1", now=later())

    row = await OutboxMessage.get(id=message.id)
    assert (row.status, row.last_errcode) == ("failed", 47003)
    assert await wechat.calls() == 1
    assert await PhoneTask.filter(message_id=message.id).exists()
    assert await ledger(account) == 1


async def test_timeout_is_unknown_settled_by_the_sent_event_and_never_resent(
    wechat: Wechat,
) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-timeout")
    message = await approve(veteran)
    await wechat.http.post("/__standin__/config", json={"deliver": False})
    await wechat.fault(drop=True)  # WeChat takes the message, the answer is lost

    await dispatcher.run_once("w1")

    assert await status_of(message) == "unknown"
    await dispatcher.run_once("w1", now=later())
    sent = await wechat.sent()
    assert len(sent) == 1
    assert await wechat.calls() == 1

    item = {
        "TemplateId": TID,
        "MsgID": sent[0]["msgid"],
        "ErrorCode": "0",
        "ErrorStatus": "success",
    }
    await notifications.on_sent("o-timeout", [item])

    row = await OutboxMessage.get(id=message.id)
    assert (row.status, row.msgid) == ("delivered", sent[0]["msgid"])
    await dispatcher.run_once("w1", now=later(240))
    assert await wechat.calls() == 1


async def test_timeout_with_the_event_pushed_meanwhile_ends_delivered(wechat: Wechat) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-timeout-push")
    message = await approve(veteran)
    await wechat.fault(drop=True)

    await dispatcher.run_once("w1")

    await eventually(lambda: _is(message, "delivered"))
    assert len(await wechat.sent()) == 1


async def test_failed_delivery_event_opens_a_phone_task(wechat: Wechat) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-fails")
    await wechat.http.post("/__standin__/config", json={"deliver": False})
    message = await approve(veteran)
    await dispatcher.run_once("w1")
    row = await OutboxMessage.get(id=message.id)
    assert row.status == "accepted"

    item = {
        "TemplateId": TID,
        "MsgID": row.msgid,
        "ErrorCode": "10002",
        "ErrorStatus": "failed:user refuse to accept the msg",
    }
    await notifications.on_sent("o-fails", [item])

    assert await status_of(message) == "failed"
    assert await PhoneTask.filter(message_id=message.id).exists()


async def test_expired_access_token_is_renewed_once_and_the_send_succeeds(
    wechat: Wechat,
) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-token")
    message = await approve(veteran)
    await wechat.fault(errcode=40001)

    await dispatcher.run_once("w1")

    await eventually(lambda: _is(message, "delivered"))
    assert await wechat.calls() == 2
    assert len(await wechat.sent()) == 1


async def test_two_dispatchers_never_send_one_message_twice(wechat: Wechat) -> None:
    messages = []
    for n in range(12):
        veteran, _ = await subscribed_veteran(wechat, f"o-pair-{n}")
        messages.append(await approve(veteran, object_id=n))

    handled = await asyncio.gather(dispatcher.run_once("w-a"), dispatcher.run_once("w-b"))

    assert sum(handled) == 12
    sent = await wechat.sent()
    assert len(sent) == 12
    assert len({s["touser"] for s in sent}) == 12
    for message in messages:
        assert await OutboxAttempt.filter(message_id=message.id).count() == 1


async def test_a_dead_workers_claim_expires_into_unknown_and_is_not_resent(
    wechat: Wechat,
) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-crash")
    message = await approve(veteran)
    past = datetime.now(UTC) - timedelta(minutes=5)
    await OutboxMessage.filter(id=message.id).update(
        status="sending", locked_by="dead", locked_until=past, sent_at=past
    )

    await dispatcher.run_once("w1")

    assert await status_of(message) == "unknown"
    assert await wechat.calls() == 0


async def test_unknown_without_an_event_gets_a_phone_task_after_the_grace(wechat: Wechat) -> None:
    veteran, _ = await subscribed_veteran(wechat, "o-silent")
    message = await approve(veteran)
    long_ago = datetime.now(UTC) - dispatcher.UNKNOWN_GRACE - timedelta(minutes=1)
    await OutboxMessage.filter(id=message.id).update(status="unknown", sent_at=long_ago)

    await dispatcher.run_once("w1")
    await dispatcher.run_once("w1")

    assert await PhoneTask.filter(message_id=message.id).count() == 1
    assert await status_of(message) == "unknown"


async def test_message_of_an_unbound_account_is_not_sent(wechat: Wechat) -> None:
    veteran, account = await subscribed_veteran(wechat, "o-unbound")
    message = await approve(veteran)
    await WechatAccount.filter(id=account.id).update(veteran_id=None)

    await dispatcher.run_once("w1")

    assert await status_of(message) == "undeliverable"
    assert await wechat.calls() == 0


async def test_run_forever_stops_when_asked(db_ready: Settings) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run_forever("w-loop", stop, idle_seconds=0.05))
    await asyncio.sleep(0.2)

    stop.set()

    await asyncio.wait_for(task, 2)
