"""Staff and audit pages over real HTTP: account management by the level above, audit scope."""

from __future__ import annotations

import httpx

from backend.models import AuditLog, StaffSession, StaffUser
from backend.services import audit
from tests.factories import (
    CITY,
    COUNTY,
    OTHER_COUNTY,
    PORTAL_PASSWORD,
    PROVINCE,
    make_region_tree,
    make_staff,
    make_veteran,
    portal_login,
)

NEW_PASSWORD = "Fresh-start-2026"


async def _login(client: httpx.AsyncClient, region: str, role: str = "lead") -> str:
    await make_region_tree()
    await make_staff(region, username="me", password=PORTAL_PASSWORD, role=role)
    return await portal_login(client, "me")


def _new_account(token: str, region: str, username: str = "county1") -> dict[str, str]:
    return {
        "csrf_token": token,
        "username": username,
        "display_name": "县区经办人",
        "password": NEW_PASSWORD,
        "password_again": NEW_PASSWORD,
        "role": "clerk",
        "region_code": region,
    }


async def test_city_lead_creates_a_county_account_that_can_log_in(
    client: httpx.AsyncClient,
) -> None:
    token = await _login(client, CITY)

    response = await client.post("/portal/staff", data=_new_account(token, COUNTY))

    assert response.status_code == 303
    created = await StaffUser.get(username="county1").select_related("region")
    assert created.region.code == COUNTY and created.role == "clerk"
    listing = await client.get("/portal/staff")
    assert "已创建账号 county1" in listing.text
    async with httpx.AsyncClient(base_url=str(client.base_url)) as other:
        await portal_login(other, "county1", NEW_PASSWORD)


async def test_clerk_cannot_create_accounts(client: httpx.AsyncClient) -> None:
    token = await _login(client, CITY, role="clerk")

    page = await client.get("/portal/staff")
    response = await client.post("/portal/staff", data=_new_account(token, COUNTY))

    assert "新建账号" not in page.text
    assert response.status_code == 403
    assert not await StaffUser.filter(username="county1").exists()


async def test_city_lead_cannot_create_in_another_city(client: httpx.AsyncClient) -> None:
    token = await _login(client, CITY)

    response = await client.post("/portal/staff", data=_new_account(token, OTHER_COUNTY))

    assert response.status_code == 404
    assert not await StaffUser.filter(username="county1").exists()


async def test_refused_creation_shows_the_form_again_with_each_reason(
    client: httpx.AsyncClient,
) -> None:
    token = await _login(client, CITY)
    mismatch = _new_account(token, COUNTY) | {"password_again": "something-else"}
    weak = _new_account(token, COUNTY, username="county2") | {
        "password": "123",
        "password_again": "123",
    }

    first = await client.post("/portal/staff", data=mismatch)
    second = await client.post("/portal/staff", data=weak)

    assert first.status_code == 422
    assert "两次输入的密码不一致" in first.text
    assert 'value="county1"' in first.text and NEW_PASSWORD not in first.text
    assert second.status_code == 422
    assert "密码长度须为" in second.text
    assert 'value="county2"' in second.text
    assert not await StaffUser.filter(username__in=["county1", "county2"]).exists()


async def test_lead_disables_a_county_account_and_its_session_ends(
    client: httpx.AsyncClient,
) -> None:
    token = await _login(client, CITY)
    target = await make_staff(COUNTY, username="county1", password=PORTAL_PASSWORD)
    async with httpx.AsyncClient(base_url=str(client.base_url)) as victim:
        await portal_login(victim, "county1")

        response = await client.post(
            f"/portal/staff/{target.id}/disable", data={"csrf_token": token, "reason": "离职"}
        )
        after = await victim.get("/portal/")

    assert response.status_code == 303
    assert not (await StaffUser.get(id=target.id)).is_active
    assert await StaffSession.filter(staff_id=target.id, revoked_at=None).count() == 0
    assert after.status_code == 303  # back to the login page
    assert await AuditLog.filter(action="staff.disabled", object_id=str(target.id)).exists()


async def test_staff_list_leaves_out_other_regions(client: httpx.AsyncClient) -> None:
    await _login(client, COUNTY)
    await make_staff(OTHER_COUNTY, username="outsider")

    page = await client.get("/portal/staff")

    assert "outsider" not in page.text


async def test_county_audit_page_hides_other_counties_rows(client: httpx.AsyncClient) -> None:
    await _login(client, COUNTY, role="clerk")
    mine = await make_veteran()
    theirs = await make_veteran(county_code=OTHER_COUNTY)
    outsider = await make_staff(OTHER_COUNTY)
    await audit.record("staff", outsider.id, "veteran.id_viewed", "veteran", theirs.id)
    await audit.record("veteran", mine.id, "registration.submitted", "registration", 77)

    page = await client.get("/portal/audit")

    assert f"veteran #{theirs.id}" not in page.text
    assert "registration #77" in page.text
    assert "staff.login" in page.text  # our own login is in scope


async def test_province_audit_page_filters_by_action(client: httpx.AsyncClient) -> None:
    await _login(client, PROVINCE, role="clerk")
    outsider = await make_staff(OTHER_COUNTY)
    await audit.record("staff", outsider.id, "veteran.id_viewed", "veteran", 5, {"note": "<b>"})

    page = await client.get("/portal/audit?action=veteran.id_viewed")

    assert "veteran #5" in page.text
    assert "note：&lt;b&gt;" in page.text
    assert "staff.login" not in page.text


async def test_audit_page_names_actions_and_details_in_chinese(client: httpx.AsyncClient) -> None:
    await _login(client, PROVINCE, role="clerk")
    detail = {
        "report_year": 2025,
        "benefits_confirmed": True,
        "registration_id": None,
        "sections": ["party_life", "trips"],
    }
    await audit.record("staff", None, "registration.returned", "registration", 9, detail)
    await audit.record("system", None, "made.up_code", "registration", 9, {"demo": False})

    page = await client.get("/portal/audit?object_type=registration")

    assert 'title="registration.returned">退回补正<br>' in page.text  # the code stays findable
    assert "年度：2025" in page.text
    assert "确认待遇：是" in page.text
    assert "年度登记编号：—" in page.text
    assert "退回栏目：组织生活、出入境情况" in page.text
    assert 'title="made.up_code">made.up_code<br>' in page.text  # unknown codes show as they are
    assert "演示设置：否" in page.text
    assert "True" not in page.text and "None" not in page.text and "['" not in page.text


async def test_audit_page_refuses_a_nonsense_actor_id(client: httpx.AsyncClient) -> None:
    await _login(client, PROVINCE)

    page = await client.get("/portal/audit?actor_id=abc")

    assert page.status_code == 422
    assert "操作人编号应为数字" in page.text


async def test_every_admin_page_renders_for_a_province_lead(client: httpx.AsyncClient) -> None:
    await _login(client, PROVINCE)
    await make_veteran(name="省级可见")

    pages = [
        "/portal/",
        "/portal/veterans",
        "/portal/bindings",
        "/portal/roster",
        "/portal/staff",
        "/portal/audit",
    ]
    answers = {path: await client.get(path) for path in pages}

    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(pages, 200)
    assert "省级可见" in answers["/portal/veterans"].text
    assert "新建账号" in answers["/portal/staff"].text  # a province lead manages city accounts
