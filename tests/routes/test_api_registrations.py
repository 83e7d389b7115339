"""The registration API over real HTTP: the veteran's phone logs in, binds, drafts and submits."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from backend.models import AnnualRegistration, RegistrationVersion, StaffUser, Veteran
from backend.services import registrations as regs
from backend.settings import Settings
from tests.factories import (
    COUNTY,
    PROVINCE,
    fake_id_number,
    fake_phone,
    make_region_tree,
    make_staff,
    make_veteran,
)

TODAY = regs.shanghai_today()
YEAR = TODAY.year - 1


def trip(**changes: Any) -> dict[str, Any]:
    base = {
        "departed_on": f"{YEAR}-06-01",
        "returned_on": f"{YEAR}-06-08",
        "destination_kind": "foreign",
        "destination": "新加坡",
        "purpose": "旅游",
    }
    return base | changes


class Phone:
    """The mini-program: a bound veteran with a bearer token."""

    def __init__(self, client: httpx.AsyncClient, token: str, veteran: Veteran) -> None:
        self.client, self.veteran = client, veteran
        self.headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path, headers=self.headers)

    async def put(self, path: str, body: Any) -> httpx.Response:
        return await self.client.put(path, json=body, headers=self.headers)

    async def post(self, path: str, body: Any) -> httpx.Response:
        return await self.client.post(path, json=body, headers=self.headers)


async def _standin_code(standin: str, path: str, body: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=standin) as wechat:
        return str((await wechat.post(path, json=body)).json()["code"])


async def logged_in(
    client: httpx.AsyncClient, standin: str, openid: str, *, bind: bool = True
) -> Phone:
    """Log in through the WeChat stand-in, accept the privacy notice and (optionally) bind."""
    id_number, mobile = fake_id_number(), fake_phone()
    veteran = await make_veteran(id_number=id_number, phone=mobile)
    code = await _standin_code(standin, "/__standin__/login-code", {"openid": openid})
    session = await client.post("/api/v1/sessions", json={"code": code})
    assert session.status_code == 201, session.text
    phone = Phone(client, session.json()["token"], veteran)
    consent = await phone.post("/api/v1/privacy-consents", {"version": "2026-01"})
    assert consent.status_code == 200, consent.text
    if bind:
        phone_code = await _standin_code(
            standin, "/__standin__/phone-code", {"openid": openid, "phone": mobile}
        )
        body = {"name": veteran.name, "id_number": id_number, "phone_code": phone_code}
        bound = await phone.post("/api/v1/bindings", body)
        assert bound.status_code in (200, 201), bound.text
        assert bound.json()["status"] == "bound"
    return phone


@pytest.fixture
async def province(server: tuple[str, Settings]) -> StaffUser:
    await make_region_tree()
    return await make_staff(PROVINCE)


async def open_window(province: StaffUser) -> None:
    await regs.set_window(province, YEAR, TODAY - timedelta(days=10), TODAY + timedelta(days=10))


async def close_window(province: StaffUser) -> None:
    await regs.set_window(province, YEAR, date(YEAR + 1, 1, 1), TODAY - timedelta(days=1))


async def test_current_registration_shows_the_year_window_and_duty(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await open_window(province)
    phone = await logged_in(client, standin, "o-current")
    response = await phone.get("/api/v1/registrations/current")
    assert response.status_code == 200
    body = response.json()
    assert body["report_year"] == YEAR and body["must_file"] is True
    assert body["status"] is None and body["registration"] is None
    assert body["window"]["is_open"] is True
    assert body["window"]["message"].startswith(f"{YEAR}年度登记开放时间为")
    assert body["can_submit"] is True and body["comments"] == []


async def test_draft_then_submit_then_history(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await open_window(province)
    phone = await logged_in(client, standin, "o-flow")
    text = '随团 "夕阳红" <旅游> 😀'
    draft = await phone.put(f"/api/v1/registrations/{YEAR}/draft", {"trips": [trip(purpose=text)]})
    assert draft.status_code == 200, draft.text
    assert draft.json()["status"] == "draft"
    assert draft.json()["content"]["trips"][0]["purpose"] == text

    submitted = await phone.post(f"/api/v1/registrations/{YEAR}/submission", {})
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"
    assert submitted.json()["current_version"] == 1

    version = await RegistrationVersion.get(registration__veteran_id=phone.veteran.id)
    assert version.data["trips"][0]["purpose"] == text
    history = await phone.get("/api/v1/registrations")
    assert [item["report_year"] for item in history.json()["items"]] == [YEAR]
    current = (await phone.get("/api/v1/registrations/current")).json()
    assert current["status"] == "submitted" and current["can_edit"] is False


async def test_submit_outside_the_window_answers_registration_closed_with_the_window(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await close_window(province)
    phone = await logged_in(client, standin, "o-closed")
    response = await phone.post(f"/api/v1/registrations/{YEAR}/submission", {"content": {}})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "REGISTRATION_CLOSED"
    assert f"{YEAR}年度登记开放时间为{YEAR + 1}年1月1日至" in error["message"]
    assert error["details"]["opens_on"] == f"{YEAR + 1}-01-01"
    assert not await RegistrationVersion.exists()
    current = (await phone.get("/api/v1/registrations/current")).json()
    assert current["can_submit"] is False and "开放时间" in current["blocked_reason"]


async def test_bad_input_is_refused_with_field_details_and_saves_nothing(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await open_window(province)
    phone = await logged_in(client, standin, "o-bad")
    path = f"/api/v1/registrations/{YEAR}/draft"
    cases: list[dict[str, Any]] = [
        {"trips": [trip(departed_on=20250601)]},
        {"trips": [trip(destination_kind="abroad")]},
        {"trips": [trip(returned_on=f"{YEAR}-05-01")]},
        {"trips": [trip(departed_on=f"{YEAR - 1}-01-01", returned_on=f"{YEAR - 1}-01-05")]},
        {"contact_changes": {"new_phone": "+86 138"}},
        {"remarks": "x", "salary": 1},
        {"associations": [{"name": "协会"}] * 51},
        {"remarks": "长" * 2001},
    ]
    for body in cases:
        response = await phone.put(path, body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_FAILED" and error["details"]["fields"], error
    malformed = await client.put(
        path,
        content=b'{"trips": [',
        headers={**phone.headers, "content-type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "MALFORMED_REQUEST"
    assert not await AnnualRegistration.exists()


async def test_date_errors_point_at_the_field(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await open_window(province)
    phone = await logged_in(client, standin, "o-fields")
    body = {"content": {"trips": [trip(), trip(returned_on=f"{YEAR}-05-01")]}}
    response = await phone.post(f"/api/v1/registrations/{YEAR}/submission", body)
    assert response.status_code == 422
    fields = response.json()["error"]["details"]["fields"]
    assert fields == {"content.trips.1.returned_on": "回国（境）日期不能早于出国（境）日期"}


async def test_double_tap_on_submit_over_http_creates_one_submission(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await open_window(province)
    phone = await logged_in(client, standin, "o-double")
    body = {"content": {"trips": [trip()]}}
    path = f"/api/v1/registrations/{YEAR}/submission"
    first, second = await asyncio.gather(phone.post(path, body), phone.post(path, body))
    assert {first.status_code, second.status_code} <= {200, 409}
    assert 200 in {first.status_code, second.status_code}
    assert await AnnualRegistration.filter(veteran_id=phone.veteran.id).count() == 1
    assert await RegistrationVersion.all().count() == 1


async def test_returned_registration_shows_comments_and_deadline(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    await open_window(province)
    phone = await logged_in(client, standin, "o-returned")
    await phone.post(f"/api/v1/registrations/{YEAR}/submission", {"content": {"trips": [trip()]}})
    clerk = await make_staff(COUNTY)
    reg = await AnnualRegistration.get(veteran_id=phone.veteran.id)
    await regs.return_for_correction(
        clerk, reg.id, reg.lock_version, {"trips": "请写明 <随团> 名称"}
    )
    body = (await phone.get("/api/v1/registrations/current")).json()
    assert body["status"] == "returned" and body["can_submit"] is True
    assert body["comments"][0]["section"] == "trips"
    assert body["comments"][0]["section_label"] == "出入境情况"
    assert body["comments"][0]["comment"] == "请写明 <随团> 名称"
    assert body["correction_deadline"] == (TODAY + timedelta(days=15)).isoformat()
    fixed = await phone.put(f"/api/v1/registrations/{YEAR}/draft", {"trips": [trip(purpose="x")]})
    assert fixed.status_code == 200
    again = await phone.post(f"/api/v1/registrations/{YEAR}/submission", {})
    assert again.json()["status"] == "submitted" and again.json()["current_version"] == 2


async def test_unbound_account_cannot_file(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    phone = await logged_in(client, standin, "o-unbound", bind=False)
    response = await phone.get("/api/v1/registrations/current")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NOT_BOUND"
    anonymous = await client.get("/api/v1/registrations/current")
    assert anonymous.status_code == 401


async def test_year_that_has_not_begun_is_not_found(
    client: httpx.AsyncClient, standin: str, province: StaffUser
) -> None:
    phone = await logged_in(client, standin, "o-future")
    response = await phone.put(f"/api/v1/registrations/{TODAY.year + 1}/draft", {})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
