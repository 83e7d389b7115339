"""Subscribe reports and the inbox over real HTTP, with the stand-in playing the phone."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from backend.models import InboxMessage, SubscriptionEvent, SubscriptionLedger, WechatAccount
from backend.services import notifications
from tests.factories import fake_id_number, fake_phone, make_region_tree, make_veteran

TID = "DEMO-registration-result-0001"


class Phone:
    """The mini-program: wx.login, getPhoneNumber and our API with the bearer token."""

    def __init__(self, client: httpx.AsyncClient, standin: str, openid: str) -> None:
        self.client, self.standin, self.openid = client, standin, openid
        self.token = ""

    async def wechat(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.standin) as http:
            answer: dict[str, Any] = (await http.post(path, json=body)).json()
        return answer

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def login(self) -> None:
        code = (await self.wechat("/__standin__/login-code", {"openid": self.openid}))["code"]
        response = await self.client.post("/api/v1/sessions", json={"code": code})
        assert response.status_code == 201, response.text
        self.token = response.json()["token"]

    async def bind(self) -> int:
        """Accept the privacy notice and bind to a fresh roster entry; the veteran's id."""
        id_number, number = fake_id_number(), fake_phone()
        veteran = await make_veteran(id_number=id_number, phone=number)
        consent = {"version": "2026-01"}
        await self.client.post("/api/v1/privacy-consents", json=consent, headers=self.auth)
        phone_code = await self.wechat(
            "/__standin__/phone-code", {"openid": self.openid, "phone": number}
        )
        body = {"name": veteran.name, "id_number": id_number, "phone_code": phone_code["code"]}
        response = await self.client.post("/api/v1/bindings", json=body, headers=self.auth)
        assert response.status_code in (200, 201), response.text
        return veteran.id

    async def report(self, results: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            "/api/v1/subscriptions", json={"results": results}, headers=self.auth
        )


@pytest.fixture
async def phone(client: httpx.AsyncClient, standin: str) -> Phone:
    await make_region_tree()
    await notifications.ensure_default_templates()
    handset = Phone(client, standin, "o-api-notify")
    await handset.login()
    return handset


async def remaining() -> int:
    account = await WechatAccount.get(openid="o-api-notify")
    row = await SubscriptionLedger.get_or_none(account_id=account.id, template_id=TID)
    return row.remaining if row else 0


# -- subscriptions -------------------------------------------------------------------------------


async def test_reported_acceptance_and_its_popup_event_count_once(phone: Phone) -> None:
    response = await phone.report({TID: "accept"})

    assert response.status_code == 200
    assert response.json() == {"templates": [{"template_id": TID, "remaining": 1}]}
    # The same tap, as WeChat reports it: pushed, signed, to the server's push URL.
    await phone.wechat(
        "/__standin__/subscribe", {"openid": phone.openid, "templates": {TID: "accept"}}
    )
    for _ in range(100):
        if await SubscriptionEvent.filter(source="popup").exists():
            break
        await asyncio.sleep(0.05)
    assert await SubscriptionEvent.filter(source="popup", delta=0).count() == 1
    assert await remaining() == 1


async def test_report_of_more_than_three_templates_is_refused_whole(phone: Phone) -> None:
    results = {f"T{n}": "accept" for n in range(4)}

    response = await phone.report(results)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    assert not await SubscriptionLedger.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"results": {TID: "maybe"}},
        {"results": {TID: "accept"}, "extra": 1},
        {"results": {"bad id <x>": "accept"}},
        {"results": []},
    ],
)
async def test_malformed_reports_are_refused(phone: Phone, body: dict[str, Any]) -> None:
    response = await phone.client.post("/api/v1/subscriptions", json=body, headers=phone.auth)

    assert response.status_code == 422
    assert not await SubscriptionLedger.exists()


async def test_report_without_a_token_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/subscriptions", json={"results": {TID: "accept"}})

    assert response.status_code == 401


# -- the inbox -----------------------------------------------------------------------------------


async def enqueue_for(veteran_id: int, years: range) -> None:
    from backend.models import Veteran

    veteran = await Veteran.get(id=veteran_id)
    for year in years:
        await notifications.enqueue(
            "registration.approved",
            veteran,
            {"year": year},
            object_type="registration",
            object_id=year,
        )


async def test_inbox_pages_newest_first_and_counts_unread(phone: Phone) -> None:
    veteran_id = await phone.bind()
    await enqueue_for(veteran_id, range(2021, 2024))

    first = await phone.client.get("/api/v1/inbox?limit=2", headers=phone.auth)

    assert first.status_code == 200
    body = first.json()
    assert [item["object_id"] for item in body["items"]] == [2023, 2022]
    assert body["unread"] == 3
    assert body["next_before_id"] == body["items"][-1]["id"]
    rest = await phone.client.get(
        f"/api/v1/inbox?limit=2&before_id={body['next_before_id']}", headers=phone.auth
    )
    assert [item["object_id"] for item in rest.json()["items"]] == [2021]
    assert rest.json()["next_before_id"] is None


async def test_reading_a_message_marks_it_once(phone: Phone) -> None:
    veteran_id = await phone.bind()
    await enqueue_for(veteran_id, range(2025, 2026))
    message = await InboxMessage.get(veteran_id=veteran_id)

    first = await phone.client.post(f"/api/v1/inbox/{message.id}/read", headers=phone.auth)
    second = await phone.client.post(f"/api/v1/inbox/{message.id}/read", headers=phone.auth)

    assert first.status_code == 200
    assert first.json()["read_at"] is not None
    assert second.json()["read_at"] == first.json()["read_at"]
    listing = await phone.client.get("/api/v1/inbox", headers=phone.auth)
    assert listing.json()["unread"] == 0


async def test_another_veterans_message_is_not_found(phone: Phone) -> None:
    await phone.bind()
    other = await make_veteran()
    await enqueue_for(other.id, range(2025, 2026))
    message = await InboxMessage.get(veteran_id=other.id)

    response = await phone.client.post(f"/api/v1/inbox/{message.id}/read", headers=phone.auth)

    assert response.status_code == 404
    assert (await InboxMessage.get(id=message.id)).read_at is None


async def test_inbox_needs_a_bound_account(phone: Phone) -> None:
    await phone.client.post(
        "/api/v1/privacy-consents", json={"version": "2026-01"}, headers=phone.auth
    )

    response = await phone.client.get("/api/v1/inbox", headers=phone.auth)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "NOT_BOUND"


async def test_inbox_refuses_a_bad_limit(phone: Phone) -> None:
    await phone.bind()

    response = await phone.client.get("/api/v1/inbox?limit=500", headers=phone.auth)

    assert response.status_code == 422


async def test_report_of_a_template_id_no_event_uses_is_refused_whole(phone: Phone) -> None:
    response = await phone.report({TID: "accept", "JUNK-TEMPLATE-42": "accept"})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert set(error["details"]["fields"]) == {"results.JUNK-TEMPLATE-42"}
    assert not await SubscriptionLedger.exists()
    assert not await SubscriptionEvent.exists()
