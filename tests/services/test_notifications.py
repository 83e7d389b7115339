"""Template configuration, enqueue (inbox, outbox, phone task) and the acceptance ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

from backend.errors import TemplateConfigInvalid, ValidationFailed
from backend.models import (
    AuditLog,
    InboxMessage,
    OutboxMessage,
    PhoneTask,
    SubscriptionEvent,
    SubscriptionLedger,
    TemplateConfig,
    Veteran,
    WechatAccount,
)
from backend.services import notifications, subscriptions
from backend.settings import Settings
from tests.factories import make_region_tree, make_staff, make_veteran

pytestmark = pytest.mark.usefixtures("db_ready")

APPROVED_TID = "DEMO-registration-result-0001"
INTERVIEW_AT = datetime(2027, 1, 5, 1, 30, tzinfo=UTC)  # 09:30 in Beijing


async def bound_veteran(openid: str = "o-test-veteran") -> tuple[Veteran, WechatAccount]:
    veteran = await make_veteran()
    account = await WechatAccount.create(
        openid=openid, veteran=veteran, bound_at=datetime.now(UTC), privacy_version="2026-01"
    )
    return veteran, account


# -- template configuration ------------------------------------------------------------------


async def test_date_value_mapped_to_phrase_is_refused_when_saved() -> None:
    with pytest.raises(TemplateConfigInvalid) as caught:
        await notifications.save_template_config(
            "registration.returned", "TPL-1", "", {"thing1": "title", "phrase2": "deadline"}, None
        )

    problems = caught.value.details["fields"]
    assert list(problems) == ["fields_map.phrase2"]
    assert "截止日期" in problems["fields_map.phrase2"]
    assert not await TemplateConfig.exists(event="registration.returned")


async def test_free_text_location_mapped_to_phrase_is_refused_when_saved() -> None:
    with pytest.raises(TemplateConfigInvalid) as caught:
        await notifications.save_template_config(
            "interview.scheduled", "TPL-2", "", {"phrase1": "location"}, None
        )

    assert "fields_map.phrase1" in caught.value.details["fields"]


async def test_year_into_phrase_and_text_into_number_are_refused() -> None:
    with pytest.raises(TemplateConfigInvalid) as caught:
        await notifications.save_template_config(
            "registration.approved", "TPL-3", "", {"phrase1": "year", "number2": "title"}, None
        )

    assert set(caught.value.details["fields"]) == {"fields_map.phrase1", "fields_map.number2"}


async def test_unknown_value_name_key_and_template_id_are_refused() -> None:
    with pytest.raises(TemplateConfigInvalid) as caught:
        await notifications.save_template_config(
            "interview.scheduled",
            "bad id!",
            "/pages/index",
            {"thing1": "reason", "colour2": "title"},
            None,
        )

    fields = caught.value.details["fields"]
    # The interview's reason is no value at all: it can never be mapped into WeChat text.
    assert "fields_map.thing1" in fields
    assert "fields_map.colour2" in fields
    assert "template_id" in fields
    assert "page" in fields


async def test_forty_character_title_into_thing_is_accepted_and_shortened() -> None:
    await make_region_tree()
    staff = await make_staff()

    config = await notifications.save_template_config(
        "registration.approved", "TPL-4", "pages/index/index", {"thing1": "title"}, staff
    )
    data = notifications.build_data(config.fields_map, {"title": "长" * 40})

    assert config.updated_by_id == staff.id  # type: ignore[attr-defined]
    assert len(data["thing1"]["value"]) == 20
    assert data["thing1"]["value"].endswith("…")
    assert await AuditLog.filter(
        action="template_config.saved", object_id="registration.approved"
    ).exists()


async def test_date_value_into_time_and_year_into_number_are_accepted() -> None:
    await notifications.save_template_config(
        "registration.returned", "TPL-5", "", {"time2": "deadline", "number3": "year"}, None
    )

    saved = await TemplateConfig.get(event="registration.returned")
    assert saved.fields_map == {"time2": "deadline", "number3": "year"}


async def test_default_templates_are_configured_once() -> None:
    assert await notifications.ensure_default_templates() == 3
    await notifications.save_template_config(
        "registration.approved", "MY-OWN", "", {"thing1": "title"}, None
    )

    assert await notifications.ensure_default_templates() == 0
    assert (await TemplateConfig.get(event="registration.approved")).template_id == "MY-OWN"


# -- enqueue -------------------------------------------------------------------------------------


async def test_approval_builds_the_complete_subscribe_payload(db_ready: Settings) -> None:
    await notifications.ensure_default_templates()
    veteran, account = await bound_veteran()

    message = await notifications.enqueue(
        "registration.approved", veteran, {"year": 2025}, object_type="registration", object_id=7
    )

    assert message is not None
    payload = message.payload
    assert payload["touser"] == account.openid
    assert payload["template_id"] == APPROVED_TID
    assert payload["page"] == "pages/registration/index"
    assert payload["miniprogram_state"] == db_ready.wechat_miniprogram_state
    assert payload["lang"] == "zh_CN"
    assert payload["data"]["thing1"] == {"value": "2025年度登记审核"}
    assert payload["data"]["phrase2"] == {"value": "已通过"}
    assert message.status == "pending"
    assert message.next_attempt_at <= datetime.now(UTC)
    inbox = await InboxMessage.get(veteran_id=veteran.id)
    assert inbox.title == "年度登记审核已通过"
    assert "2025" in inbox.body


async def test_returned_inbox_message_carries_the_deadline() -> None:
    await notifications.ensure_default_templates()
    veteran, _ = await bound_veteran()

    message = await notifications.enqueue(
        "registration.returned",
        veteran,
        {"year": 2025, "deadline": date(2026, 4, 15)},
        object_type="registration",
        object_id=8,
    )

    inbox = await InboxMessage.get(veteran_id=veteran.id)
    assert "2026年4月15日" in inbox.body
    assert message is not None
    assert message.payload["data"]["time2"] == {"value": "2026年4月15日"}


async def test_interview_notice_has_time_and_place_but_no_reason() -> None:
    await notifications.ensure_default_templates()
    veteran, _ = await bound_veteran()
    place = "小店区退役军人服务站二楼第三会议室（请从东门进入，出示通知）"

    message = await notifications.enqueue(
        "interview.scheduled",
        veteran,
        {"planned_at": INTERVIEW_AT, "location": place},
        object_type="interview",
        object_id=3,
    )

    inbox = await InboxMessage.get(veteran_id=veteran.id)
    assert "2027年1月5日 09:30" in inbox.body
    assert place in inbox.body
    assert message is not None
    data = message.payload["data"]
    assert data["time2"] == {"value": "2027年1月5日 09:30"}
    assert len(data["thing3"]["value"]) == 20  # the long place is shortened to fit thing
    assert data["phone_number4"] == {"value": notifications.DEFAULT_CONTACT_PHONE}


async def test_interview_reason_cannot_be_passed_as_a_value() -> None:
    veteran, _ = await bound_veteran()

    with pytest.raises(ValueError):
        await notifications.enqueue(
            "interview.scheduled",
            veteran,
            {"planned_at": INTERVIEW_AT, "location": "服务站", "reason": "出境未报告"},
            object_type="interview",
            object_id=3,
        )

    assert not await InboxMessage.exists()


async def test_unbound_veteran_gets_the_inbox_and_a_phone_task_but_no_outbox() -> None:
    await notifications.ensure_default_templates()
    veteran = await make_veteran()

    message = await notifications.enqueue(
        "registration.approved", veteran, {"year": 2025}, object_type="registration", object_id=1
    )

    assert message is None
    assert await InboxMessage.filter(veteran_id=veteran.id).count() == 1
    assert not await OutboxMessage.exists()
    task = await PhoneTask.get(veteran_id=veteran.id)
    assert task.county_code == veteran.county_code


async def test_event_without_template_goes_to_the_inbox_only() -> None:
    veteran, _ = await bound_veteran()

    message = await notifications.enqueue(
        "registration.approved", veteran, {"year": 2025}, object_type="registration", object_id=1
    )

    assert message is None
    assert await InboxMessage.filter(veteran_id=veteran.id).count() == 1
    assert not await OutboxMessage.exists()


async def test_enqueue_rolls_back_with_the_callers_transaction() -> None:
    await notifications.ensure_default_templates()
    veteran, _ = await bound_veteran()

    with pytest.raises(RuntimeError):
        async with in_transaction() as conn:
            await notifications.enqueue(
                "registration.approved",
                veteran,
                {"year": 2025},
                object_type="registration",
                object_id=1,
                using=conn,
            )
            raise RuntimeError("the approval failed after enqueue")

    assert not await InboxMessage.exists()
    assert not await OutboxMessage.exists()


# -- the ledger ----------------------------------------------------------------------------------


async def ledger_account(openid: str = "o-test-veteran") -> tuple[Veteran, WechatAccount]:
    """A bound veteran, with the demo templates configured so reports of them are accepted."""
    await notifications.ensure_default_templates()
    return await bound_veteran(openid)


async def remaining(account: WechatAccount, template_id: str = APPROVED_TID) -> int:
    row = await SubscriptionLedger.get_or_none(account_id=account.id, template_id=template_id)
    return row.remaining if row else 0


def popup(status: str = "accept", template_id: str = APPROVED_TID) -> list[dict[str, str]]:
    return [{"TemplateId": template_id, "SubscribeStatusString": status, "PopupScene": "0"}]


async def test_report_then_popup_of_one_tap_counts_once() -> None:
    _, account = await ledger_account()

    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})
    await notifications.on_popup(account.openid, popup())

    assert await remaining(account) == 1
    events = await SubscriptionEvent.filter(account_id=account.id).order_by("id")
    assert [(e.source, e.delta) for e in events] == [("report", 1), ("popup", 0)]


async def test_popup_then_report_of_one_tap_counts_once() -> None:
    _, account = await ledger_account()

    await notifications.on_popup(account.openid, popup())
    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})

    assert await remaining(account) == 1


async def test_report_and_popup_arriving_together_count_once() -> None:
    _, account = await ledger_account()

    await asyncio.gather(
        subscriptions.report_acceptance(account, {APPROVED_TID: "accept"}),
        notifications.on_popup(account.openid, popup()),
    )

    assert await remaining(account) == 1


async def test_two_taps_count_twice_whatever_the_order() -> None:
    _, account = await ledger_account()

    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})
    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})
    await notifications.on_popup(account.openid, popup())
    await notifications.on_popup(account.openid, popup())

    assert await remaining(account) == 2


async def test_popup_long_after_a_report_is_a_new_tap() -> None:
    _, account = await ledger_account()
    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})
    old = datetime.now(UTC) - subscriptions.PAIR_WINDOW - timedelta(minutes=1)
    await SubscriptionEvent.filter(account_id=account.id).update(created_at=old)

    await notifications.on_popup(account.openid, popup())

    assert await remaining(account) == 2


async def test_reject_adds_nothing_and_withdrawal_empties_the_ledger() -> None:
    _, account = await ledger_account()
    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})
    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})

    await notifications.on_popup(account.openid, popup("reject"))
    assert await remaining(account) == 2
    await notifications.on_change(account.openid, popup("reject"))

    assert await remaining(account) == 0
    withdrawal = await SubscriptionEvent.get(account_id=account.id, action="withdraw")
    assert withdrawal.delta == -2


async def test_a_send_spends_one_and_never_goes_below_zero() -> None:
    _, account = await ledger_account()
    await subscriptions.report_acceptance(account, {APPROVED_TID: "accept"})

    async with in_transaction() as conn:
        first = await subscriptions.spend(account.id, APPROVED_TID, conn)
        second = await subscriptions.spend(account.id, APPROVED_TID, conn)

    assert (first, second) == (True, False)
    assert await remaining(account) == 0


async def test_events_for_an_unknown_openid_change_nothing() -> None:
    await notifications.on_popup("o-nobody", popup())

    assert not await SubscriptionLedger.exists()


async def test_report_of_an_unconfigured_template_changes_nothing() -> None:
    _, account = await ledger_account()

    with pytest.raises(ValidationFailed) as caught:
        await subscriptions.report_acceptance(account, {"NOBODY-USES-THIS": "accept"})

    assert caught.value.details["fields"] == {
        "results.NOBODY-USES-THIS": "没有使用该模板ID的消息通知"
    }
    assert not await SubscriptionLedger.exists()
