"""Notification pages over real HTTP: message states and attempts, templates, phone tasks."""

from __future__ import annotations

import datetime as dt

import httpx

from backend.models import AuditLog, OutboxAttempt, PhoneTask, TemplateConfig, WechatAccount
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
