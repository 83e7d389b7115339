"""Every errcode wechat-api.md documents maps, on purpose, to one typed error of the client."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable

import httpx
import pytest

from backend.errors import (
    AppError,
    WechatBusy,
    WechatCodeInvalid,
    WechatConfigError,
    WechatError,
    WechatPhoneCodeInvalid,
    WechatRefused,
)
from backend.store import RedisStore
from backend.wechat.client import WechatClient
from tests.wechat.conftest import MakeClient
from tests.wechat.helpers import calls, fault

Call = Callable[[WechatClient], Awaitable[object]]

CALLS: dict[str, tuple[str, Call]] = {
    "code2session": ("/sns/jscode2session", lambda w: w.code2session("any")),
    "stable_token": ("/cgi-bin/stable_token", lambda w: w.access_token(force=True)),
    "phone": ("/wxa/business/getuserphonenumber", lambda w: w.phone_number("any", "o-any")),
    "send": ("/cgi-bin/message/subscribe/send", lambda w: w.send_subscribe({"touser": "o"})),
    "sec_check": ("/wxa/msg_sec_check", lambda w: w.msg_sec_check("o-any", "text")),
    "wxacode": ("/wxa/getwxacodeunlimit", lambda w: w.wxacode("s", "pages/index/index")),
}

# (call, errcode, error class) for each errcode in reference/wechat-api.md
DOCUMENTED: list[tuple[str, int, type[WechatError]]] = [
    ("code2session", 40029, WechatCodeInvalid),
    ("code2session", 40163, WechatCodeInvalid),
    ("code2session", 45011, WechatRefused),
    ("code2session", 40226, WechatRefused),
    ("code2session", -1, WechatBusy),
    ("stable_token", 40001, WechatConfigError),
    ("stable_token", 40013, WechatConfigError),
    ("stable_token", 40125, WechatConfigError),
    ("stable_token", 40164, WechatConfigError),
    ("stable_token", 45009, WechatRefused),
    ("stable_token", -1, WechatBusy),
    ("phone", 40029, WechatPhoneCodeInvalid),
    ("phone", 45011, WechatRefused),
    ("phone", -1, WechatBusy),
    ("send", 40003, WechatRefused),
    ("send", 40037, WechatRefused),
    ("send", 43101, WechatRefused),
    ("send", 47003, WechatRefused),
    ("send", 41030, WechatRefused),
    ("send", -1, WechatBusy),
    ("sec_check", 40003, WechatRefused),
    ("sec_check", 43104, WechatRefused),
    ("sec_check", 40129, WechatRefused),
    ("sec_check", 44002, WechatRefused),
    ("sec_check", 47001, WechatRefused),
    ("sec_check", -1, WechatBusy),
    ("wxacode", 40169, WechatRefused),
    ("wxacode", 41030, WechatRefused),
    ("wxacode", 40097, WechatRefused),
    ("wxacode", 45009, WechatRefused),
    ("wxacode", -1, WechatBusy),
]


@pytest.mark.parametrize(("call", "errcode", "expected"), DOCUMENTED)
async def test_each_documented_errcode_maps_to_its_typed_error(
    wechat: WechatClient,
    control: httpx.AsyncClient,
    call: str,
    errcode: int,
    expected: type[WechatError],
) -> None:
    path, invoke = CALLS[call]
    await fault(control, path, errcode=errcode)

    with pytest.raises(WechatError) as caught:
        await invoke(wechat)

    assert type(caught.value) is expected
    assert caught.value.errcode == errcode
    body = caught.value.body()["error"]
    assert body["details"] == {"errcode": errcode}
    assert body["message"]  # a Chinese sentence the mini-program can show as it is


def test_every_wechat_error_has_its_own_stable_code_and_status() -> None:
    classes = [*WechatError.__subclasses__(), WechatPhoneCodeInvalid]

    assert all(issubclass(c, AppError) and 400 <= c.status < 600 for c in classes)
    assert len({c.code for c in classes}) == len(classes)


async def test_two_clients_on_redis_fetch_the_stable_token_once(
    make_client: MakeClient, control: httpx.AsyncClient
) -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    store = RedisStore("redis://127.0.0.1:6379/15", prefix=f"test-{uuid.uuid4().hex[:8]}:")
    first, second = await make_client(store), await make_client(store)

    tokens = {await first.access_token(), await second.access_token()}

    assert len(tokens) == 1
    assert await calls(control, "/cgi-bin/stable_token") == 1
    await store.delete("wechat:stable_token:" + first._settings.wechat_appid)
    await store.close()
