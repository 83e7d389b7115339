"""Registration review pages over real HTTP: list, review, conflicts, on-site entry, windows."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx

from backend import context
from backend.models import (
    AnnualRegistration,
    AuditLog,
    BenefitConfirmation,
    LateFilingPermit,
    RegistrationVersion,
    RegistrationWindow,
    ReviewComment,
    Veteran,
)
from backend.routes.portal_registrations import default_late_deadline
from backend.services import registrations
from tests.factories import (
    OTHER_COUNTY,
    PORTAL_PASSWORD,
    PROVINCE,
    REPORT_YEAR,
    make_region_tree,
    make_staff,
    make_submitted_registration,
    make_veteran,
    portal_login,
    registration_content,
)

SCRIPT = "<script>alert('x')</script>"
EMOJI = "探亲🎖️“引号”"


async def _login(
    client: httpx.AsyncClient, username: str = "clerk1", region: str = "140105", role: str = "clerk"
) -> str:
    await make_region_tree()
    await make_staff(region, username=username, password=PORTAL_PASSWORD, role=role)
    return await portal_login(client, username)


def _lock_version(page: str) -> str:
    found = re.search(r'name="lock_version" value="(\d+)"', page)
    assert found is not None, "the page offers no decision form"
    return found.group(1)


async def _open_window_today() -> None:
    # On-site entry is gated by the window like an online first submission.
    today = registrations.shanghai_today()
    await RegistrationWindow.create(
        report_year=REPORT_YEAR,
        opens_on=today - dt.timedelta(days=30),
        closes_on=today + dt.timedelta(days=30),
    )


# -- list ------------------------------------------------------------------------------------


async def test_list_shows_registrations_of_own_county_only(client: httpx.AsyncClient) -> None:
    await _login(client)
    mine = await make_submitted_registration(await make_veteran(name="本县人员"))
    await make_submitted_registration(await make_veteran(name="外县人员", county_code=OTHER_COUNTY))

    response = await client.get("/portal/registrations", params={"year": REPORT_YEAR})

    assert response.status_code == 200
    assert "本县人员" in response.text
    assert "外县人员" not in response.text
    assert f'href="/portal/registrations/{mine.id}"' in response.text


async def test_list_filters_by_status(client: httpx.AsyncClient) -> None:
    await _login(client)
    await make_submitted_registration(await make_veteran(name="待审人员"))
    await registrations.save_draft(
        await make_veteran(name="草稿人员"), REPORT_YEAR, {}, today=dt.date(2026, 2, 1)
    )

    response = await client.get(
        "/portal/registrations", params={"year": REPORT_YEAR, "status": "draft"}
    )

    assert "草稿人员" in response.text
    assert "待审人员" not in response.text


async def test_next_page_link_carries_after_id_and_shows_the_rest(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    for n in range(3):
        await make_submitted_registration(await make_veteran(name=f"翻页{n}号"))

    first = await client.get("/portal/registrations", params={"year": REPORT_YEAR, "limit": 2})
    link = re.search(r'href="/portal/registrations\?([^"]+)" rel="next"', first.text)
    assert link is not None
    second = await client.get("/portal/registrations?" + link.group(1).replace("&amp;", "&"))

    assert "after_id=" in link.group(1)
    assert first.text.count("翻页") == 2
    assert second.text.count("翻页") == 1
    assert 'rel="next"' not in second.text


async def test_filter_by_another_county_answers_not_found(client: httpx.AsyncClient) -> None:
    await _login(client)

    response = await client.get(
        "/portal/registrations", params={"year": REPORT_YEAR, "county": OTHER_COUNTY}
    )

    assert response.status_code == 404


async def test_list_needs_a_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/portal/registrations")

    assert response.status_code == 303
    assert response.headers["location"].startswith("/portal/login")


# -- one registration ------------------------------------------------------------------------


async def test_detail_shows_free_text_escaped_and_verbatim(client: httpx.AsyncClient) -> None:
    await _login(client)
    trip = {**registration_content()["trips"][0], "purpose": EMOJI, "destination": "香港" + SCRIPT}
    reg = await make_submitted_registration(
        await make_veteran(), content=registration_content(trips=[trip], remarks=SCRIPT)
    )

    response = await client.get(f"/portal/registrations/{reg.id}")

    assert response.status_code == 200
    assert SCRIPT not in response.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in response.text
    assert EMOJI in response.text
    assert "出入境情况" in response.text


async def test_another_countys_registration_by_url_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    other = await make_submitted_registration(await make_veteran(county_code=OTHER_COUNTY))

    response = await client.get(f"/portal/registrations/{other.id}")

    assert response.status_code == 404
    assert "没有找到相关记录" in response.text


async def test_detail_shows_what_changed_since_the_previous_year(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    veteran = await make_veteran()
    await make_submitted_registration(veteran, REPORT_YEAR - 1, {"trips": []})
    reg = await make_submitted_registration(veteran)

    response = await client.get(f"/portal/registrations/{reg.id}")

    diff = response.text.split('id="diff"', 1)[1].split("</section>", 1)[0]
    assert "出入境情况" in diff
    assert "香港" in diff
    assert "新增 1 项" in diff


async def test_approve_confirms_the_years_benefits(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    reg = await make_submitted_registration(await make_veteran())
    page = await client.get(f"/portal/registrations/{reg.id}")

    response = await client.post(
        f"/portal/registrations/{reg.id}/approve",
        data={"csrf_token": csrf, "lock_version": _lock_version(page.text)},
    )
    after = await client.get(f"/portal/registrations/{reg.id}")

    assert response.status_code == 303
    assert "已审核通过" in after.text
    assert f"已确认{REPORT_YEAR}年度待遇" in after.text
    assert (await AnnualRegistration.get(id=reg.id)).status == "approved"
    assert await BenefitConfirmation.filter(registration_id=reg.id).count() == 1
    # Late filing cannot help an approved registration, so it is not offered.
    assert "允许补报" not in after.text


async def test_approve_without_csrf_token_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    reg = await make_submitted_registration(await make_veteran())

    response = await client.post(
        f"/portal/registrations/{reg.id}/approve", data={"lock_version": str(reg.lock_version)}
    )

    assert response.status_code == 403
    assert "页面已过期" in response.text
    assert (await AnnualRegistration.get(id=reg.id)).status == "submitted"


async def test_approve_of_another_countys_registration_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    other = await make_submitted_registration(await make_veteran(county_code=OTHER_COUNTY))

    response = await client.post(
        f"/portal/registrations/{other.id}/approve",
        data={"csrf_token": csrf, "lock_version": str(other.lock_version)},
    )

    assert response.status_code == 404
    assert (await AnnualRegistration.get(id=other.id)).status == "submitted"


async def test_return_keeps_a_comment_per_section_on_the_version_seen(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    reg = await make_submitted_registration(await make_veteran())
    page = await client.get(f"/portal/registrations/{reg.id}")

    response = await client.post(
        f"/portal/registrations/{reg.id}/return",
        data={
            "csrf_token": csrf,
            "lock_version": _lock_version(page.text),
            "comment_trips": "请补充返程日期 <b>" + "🙂",
            "comment_party_life": "",
            "deadline": "",
        },
    )
    after = await client.get(f"/portal/registrations/{reg.id}")

    assert response.status_code == 303
    saved = await AnnualRegistration.get(id=reg.id)
    assert saved.status == "returned"
    assert saved.correction_deadline == registrations.shanghai_today() + dt.timedelta(days=15)
    comments = await ReviewComment.filter(registration_id=reg.id).select_related("version")
    assert [(c.section, c.comment, c.version.version_no) for c in comments] == [
        ("trips", "请补充返程日期 <b>🙂", 1)
    ]
    assert "针对第1版" in after.text
    assert "请补充返程日期 &lt;b&gt;🙂" in after.text


async def test_return_without_any_comment_is_refused_with_a_message(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    reg = await make_submitted_registration(await make_veteran())
    url = f"/portal/registrations/{reg.id}"

    response = await client.post(
        f"{url}/return",
        data={"csrf_token": csrf, "lock_version": str(reg.lock_version), "deadline": ""},
        headers={"referer": str(client.base_url) + url},
    )
    after = await client.get(url)

    assert response.status_code == 303
    assert "请至少对一个栏目填写补正意见" in after.text
    assert (await AnnualRegistration.get(id=reg.id)).status == "submitted"


async def test_second_clerk_acting_on_a_stale_page_sees_the_conflict_and_current_state(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    reg = await make_submitted_registration(await make_veteran())
    seen = _lock_version((await client.get(f"/portal/registrations/{reg.id}")).text)
    colleague = await make_staff("140105")
    await registrations.return_for_correction(colleague, reg.id, int(seen), {"trips": "请补充"})

    response = await client.post(
        f"/portal/registrations/{reg.id}/approve",
        data={"csrf_token": csrf, "lock_version": seen},
    )
    after = await client.get(response.headers["location"])

    assert response.status_code == 303
    assert "该登记已被其他工作人员处理" in after.text
    assert "退回补正" in after.text
    assert (await AnnualRegistration.get(id=reg.id)).status == "returned"
    assert await BenefitConfirmation.filter(registration_id=reg.id).count() == 0


# -- on-site entry ---------------------------------------------------------------------------


def _onsite_form(csrf: str, veteran: Veteran, **extra: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "veteran_id": str(veteran.id),
        "year": str(REPORT_YEAR),
        "party_life.organisation": "",
        "party_life.participation": "",
        "trips.0.departed_on": "2025-05-01",
        "trips.0.returned_on": "",
        "trips.0.destination_kind": "foreign",
        "trips.0.destination": "新加坡",
        "trips.0.purpose": SCRIPT,
        "trips.1.departed_on": "",
        "trips.1.returned_on": "",
        "trips.1.destination_kind": "hmt",
        "trips.1.destination": "",
        "trips.1.purpose": "",
        "rewards_punishments.0.kind": "reward",
        "rewards_punishments.0.date": "",
        "rewards_punishments.0.title": "",
        "rewards_punishments.0.issuer": "",
        "contact_changes.new_address": "",
        "contact_changes.new_phone": "",
        "remarks": "",
    }
    form.update(extra)
    return form


async def test_onsite_search_finds_veterans_in_scope_only(client: httpx.AsyncClient) -> None:
    await _login(client)
    await make_veteran(name="柜台甲")
    await make_veteran(name="柜台乙", county_code=OTHER_COUNTY)

    response = await client.get("/portal/registrations/onsite", params={"q": "柜台"})

    assert response.status_code == 200
    assert "柜台甲" in response.text
    assert "柜台乙" not in response.text


async def test_onsite_entry_is_recorded_as_onsite_and_by_whom(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    await _open_window_today()
    veteran = await make_veteran()
    form_page = await client.get(
        "/portal/registrations/onsite", params={"veteran_id": veteran.id, "year": REPORT_YEAR}
    )

    response = await client.post("/portal/registrations/onsite", data=_onsite_form(csrf, veteran))
    detail = await client.get(response.headers["location"])

    assert form_page.status_code == 200
    assert response.status_code == 303
    reg = await AnnualRegistration.get(veteran_id=veteran.id, report_year=REPORT_YEAR)
    assert (reg.status, reg.channel) == ("submitted", "onsite")
    version = await RegistrationVersion.get(registration_id=reg.id)
    assert version.data["trips"] == [
        {
            "departed_on": "2025-05-01",
            "returned_on": None,
            "destination_kind": "foreign",
            "destination": "新加坡",
            "purpose": SCRIPT,
        }
    ]
    assert version.data["rewards_punishments"] == []
    assert "现场代录 by clerk1" in detail.text
    assert SCRIPT not in detail.text


async def test_clerk_who_entered_onsite_cannot_approve_it(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    await _open_window_today()
    veteran = await make_veteran()
    await client.post("/portal/registrations/onsite", data=_onsite_form(csrf, veteran))
    reg = await AnnualRegistration.get(veteran_id=veteran.id, report_year=REPORT_YEAR)

    response = await client.post(
        f"/portal/registrations/{reg.id}/approve",
        data={"csrf_token": csrf, "lock_version": str(reg.lock_version)},
    )
    after = await client.get(response.headers["location"])

    assert response.status_code == 303
    assert "现场代录的登记须由其他工作人员审核" in after.text
    assert (await AnnualRegistration.get(id=reg.id)).status == "submitted"


async def test_onsite_entry_with_bad_dates_shows_the_form_again_and_saves_nothing(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    await _open_window_today()
    veteran = await make_veteran()
    form = _onsite_form(csrf, veteran, **{"trips.0.returned_on": "2025-04-01"})

    response = await client.post("/portal/registrations/onsite", data=form)

    assert response.status_code == 422
    assert "回国（境）日期不能早于出国（境）日期" in response.text
    assert 'value="新加坡"' in response.text
    assert await AnnualRegistration.filter(veteran_id=veteran.id, status="submitted").count() == 0
    assert await RegistrationVersion.filter(registration__veteran_id=veteran.id).count() == 0


async def test_onsite_entry_for_another_countys_veteran_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    await _open_window_today()
    other = await make_veteran(county_code=OTHER_COUNTY)

    page = await client.get("/portal/registrations/onsite", params={"veteran_id": other.id})
    response = await client.post("/portal/registrations/onsite", data=_onsite_form(csrf, other))

    assert page.status_code == 404
    assert response.status_code == 404
    assert await AnnualRegistration.filter(veteran_id=other.id).count() == 0


# -- late filing, not filed, overdue ---------------------------------------------------------


async def test_late_filing_permit_needs_a_reason_and_is_kept(client: httpx.AsyncClient) -> None:
    csrf = await _login(client)
    veteran = await make_veteran()
    url = f"/portal/registrations/late-permits/new?veteran_id={veteran.id}&year={REPORT_YEAR}"
    deadline = (registrations.shanghai_today() + dt.timedelta(days=10)).isoformat()
    form: dict[str, Any] = {
        "csrf_token": csrf,
        "veteran_id": veteran.id,
        "year": REPORT_YEAR,
        "deadline": deadline,
    }

    page = await client.get(url)
    refused = await client.post(
        "/portal/registrations/late-permits",
        data={**form, "reason": "  "},
        headers={"referer": str(client.base_url) + url},
    )
    granted = await client.post(
        "/portal/registrations/late-permits", data={**form, "reason": "住院治疗，无法按时登记"}
    )
    listing = await client.get(granted.headers["location"])

    assert page.status_code == 200
    assert refused.status_code == 422
    assert "请填写准许补报的原因" in refused.text
    assert f'value="{deadline}"' in refused.text  # the typed deadline is kept
    assert granted.status_code == 303
    permit = await LateFilingPermit.get(veteran_id=veteran.id, report_year=REPORT_YEAR)
    assert permit.reason == "住院治疗，无法按时登记"
    assert "住院治疗" in listing.text
    assert await AuditLog.filter(action="registration.late_filing_granted").count() == 1


async def test_late_filing_form_with_a_bad_deadline_keeps_what_was_typed(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    veteran = await make_veteran()
    past = (registrations.shanghai_today() - dt.timedelta(days=1)).isoformat()
    reason = "住院治疗<b>，无法按时登记"

    refused = await client.post(
        "/portal/registrations/late-permits",
        data={
            "csrf_token": csrf,
            "veteran_id": veteran.id,
            "year": REPORT_YEAR,
            "deadline": past,
            "reason": reason,
        },
    )

    assert refused.status_code == 422
    assert "补报截止日期不能早于今天" in refused.text
    assert "住院治疗&lt;b&gt;，无法按时登记</textarea>" in refused.text
    assert f'value="{past}"' in refused.text
    assert await LateFilingPermit.all().count() == 0
    assert not await AuditLog.filter(action="registration.late_filing_granted").exists()


def _correction_days() -> int:
    return context.current().settings.correction_days


def _offered_deadline(page: str) -> dt.date:
    found = re.search(r'name="deadline" value="([0-9-]+)"', page)
    assert found is not None, "the form offers no deadline"
    return dt.date.fromisoformat(found.group(1))


async def test_default_late_deadline_runs_past_a_window_still_open(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    veteran = await make_veteran()
    today = registrations.shanghai_today()
    closes = today + dt.timedelta(days=20)
    await RegistrationWindow.create(
        report_year=REPORT_YEAR, opens_on=today - dt.timedelta(days=30), closes_on=closes
    )
    url = f"/portal/registrations/late-permits/new?veteran_id={veteran.id}&year={REPORT_YEAR}"

    page = await client.get(url)

    assert page.status_code == 200
    assert _offered_deadline(page.text) == closes + dt.timedelta(days=_correction_days())


async def test_default_late_deadline_after_the_window_counts_from_today(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    veteran = await make_veteran()
    today = registrations.shanghai_today()
    await RegistrationWindow.create(
        report_year=REPORT_YEAR,
        opens_on=today - dt.timedelta(days=60),
        closes_on=today - dt.timedelta(days=5),
    )
    url = f"/portal/registrations/late-permits/new?veteran_id={veteran.id}&year={REPORT_YEAR}"

    page = await client.get(url)

    assert _offered_deadline(page.text) == today + dt.timedelta(days=_correction_days())


def test_default_late_deadline_never_exceeds_what_the_service_accepts() -> None:
    today = dt.date(2026, 1, 10)
    far = registrations.Window(REPORT_YEAR, today, today + dt.timedelta(days=300))
    near = registrations.Window(REPORT_YEAR, today, today + dt.timedelta(days=30))

    assert default_late_deadline(far, today, 15) == today + dt.timedelta(
        days=registrations.MAX_CORRECTION_DAYS
    )
    assert default_late_deadline(near, today, 15) == today + dt.timedelta(days=45)


async def test_late_filing_for_another_countys_veteran_answers_not_found(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client)
    other = await make_veteran(county_code=OTHER_COUNTY)

    response = await client.post(
        "/portal/registrations/late-permits",
        data={
            "csrf_token": csrf,
            "veteran_id": other.id,
            "year": REPORT_YEAR,
            "deadline": (registrations.shanghai_today() + dt.timedelta(days=5)).isoformat(),
            "reason": "外县",
        },
    )

    assert response.status_code == 404
    assert await LateFilingPermit.all().count() == 0


async def test_not_filed_page_counts_by_county_and_lists_who(client: httpx.AsyncClient) -> None:
    await _login(client, region="140100")
    await make_veteran(name="未登记甲")
    await make_veteran(name="未登记乙", county_code="140106")
    await make_submitted_registration(await make_veteran(name="已登记丙"))
    await make_veteran(name="外市丁", county_code=OTHER_COUNTY)

    response = await client.get("/portal/registrations/not-filed", params={"year": REPORT_YEAR})

    assert response.status_code == 200
    counts = response.text.split('id="not-filed-counts"', 1)[1].split("</table>", 1)[0]
    assert "小店区" in counts and "迎泽区" in counts
    assert "共 2 人" in response.text
    assert "未登记甲" in response.text and "未登记乙" in response.text
    assert "已登记丙" not in response.text
    assert "外市丁" not in response.text


async def test_overdue_page_lists_reviews_open_after_the_review_period(
    client: httpx.AsyncClient,
) -> None:
    await _login(client)
    old = await make_submitted_registration(await make_veteran(name="久未审核"))
    await make_submitted_registration(await make_veteran(name="刚刚提交"))
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    await AnnualRegistration.filter(id=old.id).update(submitted_at=long_ago)
    await AnnualRegistration.exclude(id=old.id).update(submitted_at=dt.datetime.now(dt.UTC))

    response = await client.get("/portal/registrations/overdue")

    assert response.status_code == 200
    assert "久未审核" in response.text
    assert "刚刚提交" not in response.text


# -- the filing window -----------------------------------------------------------------------


async def test_window_page_is_for_province_staff_only(client: httpx.AsyncClient) -> None:
    await _login(client)

    response = await client.get("/portal/registrations/windows")

    assert response.status_code == 403


async def test_province_sets_a_demo_window_shown_with_its_banner(
    client: httpx.AsyncClient,
) -> None:
    csrf = await _login(client, username="prov1", region=PROVINCE)

    before = await client.get("/portal/registrations/windows")
    response = await client.post(
        "/portal/registrations/windows",
        data={
            "csrf_token": csrf,
            "year": REPORT_YEAR,
            "opens_on": "2026-11-01",
            "closes_on": "2026-12-31",
            "reason": "演示",
            "demo": "1",
        },
    )
    after = await client.get("/portal/registrations/windows")
    listing = await client.get("/portal/registrations", params={"year": REPORT_YEAR})

    assert "2026-01-01 至 2026-03-31" in before.text
    assert "演示用开放期" not in before.text
    assert response.status_code == 303
    assert "2026-11-01 至 2026-12-31" in after.text
    assert "演示用开放期" in after.text
    assert "演示用开放期" in listing.text
    window = await RegistrationWindow.get(report_year=REPORT_YEAR)
    assert window.is_demo_override
