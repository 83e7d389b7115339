"""Notification pages over real HTTP: message states and attempts, templates, phone tasks."""

from __future__ import annotations

import datetime as dt

import httpx

from backend.models import (
    AuditLog,
    OutboxAttempt,
    OutboxMessage,
    PhoneTask,
    TemplateConfig,
    Veteran,
    WechatAccount,
)
from backend.services import notifications
from tests.factories import (
    OTHER_COUNTY,
    PORTAL_PASSWORD,
    PROVINCE,
    make_region_tree,
    make_staff,
    make_veteran,
    portal_login,
)

NOW = dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)


async def _login(client: httpx.AsyncClient, region: str = "140105") -> str:
    await make_region_tree()
    await make_staff(region, username="clerk1", password=PORTAL_PASSWORD)
    return await portal_login(client, "clerk1")


async def _approved(county: str = "140105", bound: bool = True) -> int:
    """A veteran notified of an approval; the outbox message id (or phone task's veteran)."""
    await notifications.ensure_default_templates()
    veteran = await make_veteran(county_code=county, name="张<b>三</b>")
    if bound:
        await WechatAccount.create(openid=f"o-{veteran.id}", veteran=veteran, bound_at=NOW)
    message = await notifications.enqueue(
        "registration.approved", veteran, {"year": 2025}, object_type="registration", object_id=1
    )
    return message.id if message else veteran.id


async def test_message_list_shows_state_escaped_and_in_scope(client: httpx.AsyncClient) -> None:
    await _login(client)
    mine = await _approved()
    theirs = await _approved(OTHER_COUNTY)

    response = await client.get("/portal/notifications?status=pending")

    assert response.status_code == 200
    assert f"/portal/notifications/messages/{mine}" in response.text
    assert f"/portal/notifications/messages/{theirs}" not in response.text
    assert "待发送" in response.text
    assert "张&lt;b&gt;三&lt;/b&gt;" in response.text


async def test_message_detail_shows_attempts_and_other_county_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    mine = await _approved()
    theirs = await _approved(OTHER_COUNTY)
    await OutboxAttempt.create(message_id=mine, worker="w1", outcome="retry", errcode=-1)

    page = await client.get(f"/portal/notifications/messages/{mine}")
    hidden = await client.get(f"/portal/notifications/messages/{theirs}")

    assert page.status_code == 200
    assert "微信繁忙，稍后重试" in page.text
    assert "2025年度登记审核" in page.text
    assert hidden.status_code == 404


async def test_bad_filter_is_refused(client: httpx.AsyncClient) -> None:
    await _login(client)

    response = await client.get("/portal/notifications?status=nonsense")

    assert response.status_code == 422


async def test_phone_task_is_done_with_a_note_and_audited(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    veteran_id = await _approved(bound=False)
    task = await PhoneTask.get(veteran_id=veteran_id)

    listing = await client.get("/portal/notifications/phone-tasks")
    done = await client.post(
        f"/portal/notifications/phone-tasks/{task.id}/done",
        data={"note": "已电话告知本人 😀", "csrf_token": csrf},
    )

    assert listing.status_code == 200
    assert "未绑定微信" in listing.text
    assert done.status_code == 303
    task = await PhoneTask.get(id=task.id)
    assert (task.status, task.note) == ("done", "已电话告知本人 😀")
    assert await AuditLog.filter(action="phone_task.done", object_id=str(task.id)).exists()


async def test_other_countys_phone_task_cannot_be_closed(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    veteran_id = await _approved(OTHER_COUNTY, bound=False)
    task = await PhoneTask.get(veteran_id=veteran_id)

    response = await client.post(
        f"/portal/notifications/phone-tasks/{task.id}/done",
        data={"note": "x", "csrf_token": csrf},
    )

    assert response.status_code == 404
    assert (await PhoneTask.get(id=task.id)).status == "open"


async def test_phone_task_without_csrf_is_refused(client: httpx.AsyncClient) -> None:
    await _login(client)
    veteran_id = await _approved(bound=False)
    task = await PhoneTask.get(veteran_id=veteran_id)

    response = await client.post(
        f"/portal/notifications/phone-tasks/{task.id}/done", data={"note": "x"}
    )

    assert response.status_code == 403
    assert (await PhoneTask.get(id=task.id)).status == "open"


async def test_template_form_flashes_why_a_mapping_cannot_fit(client: httpx.AsyncClient) -> None:
    csrf = await _login(client, PROVINCE)
    form = "/portal/notifications/templates"

    response = await client.post(
        f"{form}/registration.returned",
        data={
            "template_id": "TPL-1",
            "page": "",
            "fields_map": "thing1 = title\nphrase2 = deadline",
            "csrf_token": csrf,
        },
        headers={"referer": str(client.base_url) + form},
    )
    page = await client.get(form)

    assert response.status_code == 303
    assert "phrase2" in page.text
    assert "截止日期" in page.text
    assert not await TemplateConfig.exists(event="registration.returned")


async def test_template_form_saves_a_sound_mapping(client: httpx.AsyncClient) -> None:
    csrf = await _login(client, PROVINCE)

    response = await client.post(
        "/portal/notifications/templates/registration.returned",
        data={
            "template_id": "TPL-2",
            "page": "pages/registration/index",
            "fields_map": "thing1 = title\ntime2 = deadline",
            "csrf_token": csrf,
        },
    )

    assert response.status_code == 303
    saved = await TemplateConfig.get(event="registration.returned")
    assert saved.fields_map == {"thing1": "title", "time2": "deadline"}


async def test_county_staff_cannot_change_templates(client: httpx.AsyncClient) -> None:
    await _login(client)

    response = await client.get("/portal/notifications/templates")

    assert response.status_code == 403


async def _failed_task(county: str = "140105") -> PhoneTask:
    """A bound veteran whose approval message could not be delivered: the county must phone."""
    message_id = await _approved(county)
    message = await OutboxMessage.get(id=message_id)
    return await notifications.open_phone_task(message.veteran_id, message_id, "微信消息发送失败")


async def test_phone_task_list_names_the_event_and_masks_the_phone(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    task = await _failed_task()
    veteran = await Veteran.get(id=task.veteran_id)

    listing = await client.get("/portal/notifications/phone-tasks")

    assert listing.status_code == 200
    assert "年度登记审核通过" in listing.text
    assert veteran.phone_masked in listing.text
    assert "显示完整号码" in listing.text
    assert f"/portal/notifications/phone-tasks/{task.id}/phone" in listing.text


async def test_full_phone_is_shown_once_uncached_and_audited(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    veteran = await make_veteran(phone="13912345678")
    task = await notifications.open_phone_task(veteran, None, "未绑定微信，请电话告知：约谈通知")

    listing = await client.get("/portal/notifications/phone-tasks")
    shown = await client.post(
        f"/portal/notifications/phone-tasks/{task.id}/phone", data={"csrf_token": csrf}
    )

    assert "13912345678" not in listing.text
    assert shown.status_code == 200
    assert "13912345678" in shown.text
    assert shown.headers["cache-control"] == "no-store"
    row = await AuditLog.get(action="veteran.phone_viewed", object_id=str(veteran.id))
    assert row.detail == {"phone_task_id": task.id}
    assert "13912345678" not in str(row.detail)


async def test_full_phone_needs_csrf_and_scope(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    mine = await _failed_task()
    theirs = await _failed_task(OTHER_COUNTY)

    no_token = await client.post(f"/portal/notifications/phone-tasks/{mine.id}/phone")
    other = await client.post(
        f"/portal/notifications/phone-tasks/{theirs.id}/phone", data={"csrf_token": csrf}
    )

    assert no_token.status_code == 403
    assert other.status_code == 404
    assert not await AuditLog.filter(action="veteran.phone_viewed").exists()


async def test_message_detail_labels_keys_and_explains_outcomes_in_chinese(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    mine = await _approved()
    await OutboxAttempt.create(
        message_id=mine, worker="w1", outcome="retry", errcode=-1, errmsg="system error"
    )
    await OutboxAttempt.create(
        message_id=mine, worker="w1", outcome="unknown", errmsg="no answer: RemoteProtocolError"
    )
    await OutboxAttempt.create(
        message_id=mine, worker="w1", outcome="accepted", errcode=0, errmsg="ok"
    )

    page = await client.get(f"/portal/notifications/messages/{mine}")

    assert page.status_code == 200
    for label in ("事项", "结果", "通知时间", "说明"):
        assert f"<td>{label} <span" in page.text
    assert "微信系统繁忙" in page.text and "错误码 -1" in page.text
    assert "未收到微信应答" in page.text
    assert "错误码 0" in page.text
    attempts = page.text.split('id="attempts"')[1]
    for english in (">system error", ">ok<", ">no answer"):
        assert english not in attempts


async def test_message_detail_after_the_template_changed_shows_the_bare_keys(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    mine = await _approved()
    await TemplateConfig.filter(event="registration.approved").update(template_id="NEW-ONE")

    page = await client.get(f"/portal/notifications/messages/{mine}")

    assert "<td>thing1</td>" in page.text
