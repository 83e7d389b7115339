"""The async WeChat client against the real stand-in on a loopback port."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from backend.errors import (
    WechatBadAnswer,
    WechatBusy,
    WechatCodeInvalid,
    WechatConfigError,
    WechatPhoneCodeInvalid,
    WechatRefused,
    WechatTimeout,
)
from backend.store import DatabaseStore
from backend.wechat.client import WechatClient
from backend.wechat.standin import FIRST_MSGID
from tests.wechat.conftest import MakeClient
from tests.wechat.helpers import calls, fault, login

SEND = "/cgi-bin/message/subscribe/send"
STABLE = "/cgi-bin/stable_token"
TEMPLATE = "DEMO-registration-result-0001"


def message(openid: str, **data: str) -> dict[str, object]:
    values = {
        "thing1": "2026年度登记",
        "phrase2": "已通过",
        "time3": "2027年1月5日 09:30",
        "thing4": "请按时登记",
    }
    values.update(data)
    return {
        "touser": openid,
        "template_id": TEMPLATE,
        "page": "pages/index/index",
        "data": {key: {"value": value} for key, value in values.items()},
        "miniprogram_state": "formal",
        "lang": "zh_CN",
    }


async def accepted_user(control: httpx.AsyncClient, wechat: WechatClient, times: int = 1) -> str:
    """A user who logged in and accepted the template `times` times."""
    code, openid = await login(control)
    await wechat.code2session(code)
    for _ in range(times):
        await control.post(
            "/__standin__/subscribe", json={"openid": openid, "templates": {TEMPLATE: "accept"}}
        )
    return openid


# -- login -----------------------------------------------------------------------------------


async def test_a_login_code_gives_the_openid_and_a_session_key(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    code, openid = await login(control)

    session = await wechat.code2session(code)

    assert session.openid == openid
    assert len(session.session_key) == 24
    assert session.unionid is None
    assert session.session_key not in repr(session)


async def test_a_login_code_used_twice_is_refused_with_40163(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    code, _ = await login(control)
    await wechat.code2session(code)

    with pytest.raises(WechatCodeInvalid) as caught:
        await wechat.code2session(code)

    assert caught.value.errcode == 40163
    assert caught.value.code == "LOGIN_CODE_INVALID"
    assert caught.value.status == 400


async def test_an_unknown_or_expired_login_code_is_refused_with_40029(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    with pytest.raises(WechatCodeInvalid) as unknown:
        await wechat.code2session("never-issued")
    await control.post("/__standin__/config", json={"code_ttl": 0})
    code, _ = await login(control)
    await asyncio.sleep(0.01)
    with pytest.raises(WechatCodeInvalid) as expired:
        await wechat.code2session(code)

    assert unknown.value.errcode == 40029
    assert expired.value.errcode == 40029


async def test_a_busy_wechat_is_reported_as_busy(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    code, _ = await login(control)
    await fault(control, "/sns/jscode2session", errcode=-1)

    with pytest.raises(WechatBusy):
        await wechat.code2session(code)
    session = await wechat.code2session(code)

    assert session.openid


# -- the access token ------------------------------------------------------------------------


async def test_two_clients_on_one_store_fetch_the_stable_token_once(
    make_client: MakeClient, control: httpx.AsyncClient
) -> None:
    store = DatabaseStore(prefix="shared:")
    first, second = await make_client(store), await make_client(store)

    tokens = await asyncio.gather(
        *(client.access_token() for client in (first, second) for _ in range(5))
    )

    assert len(set(tokens)) == 1
    assert await calls(control, STABLE) == 1


async def test_the_stable_token_is_kept_no_longer_than_expires_in_says(
    make_client: MakeClient, control: httpx.AsyncClient
) -> None:
    await control.post("/__standin__/config", json={"token_ttl": 2})
    wechat = await make_client()
    first = await wechat.access_token()
    await asyncio.sleep(1.1)

    second = await wechat.access_token()

    assert second != first
    assert await calls(control, STABLE) == 2


async def test_a_wrong_secret_is_a_configuration_error(make_client: MakeClient) -> None:
    wechat = await make_client(wechat_secret="not-the-secret")

    with pytest.raises(WechatConfigError) as caught:
        await wechat.access_token()

    assert caught.value.errcode == 40001


async def test_forcing_a_new_token_twice_within_30_seconds_is_refused(
    wechat: WechatClient,
) -> None:
    first = await wechat.access_token(force=True)

    with pytest.raises(WechatRefused) as caught:
        await wechat.access_token(force=True)

    assert caught.value.errcode == 45009
    assert await wechat.access_token() == first


async def test_a_40001_renews_the_token_once_and_the_send_goes_through(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)
    old = await wechat.access_token()
    await fault(control, SEND, errcode=40001)

    msgid = await wechat.send_subscribe(message(openid))

    assert msgid
    assert await calls(control, SEND) == 2
    assert await wechat.access_token() != old


async def test_a_token_refused_again_after_renewal_is_not_retried_in_a_loop(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)
    await wechat.access_token()
    await fault(control, SEND, errcode=40001, times=5)

    with pytest.raises(WechatRefused) as caught:
        await wechat.send_subscribe(message(openid))

    assert caught.value.errcode == 40001
    assert await calls(control, SEND) == 2
    # one first fetch, then one plain ask and one forced renewal: never more
    assert await calls(control, STABLE) == 3


async def test_an_expired_token_is_renewed_without_forcing(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)
    old = await wechat.access_token()
    await control.post("/__standin__/tokens/expire")

    await wechat.send_subscribe(message(openid))
    # a forced renewal now would be refused (30 s apart) only if one had been spent
    forced = await wechat.access_token(force=True)

    assert forced != old
    assert await calls(control, SEND) == 2


async def test_a_token_renewed_by_another_process_is_used_without_fetching(
    make_client: MakeClient, control: httpx.AsyncClient
) -> None:
    store = DatabaseStore(prefix="renew:")
    first, second = await make_client(store), await make_client(store)
    openid = await accepted_user(control, first)
    stale = await first.access_token()
    await first.access_token(force=True)  # "another process" renewed and stored a new one
    before = await calls(control, STABLE)

    renewed = await second._renew_after_failure(stale)

    assert renewed != stale
    assert await calls(control, STABLE) == before
    assert await second.send_subscribe(message(openid))


# -- phone number ----------------------------------------------------------------------------


async def test_a_phone_code_gives_the_verified_number_with_a_text_country_code(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    _, openid = await login(control)
    answer = await control.post(
        "/__standin__/phone-code", json={"openid": openid, "phone": "13800000000"}
    )

    info = await wechat.phone_number(answer.json()["code"], openid)

    assert (info.phone_number, info.pure_phone_number, info.country_code) == (
        "13800000000",
        "13800000000",
        "86",
    )
    assert "13800000000" not in repr(info)


async def test_a_phone_code_of_another_user_or_used_twice_is_refused(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    _, openid = await login(control)
    code = (
        await control.post(
            "/__standin__/phone-code", json={"openid": openid, "phone": "13800000000"}
        )
    ).json()["code"]

    with pytest.raises(WechatPhoneCodeInvalid):
        await wechat.phone_number(code, "o-someone-else")
    await wechat.phone_number(code, openid)
    with pytest.raises(WechatPhoneCodeInvalid) as reused:
        await wechat.phone_number(code, openid)

    assert reused.value.code == "PHONE_CODE_INVALID"


async def test_a_phone_number_watermarked_for_another_app_is_refused(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    foreign = {
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": "13800000000",
            "purePhoneNumber": "13800000000",
            "countryCode": "86",
            "watermark": {"timestamp": 1700000000, "appid": "wx-another-app"},
        },
    }
    await fault(control, "/wxa/business/getuserphonenumber", body=foreign)

    with pytest.raises(WechatBadAnswer):
        await wechat.phone_number("any", "o-any")


async def test_the_encrypted_phone_form_decrypts_with_the_latest_session_key(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    code, openid = await login(control)
    session = await wechat.code2session(code)
    sealed = (
        await control.post(
            "/__standin__/encrypted-phone", json={"openid": openid, "phone": "13900000000"}
        )
    ).json()

    info = wechat.phone_from_encrypted_data(
        session.session_key, sealed["encryptedData"], sealed["iv"]
    )
    with pytest.raises(WechatPhoneCodeInvalid):
        wechat.phone_from_encrypted_data(
            "AAAAAAAAAAAAAAAAAAAAAA==", sealed["encryptedData"], sealed["iv"]
        )

    assert (info.pure_phone_number, info.country_code) == ("13900000000", "86")


# -- subscribe messages ----------------------------------------------------------------------


async def test_the_msgid_beyond_2_53_comes_back_exactly_as_text(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)

    msgid = await wechat.send_subscribe(message(openid))

    sent = (await control.get("/__standin__/sent")).json()["sent"]
    assert msgid == str(FIRST_MSGID)
    assert int(msgid) > 2**53
    assert sent[-1]["msgid"] == msgid


async def test_a_send_spends_one_acceptance_and_then_answers_43101(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat, times=2)

    await wechat.send_subscribe(message(openid))
    await wechat.send_subscribe(message(openid))
    with pytest.raises(WechatRefused) as caught:
        await wechat.send_subscribe(message(openid))

    assert caught.value.errcode == 43101


async def test_a_thing_value_over_20_characters_is_refused_with_47003_naming_the_field(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)

    with pytest.raises(WechatRefused) as caught:
        await wechat.send_subscribe(message(openid, thing1="一" * 21))

    assert caught.value.errcode == 47003
    assert "thing1" in caught.value.errmsg
    assert (await control.get("/__standin__/sent")).json()["sent"] == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("phrase2", "通过了审核啦啦"), ("time3", "明天上午"), ("thing4", "")],
)
async def test_values_breaking_their_type_rule_are_refused_with_47003(
    wechat: WechatClient, control: httpx.AsyncClient, field: str, value: str
) -> None:
    openid = await accepted_user(control, wechat)

    with pytest.raises(WechatRefused) as caught:
        await wechat.send_subscribe(message(openid, **{field: value}))

    assert caught.value.errcode == 47003
    assert field in caught.value.errmsg


async def test_an_unknown_openid_or_template_is_refused(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)

    with pytest.raises(WechatRefused) as stranger:
        await wechat.send_subscribe(message("o-never-logged-in"))
    with pytest.raises(WechatRefused) as template:
        await wechat.send_subscribe(message(openid) | {"template_id": "no-such-template"})

    assert (stranger.value.errcode, template.value.errcode) == (40003, 40037)


async def test_a_send_whose_answer_is_late_is_a_timeout_though_it_was_sent(
    make_client: MakeClient, control: httpx.AsyncClient
) -> None:
    wechat = await make_client(wechat_timeout=0.3)
    openid = await accepted_user(control, wechat)
    await wechat.access_token()
    await fault(control, SEND, delay=2)

    with pytest.raises(WechatTimeout) as caught:
        await wechat.send_subscribe(message(openid))

    assert caught.value.code == "WECHAT_TIMEOUT"
    assert len((await control.get("/__standin__/sent")).json()["sent"]) == 1


async def test_a_send_whose_connection_drops_is_a_timeout_not_busy(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    openid = await accepted_user(control, wechat)
    await wechat.access_token()
    await fault(control, SEND, drop=True)

    with pytest.raises(WechatTimeout):
        await wechat.send_subscribe(message(openid))

    assert len((await control.get("/__standin__/sent")).json()["sent"]) == 1


async def test_an_unreachable_wechat_is_busy_not_a_timeout(make_client: MakeClient) -> None:
    wechat = await make_client(wechat_api_base="http://127.0.0.1:9")

    with pytest.raises(WechatBusy) as caught:
        await wechat.access_token()

    assert not isinstance(caught.value, WechatTimeout)


# -- text check and mini-program code --------------------------------------------------------


async def test_the_text_check_verdict_comes_from_result_suggest(
    wechat: WechatClient, control: httpx.AsyncClient
) -> None:
    code, openid = await login(control)
    await wechat.code2session(code)

    assert await wechat.msg_sec_check(openid, "请问年度登记什么时候开始？") == "pass"
    assert await wechat.msg_sec_check(openid, "这是风险测试内容") == "risky"
    with pytest.raises(WechatRefused) as caught:
        await wechat.msg_sec_check(openid, "")
    assert caught.value.errcode == 44002


async def test_a_mini_program_code_is_an_image_and_a_failure_is_told_by_content_type(
    wechat: WechatClient,
) -> None:
    image = await wechat.wxacode("a1b2", "pages/checkin/index")

    with pytest.raises(WechatRefused) as unknown_page:
        await wechat.wxacode("a1b2", "pages/not/released")
    with pytest.raises(WechatRefused) as long_scene:
        await wechat.wxacode("x" * 33, "pages/checkin/index")

    assert image.startswith(b"\x89PNG")
    assert unknown_page.value.errcode == 41030
    assert long_scene.value.errcode == 40169
    assert await wechat.wxacode("a1b2", "pages/draft/index", "trial", check_path=False)
