"""WeChat's push URL on the real server: signatures, stale and repeated deliveries, hand-off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import httpx
import pytest

from backend.models.notifications import PushEventSeen
from backend.routes import wechat_push
from backend.settings import Settings
from backend.wechat.crypto import sign
from backend.wechat.standin import StandinConfig, build_push

Received = list[tuple[str, str, list[dict[str, str]]]]
POPUP = "subscribe_msg_popup_event"
TEMPLATE = "DEMO-registration-result-0001"


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Received:
    """What reached the notifications service, recorded in its place."""
    calls: Received = []

    def handler(name: str) -> Callable[[str, list[dict[str, str]]], Awaitable[None]]:
        async def record(openid: str, items: list[dict[str, str]]) -> None:
            calls.append((name, openid, items))

        return record

    monkeypatch.setattr(wechat_push, "_handler", handler)
    return calls


@pytest.fixture
def wechat_side(server: tuple[str, Settings]) -> StandinConfig:
    """The push keys WeChat shares with the service."""
    settings = server[1]
    return StandinConfig(
        appid=settings.wechat_appid,
        push_token=settings.wechat_push_token,
        aes_key=settings.wechat_aes_key,
    )


def popup(openid: str = "o-veteran-1") -> tuple[str, str, list[dict[str, str]]]:
    return POPUP, openid, [{"TemplateId": TEMPLATE, "SubscribeStatusString": "accept"}]


async def test_the_url_check_echoes_echostr_when_signed_with_our_token(
    client: httpx.AsyncClient, wechat_side: StandinConfig
) -> None:
    params = {"timestamp": "1700000000", "nonce": "n1", "echostr": "hello-42"}
    params["signature"] = sign(wechat_side.push_token, params["timestamp"], params["nonce"])

    answer = await client.get("/wechat/push", params=params)

    assert answer.status_code == 200
    assert answer.text == "hello-42"


async def test_the_url_check_with_a_wrong_signature_is_refused(client: httpx.AsyncClient) -> None:
    params = {"timestamp": "1700000000", "nonce": "n1", "echostr": "x", "signature": "0" * 40}

    answer = await client.get("/wechat/push", params=params)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "FORBIDDEN"


async def test_a_signed_event_with_one_item_reaches_the_service_as_a_list(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    query, body = build_push(wechat_side, *popup())

    answer = await client.post("/wechat/push", params=query, content=body)

    assert answer.status_code == 200
    assert answer.text == "success"
    assert received == [
        ("on_popup", "o-veteran-1", [{"TemplateId": TEMPLATE, "SubscribeStatusString": "accept"}])
    ]


async def test_an_xml_event_with_several_items_reaches_the_service_as_a_list(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    items = [
        {
            "TemplateId": "t1",
            "MsgID": "3395159288267931652",
            "ErrorCode": "0",
            "ErrorStatus": "success",
        },
        {
            "TemplateId": "t2",
            "MsgID": "3395159288267931653",
            "ErrorCode": "0",
            "ErrorStatus": "success",
        },
    ]
    config = replace(wechat_side, push_format="xml")
    query, body = build_push(config, "subscribe_msg_sent_event", "o-veteran-2", items)

    answer = await client.post("/wechat/push", params=query, content=body)

    assert answer.text == "success"
    assert received == [("on_sent", "o-veteran-2", items)]


async def test_a_push_with_a_wrong_msg_signature_is_refused_and_not_handled(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    query, body = build_push(wechat_side, *popup())
    query["msg_signature"] = "f" * 40

    answer = await client.post("/wechat/push", params=query, content=body)

    assert answer.status_code == 403
    assert answer.json()["error"]["details"] == {"reason": "signature"}
    assert received == []


async def test_a_push_sealed_with_another_apps_key_is_refused(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    forger = replace(wechat_side, aes_key="ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210abcdefg")
    query, body = build_push(forger, *popup())

    answer = await client.post("/wechat/push", params=query, content=body)

    assert answer.status_code == 403
    assert received == []


async def test_a_push_older_than_five_minutes_is_refused_as_a_replay(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    query, body = build_push(wechat_side, *popup(), timestamp=int(time.time()) - 301)

    answer = await client.post("/wechat/push", params=query, content=body)

    assert answer.status_code == 403
    assert answer.json()["error"]["details"] == {"reason": "stale"}
    assert received == []


async def test_a_repeated_delivery_is_answered_but_handled_once(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    now = int(time.time())
    # WeChat's retry carries the same message sealed afresh: new nonce, new ciphertext.
    first = build_push(wechat_side, *popup(), timestamp=now)
    again = build_push(wechat_side, *popup(), timestamp=now)

    answers = [
        await client.post("/wechat/push", params=query, content=body)
        for query, body in (first, again)
    ]

    assert [a.text for a in answers] == ["success", "success"]
    assert len(received) == 1
    assert await PushEventSeen.all().count() == 1


async def test_a_push_in_plain_mode_is_refused(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    query, body = build_push(wechat_side, *popup())
    del query["encrypt_type"]

    answer = await client.post("/wechat/push", params=query, content=body)

    assert answer.status_code == 403
    assert received == []


async def test_a_garbled_body_is_a_bad_request(
    client: httpx.AsyncClient, wechat_side: StandinConfig, received: Received
) -> None:
    query, _ = build_push(wechat_side, *popup())

    answer = await client.post("/wechat/push", params=query, content=b"\xff\xfe not a push")

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MALFORMED_REQUEST"
    assert received == []


async def test_a_push_whose_handling_fails_is_not_marked_and_a_retry_is_handled(
    client: httpx.AsyncClient,
    wechat_side: StandinConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handled: list[str] = []

    def flaky(name: str) -> Callable[[str, list[dict[str, str]]], Awaitable[None]]:
        async def run(openid: str, items: list[dict[str, str]]) -> None:
            if not handled:
                handled.append("failed")
                raise RuntimeError("database went away")
            handled.append("ok")

        return run

    monkeypatch.setattr(wechat_push, "_handler", flaky)
    now = int(time.time())

    first, again = (build_push(wechat_side, *popup(), timestamp=now) for _ in range(2))

    failed = await client.post("/wechat/push", params=first[0], content=first[1])
    retried = await client.post("/wechat/push", params=again[0], content=again[1])

    assert failed.status_code == 500
    assert retried.text == "success"
    assert handled == ["failed", "ok"]


async def test_a_popup_pushed_by_the_standin_reaches_the_acceptance_ledger(
    server: tuple[str, Settings], standin: str
) -> None:
    from backend.models.notifications import SubscriptionLedger
    from backend.models.veterans import WechatAccount

    account = await WechatAccount.create(openid="o-ledger-veteran")
    async with httpx.AsyncClient(base_url=standin) as phone:
        await phone.post(
            "/__standin__/subscribe",
            json={"openid": account.openid, "templates": {TEMPLATE: "accept"}},
        )
        for _ in range(100):
            pushes = (await phone.get("/__standin__/pushes")).json()["pushes"]
            if pushes and pushes[-1]["status"] != "pending":
                break
            await asyncio.sleep(0.02)

    ledger = await SubscriptionLedger.get(account_id=account.id, template_id=TEMPLATE)
    assert pushes[-1]["status"] == 200
    assert ledger.remaining == 1
