"""The stand-in's own behaviour: token kinds, and the events it pushes to the real service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from backend.routes import wechat_push
from backend.settings import Settings
from tests.wechat.helpers import login

Received = list[tuple[str, str, list[dict[str, str]]]]
TEMPLATE = "DEMO-correction-notice-0002"
CREDENTIALS = {"grant_type": "client_credential", "secret": "standin-secret"}


def app_credentials(settings: Settings) -> dict[str, str]:
    return {**CREDENTIALS, "appid": settings.wechat_appid, "secret": settings.wechat_secret}


async def check_with(control: httpx.AsyncClient, token: str) -> int:
    """The errcode an API call made with this token gets (a text check of nothing)."""
    answer = await control.post("/wxa/msg_sec_check", params={"access_token": token}, json={})
    return int(answer.json()["errcode"])


async def test_each_plain_token_fetch_issues_a_new_one_and_the_old_works_a_while(
    control: httpx.AsyncClient, settings: Settings
) -> None:
    await control.post("/__standin__/config", json={"plain_overlap": 1})
    query = app_credentials(settings)

    first = (await control.get("/cgi-bin/token", params=query)).json()
    second = (await control.get("/cgi-bin/token", params=query)).json()
    overlap = await check_with(control, first["access_token"])
    await asyncio.sleep(1.1)

    assert "errcode" not in first and first["expires_in"] == 7200
    assert first["access_token"] != second["access_token"]
    assert overlap == 47001  # the token was fine; only the empty body was refused
    assert await check_with(control, first["access_token"]) == 42001
    assert await check_with(control, second["access_token"]) == 47001


async def test_the_stable_token_stays_the_same_until_forced_and_force_kills_the_old(
    control: httpx.AsyncClient, settings: Settings
) -> None:
    body = app_credentials(settings)

    first = (await control.post("/cgi-bin/stable_token", json=body)).json()
    again = (await control.post("/cgi-bin/stable_token", json=body)).json()
    forced = (
        await control.post("/cgi-bin/stable_token", json=body | {"force_refresh": True})
    ).json()
    too_soon = (
        await control.post("/cgi-bin/stable_token", json=body | {"force_refresh": True})
    ).json()

    assert first["access_token"] == again["access_token"] != forced["access_token"]
    assert too_soon["errcode"] == 45009
    assert await check_with(control, first["access_token"]) == 40001
    assert await check_with(control, forced["access_token"]) == 47001


async def test_an_unknown_token_answers_40001(control: httpx.AsyncClient) -> None:
    assert await check_with(control, "made-up") == 40001


# -- pushes to the real service --------------------------------------------------------------


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Received:
    calls: Received = []

    def handler(name: str) -> Callable[[str, list[dict[str, str]]], Awaitable[None]]:
        async def record(openid: str, items: list[dict[str, str]]) -> None:
            calls.append((name, openid, items))

        return record

    monkeypatch.setattr(wechat_push, "_handler", handler)
    return calls


async def eventually(received: Received, count: int) -> Received:
    for _ in range(100):
        if len(received) >= count:
            return received
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} pushes, got {received}")


async def settled_pushes(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The stand-in's push log once every push has had its answer."""
    for _ in range(100):
        pushes: list[dict[str, Any]] = (await control.get("/__standin__/pushes")).json()["pushes"]
        if all(push["status"] != "pending" for push in pushes):
            return pushes
        await asyncio.sleep(0.02)
    raise AssertionError("pushes still pending")


async def send(control: httpx.AsyncClient, settings: Settings, openid: str) -> dict[str, Any]:
    token = (await control.post("/cgi-bin/stable_token", json=app_credentials(settings))).json()[
        "access_token"
    ]
    payload = {
        "touser": openid,
        "template_id": TEMPLATE,
        "data": {
            "thing1": {"value": "2026年度登记"},
            "time2": {"value": "2027年1月20日"},
            "thing3": {"value": "请补充出入境记录"},
        },
    }
    answer = await control.post(
        "/cgi-bin/message/subscribe/send", params={"access_token": token}, json=payload
    )
    return dict(answer.json())


async def test_accepting_on_the_phone_pushes_a_signed_popup_event_to_the_service(
    server: tuple[str, Settings], control: httpx.AsyncClient, received: Received
) -> None:
    _, openid = await login(control)

    answer = await control.post(
        "/__standin__/subscribe",
        json={"openid": openid, "templates": {TEMPLATE: "accept", "other-template": "reject"}},
    )

    assert answer.json()["acceptances"] == {TEMPLATE: 1}
    events = await eventually(received, 1)
    assert events[0][0:2] == ("on_popup", openid)
    assert [(i["TemplateId"], i["SubscribeStatusString"]) for i in events[0][2]] == [
        (TEMPLATE, "accept"),
        ("other-template", "reject"),
    ]


async def test_an_accepted_send_is_followed_by_a_delivery_event_with_the_msgid(
    server: tuple[str, Settings], control: httpx.AsyncClient, received: Received
) -> None:
    code, openid = await login(control)
    await control.get(
        "/sns/jscode2session",
        params={**app_credentials(server[1]), "js_code": code, "grant_type": "authorization_code"},
    )
    await control.post(
        "/__standin__/subscribe", json={"openid": openid, "templates": {TEMPLATE: "accept"}}
    )

    answer = await send(control, server[1], openid)

    events = await eventually(received, 2)
    assert answer["errcode"] == 0
    assert events[1] == (
        "on_sent",
        openid,
        [
            {
                "TemplateId": TEMPLATE,
                "MsgID": str(answer["msgid"]),
                "ErrorCode": "0",
                "ErrorStatus": "success",
            }
        ],
    )


async def test_with_delivery_turned_off_no_delivery_event_is_pushed(
    server: tuple[str, Settings], control: httpx.AsyncClient, received: Received
) -> None:
    code, openid = await login(control)
    await control.get(
        "/sns/jscode2session",
        params={**app_credentials(server[1]), "js_code": code, "grant_type": "authorization_code"},
    )
    await control.post(
        "/__standin__/subscribe", json={"openid": openid, "templates": {TEMPLATE: "accept"}}
    )
    await eventually(received, 1)
    await control.post("/__standin__/config", json={"deliver": False})

    answer = await send(control, server[1], openid)
    await asyncio.sleep(0.3)

    assert answer["errcode"] == 0
    assert [name for name, _, _ in received] == ["on_popup"]


async def test_withdrawing_in_settings_pushes_a_change_event_and_empties_acceptances(
    server: tuple[str, Settings], control: httpx.AsyncClient, received: Received
) -> None:
    _, openid = await login(control)
    await control.post(
        "/__standin__/subscribe", json={"openid": openid, "templates": {TEMPLATE: "accept"}}
    )

    answer = await control.post(
        "/__standin__/withdraw", json={"openid": openid, "template_ids": [TEMPLATE]}
    )

    events = await eventually(received, 2)
    assert answer.json()["acceptances"] == {TEMPLATE: 0}
    assert events[1] == (
        "on_change",
        openid,
        [{"TemplateId": TEMPLATE, "SubscribeStatusString": "reject"}],
    )


async def test_pushes_in_xml_form_reach_the_service_too(
    server: tuple[str, Settings], control: httpx.AsyncClient, received: Received
) -> None:
    await control.post("/__standin__/config", json={"push_format": "xml"})
    _, openid = await login(control)

    await control.post(
        "/__standin__/subscribe", json={"openid": openid, "templates": {TEMPLATE: "accept"}}
    )

    events = await eventually(received, 1)
    assert events[0][2][0]["SubscribeStatusString"] == "accept"
    assert [push["status"] for push in await settled_pushes(control)] == [200]
