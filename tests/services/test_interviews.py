"""Interviews (约谈, rule 6.3): planned, held, closed or cancelled; notes for leads only."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backend.errors import AppError, Conflict, InvalidTransition, NotFound, ValidationFailed
from backend.models import (
    AuditLog,
    InboxMessage,
    Interview,
    OutboxMessage,
    PhoneTask,
    TemplateConfig,
    TransitionLog,
    WechatAccount,
)
from backend.services import interviews
from backend.settings import Settings
from tests.factories import CITY, COUNTY, OTHER_COUNTY, make_region_tree, make_staff, make_veteran

NOW = datetime(2026, 2, 10, 2, 0, tzinfo=UTC)
PLANNED = datetime(2026, 2, 12, 9, 30, tzinfo=UTC)
REASON = "登记中出境记录与边检记录不符，存在违规出境嫌疑"


@pytest.fixture
async def world(db_ready: Settings) -> dict[str, Any]:
    await make_region_tree()
    return {
        "clerk": await make_staff(COUNTY),
        "clerk2": await make_staff(COUNTY),
        "lead": await make_staff(COUNTY, role="lead"),
        "city_lead": await make_staff(CITY, role="lead"),
        "city_clerk": await make_staff(CITY),
        "other_lead": await make_staff(OTHER_COUNTY, role="lead"),
        "veteran": await make_veteran(),
    }


async def opened(world: dict[str, Any], **extra: Any) -> Interview:
    """An interview opened at NOW (its created_at too, as the held time is checked against it)."""
    interview = await interviews.open_interview(
        world["clerk"],
        world["veteran"].id,
        REASON,
        PLANNED,
        "小店区退役军人服务站 2 楼",
        now=NOW,
        **extra,
    )
    await Interview.filter(id=interview.id).update(created_at=NOW)
    return await Interview.get(id=interview.id)


async def test_opening_an_interview_plans_it_and_tells_the_veteran_when_and_where_only(
    world: dict[str, Any],
) -> None:
    veteran = world["veteran"]
    await WechatAccount.create(openid="o-interview", veteran=veteran, bound_at=NOW)
    await TemplateConfig.create(
        event="interview.scheduled",
        template_id="tpl-interview",
        fields_map={"time1": "planned_at", "thing2": "location", "thing3": "remark"},
    )
    interview = await opened(world)
    assert interview.status == "planned" and interview.county_code == COUNTY
    inbox = await InboxMessage.get(veteran_id=veteran.id)
    assert inbox.event == "interview.scheduled"
    assert "边检" not in inbox.body and "违规" not in inbox.body
    outbox = await OutboxMessage.get(veteran_id=veteran.id)
    assert "边检" not in str(outbox.payload) and "违规" not in str(outbox.payload)
    audit = await AuditLog.get(action="interview.opened")
    assert audit.object_id == str(interview.id) and "边检" not in str(audit.detail)


async def test_interview_goes_from_planned_to_held_to_closed_with_each_step_recorded(
    world: dict[str, Any],
) -> None:
    interview = await opened(world)
    held = await interviews.record_held(
        world["clerk"],
        interview.id,
        interview.lock_version,
        PLANNED,
        "张三、李四",
        "本人说明系旅游团，已补充材料",
        now=PLANNED + timedelta(hours=1),
    )
    assert held.status == "held" and held.held_at == PLANNED
    closed = await interviews.close_interview(
        world["clerk"], interview.id, held.lock_version, "已核实，无违规，予以提醒"
    )
    assert closed.status == "closed"
    row = await Interview.get(id=interview.id)
    assert (row.status, row.outcome) == ("closed", "已核实，无违规，予以提醒")
    steps = await TransitionLog.filter(workflow="interview", object_id=interview.id).order_by("id")
    assert [(s.from_state, s.to_state) for s in steps] == [("planned", "held"), ("held", "closed")]
    assert all(s.actor_id == world["clerk"].id for s in steps)
    assert await AuditLog.filter(action="interview.closed").exists()


async def test_planned_interview_can_be_cancelled_but_not_closed(world: dict[str, Any]) -> None:
    interview = await opened(world)
    with pytest.raises(InvalidTransition):
        await interviews.close_interview(world["clerk"], interview.id, interview.lock_version, "x")
    cancelled = await interviews.cancel_interview(
        world["clerk"], interview.id, interview.lock_version, "本人住院，改期另约"
    )
    assert cancelled.status == "cancelled"
    with pytest.raises(InvalidTransition):
        await interviews.record_held(
            world["clerk"],
            interview.id,
            cancelled.lock_version,
            PLANNED,
            "张三",
            "记录",
            now=PLANNED,
        )


async def test_interview_needs_a_reason_a_place_and_a_future_time_with_zone(
    world: dict[str, Any],
) -> None:
    veteran_id = world["veteran"].id
    with pytest.raises(ValidationFailed) as caught:
        await interviews.open_interview(
            world["clerk"], veteran_id, " ", datetime(2026, 2, 12, 9, 30), "", now=NOW
        )
    assert set(caught.value.details["fields"]) == {"reason", "location", "planned_at"}
    with pytest.raises(ValidationFailed) as caught:
        await interviews.open_interview(
            world["clerk"], veteran_id, REASON, NOW - timedelta(hours=1), "服务站", now=NOW
        )
    assert "planned_at" in caught.value.details["fields"]
    assert not await Interview.exists()
    assert not await InboxMessage.exists()


async def test_interview_of_another_region_is_not_found(world: dict[str, Any]) -> None:
    with pytest.raises(NotFound):
        await interviews.open_interview(
            world["other_lead"], world["veteran"].id, REASON, PLANNED, "服务站", now=NOW
        )
    interview = await opened(world)
    with pytest.raises(NotFound):
        await interviews.get_interview(world["other_lead"], interview.id)
    with pytest.raises(NotFound):
        await interviews.cancel_interview(
            world["other_lead"], interview.id, interview.lock_version, "越权"
        )


async def test_notes_are_visible_only_to_the_countys_lead_and_above(world: dict[str, Any]) -> None:
    interview = await opened(world)
    await interviews.record_held(
        world["clerk"], interview.id, 0, PLANNED, "张三", "谈话内容：涉及家庭隐私", now=PLANNED
    )
    row = await interviews.get_interview(world["clerk"], interview.id)
    for reader in ("lead", "city_lead"):
        assert interviews.can_read_notes(world[reader], row)
        assert (
            interviews.serialize_interview(world[reader], row)["notes"] == "谈话内容：涉及家庭隐私"
        )
    for reader in ("clerk", "city_clerk", "other_lead"):
        assert not interviews.can_read_notes(world[reader], row)
        shown = interviews.serialize_interview(world[reader], row)
        assert shown["notes"] is None and shown["notes_hidden"]


async def test_two_clerks_acting_on_one_interview_at_once_get_one_outcome(
    world: dict[str, Any],
) -> None:
    interview = await opened(world)
    results = await asyncio.gather(
        interviews.cancel_interview(world["clerk"], interview.id, 0, "改期"),
        interviews.record_held(
            world["clerk2"], interview.id, 0, PLANNED, "李四", "已谈话", now=PLANNED
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, Interview)]
    losses = [r for r in results if isinstance(r, AppError)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert isinstance(losses[0], Conflict)
    assert (await Interview.get(id=interview.id)).status == wins[0].status


async def test_list_interviews_in_scope_newest_first(world: dict[str, Any]) -> None:
    first = await opened(world)
    second = await opened(world)
    page = await interviews.list_interviews("1401", limit=1)
    assert [i.id for i in page.items] == [second.id]
    rest = await interviews.list_interviews("1401", before_id=page.next_before_id)
    assert [i.id for i in rest.items] == [first.id] and rest.next_before_id is None
    assert (await interviews.list_interviews("1402")).items == []


async def test_cancelling_tells_a_bound_veteran_in_the_inbox_and_phone_task_never_why(
    world: dict[str, Any],
) -> None:
    veteran = world["veteran"]
    await WechatAccount.create(openid="o-cancel", veteran=veteran, bound_at=NOW)
    interview = await opened(world)

    await interviews.cancel_interview(
        world["clerk"], interview.id, interview.lock_version, "本人住院，改期另约"
    )

    inbox = await InboxMessage.get(veteran_id=veteran.id, event="interview.cancelled")
    assert inbox.body == "原定于2026年2月12日 17:30的约谈已取消，如有疑问请联系服务站。"
    assert inbox.object_type == "interview" and inbox.object_id == interview.id
    # No template is configured for cancellations by default: the county phones the veteran.
    task = await PhoneTask.get(veteran_id=veteran.id)
    assert task.reason.endswith("约谈已取消") and task.message_id is None
    for text in (inbox.title, inbox.body, task.reason):
        assert "住院" not in text and "边检" not in text


async def test_cancelling_sends_wechat_when_a_template_is_configured(
    world: dict[str, Any],
) -> None:
    veteran = world["veteran"]
    await WechatAccount.create(openid="o-cancel-2", veteran=veteran, bound_at=NOW)
    await TemplateConfig.create(
        event="interview.cancelled",
        template_id="tpl-cancel",
        fields_map={"thing1": "title", "time2": "planned_at", "phone_number3": "contact_phone"},
    )
    interview = await opened(world, contact_phone="0351-1234567")

    await interviews.cancel_interview(
        world["clerk"], interview.id, interview.lock_version, "本人住院，改期另约"
    )

    message = await OutboxMessage.get(veteran_id=veteran.id, event="interview.cancelled")
    assert message.payload["data"] == {
        "thing1": {"value": "约谈取消"},
        "time2": {"value": "2026年2月12日 17:30"},
        "phone_number3": {"value": "0351-1234567"},
    }
    assert "住院" not in str(message.payload) and "边检" not in str(message.payload)
    assert not await PhoneTask.exists()


async def test_a_failed_cancellation_tells_the_veteran_nothing(world: dict[str, Any]) -> None:
    interview = await opened(world)

    with pytest.raises(Conflict):
        await interviews.cancel_interview(
            world["clerk"], interview.id, interview.lock_version + 1, "改期"
        )

    assert not await InboxMessage.filter(event="interview.cancelled").exists()


async def test_contact_phone_is_stored_and_sent_to_wechat(world: dict[str, Any]) -> None:
    veteran = world["veteran"]
    await WechatAccount.create(openid="o-phone", veteran=veteran, bound_at=NOW)
    await TemplateConfig.create(
        event="interview.scheduled",
        template_id="tpl-interview",
        fields_map={"time1": "planned_at", "phone_number2": "contact_phone"},
    )

    interview = await opened(world, contact_phone=" 0351-1234567 ")

    assert interview.contact_phone == "0351-1234567"
    outbox = await OutboxMessage.get(veteran_id=veteran.id)
    assert outbox.payload["data"]["phone_number2"] == {"value": "0351-1234567"}


@pytest.mark.parametrize("phone", ["13912345678", "0351-1234567", "03511234567", "2345678"])
async def test_mobile_and_landline_contact_phones_are_accepted(phone: str) -> None:
    assert interviews.contact_phone_problem(phone) is None


@pytest.mark.parametrize("phone", ["12345", "0351-12", "139123456789", "电话", "+86 0351-1234567"])
async def test_nonsense_contact_phone_is_refused(world: dict[str, Any], phone: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await opened(world, contact_phone=phone)

    assert "contact_phone" in caught.value.details["fields"]
    assert not await Interview.exists()


async def test_held_time_before_the_interview_was_opened_is_refused(
    world: dict[str, Any],
) -> None:
    interview = await opened(world)

    with pytest.raises(ValidationFailed) as caught:
        await interviews.record_held(
            world["clerk"],
            interview.id,
            interview.lock_version,
            NOW - timedelta(days=1),
            "张三",
            "记录",
            now=PLANNED,
        )

    assert caught.value.details["fields"]["held_at"] == "约谈时间不能早于发起约谈的时间"
    assert (await Interview.get(id=interview.id)).status == "planned"


async def test_held_the_minute_it_was_opened_is_accepted(world: dict[str, Any]) -> None:
    interview = await opened(world)
    await Interview.filter(id=interview.id).update(created_at=NOW + timedelta(seconds=40))

    held = await interviews.record_held(
        world["clerk"], interview.id, interview.lock_version, NOW, "张三", "记录", now=PLANNED
    )

    assert held.status == "held"


async def test_held_time_in_the_future_is_still_refused(world: dict[str, Any]) -> None:
    interview = await opened(world)

    with pytest.raises(ValidationFailed) as caught:
        await interviews.record_held(
            world["clerk"],
            interview.id,
            interview.lock_version,
            PLANNED + timedelta(hours=1),
            "张三",
            "记录",
            now=PLANNED,
        )

    assert caught.value.details["fields"]["held_at"] == "约谈时间不能晚于现在"
