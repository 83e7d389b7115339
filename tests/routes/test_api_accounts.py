"""Login, privacy consent, binding and /me over real HTTP, with the WeChat stand-in as the phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from backend.crypto import token_digest
from backend.models import (
    ApiToken,
    AuditLog,
    BindingEvent,
    BindingRequest,
    Veteran,
    WechatAccount,
)
from backend.services import accounts
from backend.settings import Settings
from tests.factories import fake_id_number, make_region_tree, make_staff, make_veteran

Server = tuple[str, Settings]


class Phone:
    """The mini-program's side: wx.login codes, getPhoneNumber codes and our API."""

    def __init__(self, client: httpx.AsyncClient, standin: str, openid: str) -> None:
        self.client, self.standin, self.openid = client, standin, openid
        self.token = ""

    async def login_code(self) -> str:
        async with httpx.AsyncClient(base_url=self.standin) as wechat:
            answer = await wechat.post("/__standin__/login-code", json={"openid": self.openid})
        return str(answer.json()["code"])

    async def phone_code(self, phone: str, country_code: str = "86") -> str:
        body = {"openid": self.openid, "phone": phone, "country_code": country_code}
        async with httpx.AsyncClient(base_url=self.standin) as wechat:
            answer = await wechat.post("/__standin__/phone-code", json=body)
        return str(answer.json()["code"])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def login(self) -> httpx.Response:
        response = await self.client.post(
            "/api/v1/sessions", json={"code": await self.login_code()}
        )
        if response.status_code == 201:
            self.token = response.json()["token"]
        return response

    async def accept_privacy(self, version: str = "2026-01") -> httpx.Response:
        return await self.client.post(
            "/api/v1/privacy-consents", json={"version": version}, headers=self.auth
        )

    async def bind(self, name: str, id_number: str, phone: str) -> httpx.Response:
        body = {"name": name, "id_number": id_number, "phone_code": await self.phone_code(phone)}
        return await self.client.post("/api/v1/bindings", json=body, headers=self.auth)

    async def me(self) -> httpx.Response:
        return await self.client.get("/api/v1/me", headers=self.auth)


@pytest.fixture
async def phone(client: httpx.AsyncClient, standin: str) -> Phone:
    await make_region_tree()
    return Phone(client, standin, "o-veteran-one")


async def ready_phone(phone: Phone) -> Phone:
    assert (await phone.login()).status_code == 201
    assert (await phone.accept_privacy()).status_code == 200
    return phone


# -- login --------------------------------------------------------------------------------


async def test_first_login_gives_our_own_token_and_stores_only_its_hash(phone: Phone) -> None:
    response = await phone.login()

    assert response.status_code == 201
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["privacy_accepted"] is False
    assert body["privacy_version"] == "2026-01"
    assert body["bound"] is False
    assert "session_key" not in response.text
    account = await WechatAccount.get(openid="o-veteran-one")
    stored = await ApiToken.get(account=account)
    assert stored.id == token_digest(body["token"])
    assert body["token"] not in stored.id


async def test_second_login_reuses_the_account(phone: Phone) -> None:
    await phone.login()
    await phone.login()

    assert await WechatAccount.filter(openid="o-veteran-one").count() == 1
    assert await ApiToken.all().count() == 2


async def test_reused_login_code_asks_for_a_new_wx_login(phone: Phone) -> None:
    code = await phone.login_code()
    first = await phone.client.post("/api/v1/sessions", json={"code": code})

    second = await phone.client.post("/api/v1/sessions", json={"code": code})

    assert first.status_code == 201
    assert second.status_code == 400
    assert second.json()["error"]["code"] == "LOGIN_CODE_INVALID"
    assert second.json()["error"]["message"] == "登录凭证已失效，请重新登录。"


async def test_login_while_wechat_is_busy_says_try_later(phone: Phone) -> None:
    async with httpx.AsyncClient(base_url=phone.standin) as wechat:
        await wechat.post(
            "/__standin__/faults", json={"path": "/sns/jscode2session", "errcode": -1}
        )

    response = await phone.login()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "WECHAT_BUSY"
    assert await WechatAccount.all().count() == 0


async def test_login_code_with_odd_characters_is_refused_before_wechat(phone: Phone) -> None:
    response = await phone.client.post("/api/v1/sessions", json={"code": "abc<script>"})

    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"]["code"] == "格式不正确"


async def test_login_with_unknown_field_is_refused(phone: Phone) -> None:
    body = {"code": await phone.login_code(), "openid": "spoofed"}

    response = await phone.client.post("/api/v1/sessions", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["details"]["fields"]["openid"] == "不允许的字段"
    assert await WechatAccount.all().count() == 0


async def test_logins_from_one_address_are_throttled(
    phone: Phone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts, "LOGIN_ATTEMPTS_PER_MINUTE_PER_ADDRESS", 2)
    await phone.login()
    await phone.login()

    response = await phone.login()

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"


async def test_me_without_a_token_is_unauthenticated(phone: Phone) -> None:
    response = await phone.client.get("/api/v1/me")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_expired_token_is_unauthenticated(phone: Phone) -> None:
    await phone.login()
    await ApiToken.all().update(expires_at=datetime.now(UTC) - timedelta(seconds=1))

    response = await phone.me()

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_token_in_a_wrong_scheme_is_unauthenticated(phone: Phone) -> None:
    await phone.login()

    response = await phone.client.get("/api/v1/me", headers={"Authorization": phone.token})

    assert response.status_code == 401


async def test_logout_revokes_the_token(phone: Phone) -> None:
    await phone.login()

    response = await phone.client.delete("/api/v1/sessions/current", headers=phone.auth)

    assert response.status_code == 204
    assert (await phone.me()).status_code == 401
    assert await ApiToken.filter(revoked_at__isnull=False).count() == 1


# -- privacy notice -------------------------------------------------------------------------


async def test_privacy_consent_records_version_time_and_audit(phone: Phone) -> None:
    await phone.login()

    response = await phone.accept_privacy()

    assert response.status_code == 200
    assert response.json()["privacy_version"] == "2026-01"
    account = await WechatAccount.get(openid="o-veteran-one")
    assert account.privacy_version == "2026-01"
    assert account.privacy_accepted_at is not None
    assert await AuditLog.filter(action="privacy.accepted", actor_id=account.id).exists()


async def test_privacy_consent_for_an_old_version_is_refused(phone: Phone) -> None:
    await phone.login()

    response = await phone.accept_privacy("2025-01")

    assert response.status_code == 422
    assert response.json()["error"]["details"]["current_version"] == "2026-01"
    assert (await WechatAccount.get(openid="o-veteran-one")).privacy_version is None


async def test_binding_before_the_privacy_notice_is_refused(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(101), phone="13900000101")
    await phone.login()

    response = await phone.bind(veteran.name, fake_id_number(101), "13900000101")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PRIVACY_NOT_ACCEPTED"
    assert (await WechatAccount.get(openid="o-veteran-one")).veteran_id is None


# -- binding --------------------------------------------------------------------------------


async def test_matching_phone_binds_at_once_and_me_shows_masked_numbers(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(102), phone="13900000102")
    await ready_phone(phone)

    response = await phone.bind(veteran.name, fake_id_number(102).lower(), "13900000102")

    assert response.status_code == 201
    assert response.json() == {"status": "bound", "message": "绑定成功。"}
    me = (await phone.me()).json()
    assert me["binding"] == "bound"
    assert me["veteran"]["id_masked"] == "1401**********" + fake_id_number(102)[-4:]
    assert me["veteran"]["phone_masked"] == "139****0102"
    assert me["veteran"]["county_name"] == "小店区"
    assert me["veteran"]["status_label"] == "正常"
    assert fake_id_number(102) not in str(me)
    account = await WechatAccount.get(openid="o-veteran-one")
    assert account.veteran_id == veteran.id
    assert await BindingEvent.filter(action="bound", veteran_id=veteran.id).count() == 1
    assert await AuditLog.filter(action="binding.bound", object_id=str(veteran.id)).exists()


async def test_name_with_spaces_and_other_middle_dot_still_matches(phone: Phone) -> None:
    veteran = await make_veteran(
        name="阿不都·热合曼", id_number=fake_id_number(103), phone="13900000103"
    )
    await ready_phone(phone)

    response = await phone.bind(" 阿不都•热合曼 ", fake_id_number(103), "13900000103")

    assert response.status_code == 201
    assert (await WechatAccount.get(openid="o-veteran-one")).veteran_id == veteran.id


async def test_every_mismatch_gets_one_and_the_same_answer(
    client: httpx.AsyncClient, standin: str
) -> None:
    await make_region_tree()
    inactive = await make_veteran(
        id_number=fake_id_number(104), phone="13900000104", status="deceased"
    )
    taken = await make_veteran(id_number=fake_id_number(105), phone="13900000105")
    named = await make_veteran(id_number=fake_id_number(106), phone="13900000106")
    owner = await ready_phone(Phone(client, standin, "o-owner"))
    assert (await owner.bind(taken.name, fake_id_number(105), "13900000105")).status_code == 201
    attempts = [
        ("某某", fake_id_number(199), "13900000199"),  # nobody on the roster has this ID
        ("别人", fake_id_number(106), "13900000106"),  # wrong name
        (inactive.name, fake_id_number(104), "13900000104"),  # roster entry not active
        (taken.name, fake_id_number(105), "13900000105"),  # bound to another account
    ]

    answers = []
    for i, (name, id_number, number) in enumerate(attempts):
        guesser = await ready_phone(Phone(client, standin, f"o-guesser-{i}"))
        answers.append(await guesser.bind(name, id_number, number))

    assert {a.status_code for a in answers} == {422}
    assert len({a.text for a in answers}) == 1
    assert answers[0].json()["error"]["code"] == "BINDING_MISMATCH"
    assert await WechatAccount.filter(veteran_id__isnull=False).count() == 1
    assert named.id not in await WechatAccount.all().values_list("veteran_id", flat=True)
    assert await AuditLog.filter(action="binding.refused").count() == 4


async def test_different_phone_waits_for_a_clerk_at_the_station(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(107), phone="13900000107")
    await ready_phone(phone)

    response = await phone.bind(veteran.name, fake_id_number(107), "13700000000")

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert "身份证" in response.json()["message"]
    assert (await phone.me()).json()["binding"] == "pending"
    request = await BindingRequest.get(veteran_id=veteran.id)
    assert request.status == "pending"
    assert request.phone_masked == "137****0000"
    assert (await WechatAccount.get(openid="o-veteran-one")).veteran_id is None


async def test_roster_without_phone_waits_for_a_clerk(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(108), phone=None)
    await ready_phone(phone)

    response = await phone.bind(veteran.name, fake_id_number(108), "13900000108")

    assert response.status_code == 202
    assert await BindingRequest.filter(veteran_id=veteran.id, status="pending").count() == 1


async def test_malformed_id_number_is_a_field_error(phone: Phone) -> None:
    await ready_phone(phone)

    response = await phone.bind("张三", "14010519800517001", "13900000000")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    assert "18位" in response.json()["error"]["details"]["fields"]["id_number"]


async def test_phone_code_of_another_user_is_refused(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(109), phone="13900000109")
    await ready_phone(phone)
    other = Phone(phone.client, phone.standin, "o-someone-else")
    body = {
        "name": veteran.name,
        "id_number": fake_id_number(109),
        "phone_code": await other.phone_code("13900000109"),
    }

    response = await phone.client.post("/api/v1/bindings", json=body, headers=phone.auth)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "PHONE_CODE_INVALID"
    assert (await WechatAccount.get(openid="o-veteran-one")).veteran_id is None


async def test_bound_account_cannot_bind_again(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(110), phone="13900000110")
    await ready_phone(phone)
    await phone.bind(veteran.name, fake_id_number(110), "13900000110")

    response = await phone.bind(veteran.name, fake_id_number(110), "13900000110")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ALREADY_BOUND"


async def test_binding_attempts_are_throttled_per_account(phone: Phone) -> None:
    await ready_phone(phone)
    for n in range(5):
        assert (await phone.bind("某某", fake_id_number(120 + n), "13900000000")).status_code == 422

    response = await phone.bind("某某", fake_id_number(130), "13900000000")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"


async def test_binding_attempts_are_throttled_per_id_number_across_accounts(
    client: httpx.AsyncClient, standin: str
) -> None:
    await make_region_tree()
    veteran = await make_veteran(id_number=fake_id_number(111), phone="13900000111")
    answers = []
    for i in range(6):
        guesser = await ready_phone(Phone(client, standin, f"o-guess-{i}"))
        answers.append(await guesser.bind("猜名字", fake_id_number(111), "13900000111"))

    assert [a.status_code for a in answers] == [422] * 5 + [429]
    owner = await ready_phone(Phone(client, standin, "o-owner"))
    response = await owner.bind(veteran.name, fake_id_number(111), "13900000111")
    assert response.status_code == 429


async def test_unbind_by_staff_revokes_the_token(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(112), phone="13900000112")
    await ready_phone(phone)
    await phone.bind(veteran.name, fake_id_number(112), "13900000112")
    clerk = await make_staff()

    await accounts.unbind(veteran.id, clerk, "本人更换手机")

    assert (await phone.me()).status_code == 401
    assert (await Veteran.get(id=veteran.id).prefetch_related("account")).account is None


async def test_me_of_a_bound_veteran_carries_this_years_registration(phone: Phone) -> None:
    veteran = await make_veteran(id_number=fake_id_number(113), phone="13900000113")
    await ready_phone(phone)
    await phone.bind(veteran.name, fake_id_number(113), "13900000113")

    response = await phone.me()

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "binding",
        "privacy_accepted",
        "privacy_version_accepted",
        "privacy_version",
        "veteran",
        "registration",
    }
    assert body["privacy_accepted"] is True
    assert body["veteran"]["name"] == veteran.name
    assert body["registration"]["must_file"] is True
    assert body["registration"]["status"] is None
    assert body["registration"]["report_year"] >= 2025


async def test_me_of_an_unbound_account_shows_no_veteran(phone: Phone) -> None:
    await phone.login()

    response = await phone.me()

    assert response.status_code == 200
    assert response.json()["binding"] == "unbound"
    assert response.json()["veteran"] is None
    assert response.json()["registration"] is None
