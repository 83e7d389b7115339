"""Interview pages over real HTTP: open, hold, close, cancel, scope, conflicts, notes visibility."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import httpx

from backend.models import InboxMessage, Interview, StaffUser
from backend.services import interviews
from tests.factories import (
    CITY,
    COUNTY,
    OTHER_COUNTY,
    PORTAL_PASSWORD,
    make_region_tree,
    make_staff,
    make_submitted_registration,
    make_veteran,
    portal_login,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOTES = "本人表示将按时报告出境情况 <img src=x onerror=alert(1)> 🙂"
REASON = "出境未报告 <script>alert(1)</script>"


def _local(delta: dt.timedelta) -> str:
    return (dt.datetime.now(SHANGHAI) + delta).strftime("%Y-%m-%dT%H:%M")


def _lock_version(page: str) -> str:
    found = re.search(r'name="lock_version" value="(\d+)"', page)
    assert found is not None, "the page offers no action form"
    return found.group(1)


async def _login(
    client: httpx.AsyncClient, username: str = "clerk1", region: str = COUNTY, role: str = "clerk"
) -> str:
    await make_region_tree()
    await make_staff(region, username=username, password=PORTAL_PASSWORD, role=role)
    return await portal_login(client, username)


async def _planned(county: str = COUNTY) -> Interview:
    await make_region_tree()
    opener = await make_staff(county)
    veteran = await make_veteran(county_code=county)
    interview = await interviews.open_interview(
        opener,
        veteran.id,
        REASON,
        dt.datetime.now(dt.UTC) + dt.timedelta(days=2),
        "小店区退役军人服务站",
    )
    # Opened yesterday, so a held time in the last hours is after the opening.
    opened_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    await Interview.filter(id=interview.id).update(created_at=opened_at)
    return await Interview.get(id=interview.id)


async def _held(county: str = COUNTY) -> Interview:
    interview = await _planned(county)
    staff = await StaffUser.get(id=interview.created_by_id).prefetch_related("region")  # type: ignore[attr-defined]
    return await interviews.record_held(
        staff,
        interview.id,
        interview.lock_version,
        dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
        "王主任、李干事",
        NOTES,
    )


async def test_open_interview_from_a_registration_tells_the_veteran_time_and_place(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    reg = await make_submitted_registration(await make_veteran())
    form_page = await client.get("/portal/interviews/new", params={"registration_id": reg.id})

    response = await client.post(
        "/portal/interviews",
        data={
            "csrf_token": csrf,
            "veteran_id": str(reg.veteran_id),
            "registration_id": str(reg.id),
            "reason": REASON,
            "planned_at": _local(dt.timedelta(days=3)),
            "location": "服务站二楼",
            "contact_phone": "0351-1234567",
        },
    )
    detail = await client.get(response.headers["location"])

    assert form_page.status_code == 200
    assert response.status_code == 303
    interview = await Interview.get(veteran_id=reg.veteran_id)
    assert (interview.status, interview.registration_id, interview.reason) == (
        "planned",
        reg.id,
        REASON,
    )
    assert interview.contact_phone == "0351-1234567"
    assert 'name="contact_phone"' in form_page.text
    assert "已安排" in detail.text
    assert REASON not in detail.text
    assert "&lt;script&gt;" in detail.text
    inbox = await InboxMessage.filter(veteran_id=reg.veteran_id)
    assert len(inbox) == 1
    assert "服务站二楼" in inbox[0].body
    assert "出境未报告" not in inbox[0].title + inbox[0].body


async def test_open_interview_in_the_past_shows_the_form_again_and_saves_nothing(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    veteran = await make_veteran()

    response = await client.post(
        "/portal/interviews",
        data={
            "csrf_token": csrf,
            "veteran_id": str(veteran.id),
            "reason": "理由🙂",
            "planned_at": _local(-dt.timedelta(days=1)),
            "location": "服务站",
            "contact_phone": "13912345678",
        },
    )

    assert response.status_code == 422
    assert "约谈时间不能早于现在" in response.text
    assert "理由🙂" in response.text
    assert await Interview.all().count() == 0


async def test_open_interview_for_another_countys_veteran_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    other = await make_veteran(county_code=OTHER_COUNTY)

    page = await client.get("/portal/interviews/new", params={"veteran_id": other.id})
    response = await client.post(
        "/portal/interviews",
        data={
            "csrf_token": csrf,
            "veteran_id": str(other.id),
            "reason": "外县",
            "planned_at": _local(dt.timedelta(days=1)),
            "location": "外县",
        },
    )

    assert page.status_code == 404
    assert response.status_code == 404
    assert await Interview.all().count() == 0


async def test_another_countys_interview_by_url_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    other = await _planned(OTHER_COUNTY)

    response = await client.get(f"/portal/interviews/{other.id}")
    listing = await client.get("/portal/interviews")

    assert response.status_code == 404
    assert f"/portal/interviews/{other.id}" not in listing.text


async def test_record_held_then_close_with_outcome(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    interview = await _planned()
    page = await client.get(f"/portal/interviews/{interview.id}")

    held = await client.post(
        f"/portal/interviews/{interview.id}/held",
        data={
            "csrf_token": csrf,
            "lock_version": _lock_version(page.text),
            "held_at": _local(-dt.timedelta(hours=1)),
            "staff_present": "王主任",
            "notes": NOTES,
        },
    )
    page = await client.get(f"/portal/interviews/{interview.id}")
    closed = await client.post(
        f"/portal/interviews/{interview.id}/close",
        data={
            "csrf_token": csrf,
            "lock_version": _lock_version(page.text),
            "outcome": "已说明情况，无需进一步处理",
        },
    )
    final = await client.get(f"/portal/interviews/{interview.id}")

    assert held.status_code == 303 and closed.status_code == 303
    saved = await Interview.get(id=interview.id)
    assert (saved.status, saved.notes, saved.staff_present) == ("closed", NOTES, "王主任")
    assert saved.outcome == "已说明情况，无需进一步处理"
    assert "已结束" in final.text
    assert "已说明情况" in final.text


async def test_cancel_a_planned_interview(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    interview = await _planned()

    response = await client.post(
        f"/portal/interviews/{interview.id}/cancel",
        data={
            "csrf_token": csrf,
            "lock_version": str(interview.lock_version),
            "cancel_reason": "本人已到站说明",
        },
    )

    assert response.status_code == 303
    assert (await Interview.get(id=interview.id)).status == "cancelled"


async def test_acting_on_a_stale_page_shows_the_conflict_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    interview = await _planned()
    seen = str(interview.lock_version)
    colleague = await make_staff(COUNTY)
    await interviews.cancel_interview(colleague, interview.id, interview.lock_version, "改期")

    response = await client.post(
        f"/portal/interviews/{interview.id}/held",
        data={
            "csrf_token": csrf,
            "lock_version": seen,
            "held_at": _local(-dt.timedelta(hours=1)),
            "staff_present": "王主任",
            "notes": "记录",
        },
    )
    after = await client.get(response.headers["location"])

    assert response.status_code == 303
    assert "该约谈已被其他工作人员处理" in after.text
    assert "已取消" in after.text
    assert (await Interview.get(id=interview.id)).notes == ""


async def test_action_without_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await _login(client)
    interview = await _planned()

    response = await client.post(
        f"/portal/interviews/{interview.id}/cancel",
        data={"lock_version": str(interview.lock_version), "cancel_reason": "x"},
    )

    assert response.status_code == 403
    assert (await Interview.get(id=interview.id)).status == "planned"


async def test_clerk_sees_that_notes_exist_but_not_what_they_say(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    interview = await _held()

    response = await client.get(f"/portal/interviews/{interview.id}")

    assert response.status_code == 200
    assert "（仅负责人可见）" in response.text
    assert "按时报告出境情况" not in response.text


async def test_county_lead_reads_the_notes_escaped(client: httpx.AsyncClient) -> None:
    await _login(client, username="lead1", role="lead")
    interview = await _held()

    response = await client.get(f"/portal/interviews/{interview.id}")

    assert "按时报告出境情况" in response.text
    assert "🙂" in response.text
    assert "<img src=x" not in response.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in response.text


async def test_city_lead_reads_the_notes_but_a_city_clerk_does_not(
    client: httpx.AsyncClient,
) -> None:
    await _login(client, username="citylead", region=CITY, role="lead")
    await make_staff(CITY, username="cityclerk", password=PORTAL_PASSWORD)
    interview = await _held()

    as_lead = await client.get(f"/portal/interviews/{interview.id}")
    client.cookies.clear()
    await portal_login(client, "cityclerk")
    as_clerk = await client.get(f"/portal/interviews/{interview.id}")

    assert "按时报告出境情况" in as_lead.text
    assert "按时报告出境情况" not in as_clerk.text
    assert "（仅负责人可见）" in as_clerk.text


async def test_open_interview_without_a_contact_phone_shows_the_form_again(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    veteran = await make_veteran()
    form = {
        "csrf_token": csrf,
        "veteran_id": str(veteran.id),
        "reason": "理由",
        "planned_at": _local(dt.timedelta(days=1)),
        "location": "服务站",
    }

    missing = await client.post("/portal/interviews", data=form)
    wrong = await client.post("/portal/interviews", data={**form, "contact_phone": "12345"})
    too_long = await client.post("/portal/interviews", data={**form, "contact_phone": "1" * 18})

    assert missing.status_code == 422 and "请填写联系电话" in missing.text
    assert wrong.status_code == 422 and "应为手机号或固定电话" in wrong.text
    assert 'value="12345"' in wrong.text
    assert too_long.status_code == 422
    assert await Interview.all().count() == 0


async def test_held_time_before_the_interview_was_opened_shows_a_field_error(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    interview = await _planned()

    response = await client.post(
        f"/portal/interviews/{interview.id}/held",
        data={
            "csrf_token": csrf,
            "lock_version": str(interview.lock_version),
            "held_at": _local(-dt.timedelta(days=2)),
            "staff_present": "王主任",
            "notes": "记录",
        },
    )

    assert response.status_code == 422
    assert "约谈时间不能早于发起约谈的时间" in response.text
    assert (await Interview.get(id=interview.id)).status == "planned"


async def test_cancelling_tells_the_veteran_without_the_reason(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    interview = await _planned()

    await client.post(
        f"/portal/interviews/{interview.id}/cancel",
        data={
            "csrf_token": csrf,
            "lock_version": str(interview.lock_version),
            "cancel_reason": "本人已到站说明",
        },
    )

    inbox = await InboxMessage.get(veteran_id=interview.veteran_id, event="interview.cancelled")  # type: ignore[attr-defined]
    assert inbox.body.startswith("原定于") and "已到站" not in inbox.body
