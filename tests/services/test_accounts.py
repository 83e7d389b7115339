"""Binding rules without HTTP: races, the clerk's confirmation, unbinding and staff scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from backend import context
from backend.context import Context
from backend.errors import (
    BindingMismatch,
    InvalidTransition,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from backend.models import (
    ApiToken,
    AuditLog,
    BindingEvent,
    BindingRequest,
    TransitionLog,
    Veteran,
    WechatAccount,
)
from backend.services import accounts
from backend.settings import Settings
from tests.factories import (
    CITY,
    OTHER_COUNTY,
    fake_id_number,
    make_region_tree,
    make_staff,
    make_veteran,
)


@pytest.fixture
async def live(db_ready: Settings, standin: str) -> AsyncIterator[Context]:
    """The service context talking to the WeChat stand-in, with Shanxi's regions seeded."""
    ctx = context.install(context.build(replace(db_ready, wechat_api_base=standin)))
    await make_region_tree()
    yield ctx
    await ctx.wechat.close()
    await ctx.store.close()


async def phone_code(standin: str, openid: str, phone: str) -> str:
    async with httpx.AsyncClient(base_url=standin) as wechat:
        answer = await wechat.post(
            "/__standin__/phone-code", json={"openid": openid, "phone": phone}
        )
    return str(answer.json()["code"])


async def make_account(openid: str) -> WechatAccount:
    return await WechatAccount.create(openid=openid, privacy_version="2026-01")


async def pending_request(standin: str, veteran: Veteran, id_number: str) -> BindingRequest:
    """An account whose WeChat phone differs from the roster's, so a clerk must decide."""
    account = await make_account(f"o-pending-{veteran.id}")
    code = await phone_code(standin, account.openid, "13700000000")
    assert await accounts.bind(account, veteran.name, id_number, code) == "pending"
    return await BindingRequest.get(account=account)


def test_names_compare_without_spaces_width_or_dot_variants() -> None:
    assert accounts.normalize_name(" 阿不都 • 热合曼 ") == accounts.normalize_name("阿不都·热合曼")
    assert accounts.normalize_name("ＡＢＣ") == "ABC"
    assert accounts.normalize_name("张三") != accounts.normalize_name("张 四")


async def test_two_accounts_binding_one_veteran_at_once_get_one_binding(
    live: Context, standin: str
) -> None:
    veteran = await make_veteran(id_number=fake_id_number(201), phone="13900000201")
    first, second = await make_account("o-first"), await make_account("o-second")
    codes = [await phone_code(standin, a.openid, "13900000201") for a in (first, second)]

    results = await asyncio.gather(
        accounts.bind(first, veteran.name, fake_id_number(201), codes[0]),
        accounts.bind(second, veteran.name, fake_id_number(201), codes[1]),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["BindingMismatch", "str"], results
    assert await WechatAccount.filter(veteran_id=veteran.id).count() == 1
    assert await BindingEvent.filter(veteran_id=veteran.id, action="bound").count() == 1


async def test_a_double_tap_on_bind_binds_once(live: Context, standin: str) -> None:
    veteran = await make_veteran(id_number=fake_id_number(208), phone="13900000208")
    account = await make_account("o-double-tap")
    codes = [await phone_code(standin, account.openid, "13900000208") for _ in range(2)]

    results = await asyncio.gather(
        *(accounts.bind(account, veteran.name, fake_id_number(208), code) for code in codes),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["AlreadyBound", "str"], results
    assert await BindingEvent.filter(veteran_id=veteran.id, action="bound").count() == 1


async def test_unique_column_decides_a_race_the_checks_missed(live: Context) -> None:
    veteran = await make_veteran(id_number=fake_id_number(202))
    winner, loser = await make_account("o-winner"), await make_account("o-loser")
    await WechatAccount.filter(id=winner.id).update(veteran_id=veteran.id)

    with pytest.raises(BindingMismatch):
        await accounts._bind_now(loser, veteran, "", "")

    assert (await WechatAccount.get(id=loser.id)).veteran_id is None
    assert not await BindingEvent.filter(account_id=loser.id).exists()


async def test_binding_attempts_are_throttled_per_client_address(live: Context) -> None:
    limit = live.settings.bind_attempts_per_hour * accounts.ADDRESS_FACTOR
    tries = 0
    for n in range(limit // live.settings.bind_attempts_per_hour):
        account = await make_account(f"o-same-wifi-{n}")
        for _ in range(live.settings.bind_attempts_per_hour):
            with pytest.raises(ValidationFailed):
                await accounts.bind(account, "某某", "123", "code", ip="10.0.0.7")
            tries += 1
    fresh = await make_account("o-same-wifi-last")

    with pytest.raises(RateLimited):
        await accounts.bind(fresh, "某某", "123", "code", ip="10.0.0.7")
    assert tries == limit


async def test_clerk_confirms_a_pending_binding_in_person(live: Context, standin: str) -> None:
    veteran = await make_veteran(id_number=fake_id_number(203), phone="13900000203")
    request = await pending_request(standin, veteran, fake_id_number(203))
    clerk = await make_staff()

    await accounts.confirm_binding(request.id, clerk, "已核验身份证原件")

    account = await WechatAccount.get(id=request.account_id)  # type: ignore[attr-defined]
    assert account.veteran_id == veteran.id
    assert account.bound_at is not None
    request = await BindingRequest.get(id=request.id)
    assert request.status == "confirmed"
    assert request.decided_by_id == clerk.id  # type: ignore[attr-defined]
    event = await BindingEvent.get(action="confirmed")
    assert (event.staff_id, event.reason) == (clerk.id, "已核验身份证原件")  # type: ignore[attr-defined]
    assert await TransitionLog.filter(workflow="binding_request", to_state="confirmed").exists()
    assert await AuditLog.filter(action="binding.confirmed", actor_id=clerk.id).exists()


async def test_confirming_one_request_closes_the_others_for_that_veteran(
    live: Context, standin: str
) -> None:
    veteran = await make_veteran(id_number=fake_id_number(209), phone="13900000209")
    first = await pending_request(standin, veteran, fake_id_number(209))
    other = await make_account("o-second-phone")
    code = await phone_code(standin, other.openid, "13700000001")
    assert await accounts.bind(other, veteran.name, fake_id_number(209), code) == "pending"

    await accounts.confirm_binding(first.id, await make_staff(), "已核验身份证原件")

    second = await BindingRequest.get(account=other)
    assert second.status == "cancelled"
    assert await accounts.pending_binding_requests(await make_staff()) == []


async def test_city_staff_may_confirm_for_their_counties(live: Context, standin: str) -> None:
    veteran = await make_veteran(id_number=fake_id_number(204), phone="13900000204")
    request = await pending_request(standin, veteran, fake_id_number(204))
    city_lead = await make_staff(CITY, role="lead")

    await accounts.confirm_binding(request.id, city_lead, "市局现场核验")

    assert (await BindingRequest.get(id=request.id)).status == "confirmed"


async def test_staff_of_another_county_see_not_found(live: Context, standin: str) -> None:
    veteran = await make_veteran(id_number=fake_id_number(205), phone="13900000205")
    request = await pending_request(standin, veteran, fake_id_number(205))
    stranger = await make_staff(OTHER_COUNTY)

    with pytest.raises(NotFound):
        await accounts.confirm_binding(request.id, stranger, "越权")
    with pytest.raises(NotFound):
        await accounts.reject_binding(request.id, stranger, "越权")
    with pytest.raises(NotFound):
        await accounts.unbind(veteran.id, stranger, "越权")

    assert (await BindingRequest.get(id=request.id)).status == "pending"
    assert await accounts.pending_binding_requests(stranger) == []


async def test_a_decided_request_cannot_be_decided_again(live: Context, standin: str) -> None:
    veteran = await make_veteran(id_number=fake_id_number(206), phone="13900000206")
    request = await pending_request(standin, veteran, fake_id_number(206))
    clerk = await make_staff()
    await accounts.reject_binding(request.id, clerk, "本人未到场")

    with pytest.raises(InvalidTransition):
        await accounts.confirm_binding(request.id, clerk, "再次确认")

    assert (await BindingRequest.get(id=request.id)).status == "rejected"
    assert (await WechatAccount.get(id=request.account_id)).veteran_id is None  # type: ignore[attr-defined]
    assert await BindingEvent.filter(action="rejected", reason="本人未到场").exists()


async def test_a_veteran_binding_themselves_closes_the_waiting_request(
    live: Context, standin: str
) -> None:
    veteran = await make_veteran(id_number=fake_id_number(207), phone="13900000207")
    request = await pending_request(standin, veteran, fake_id_number(207))
    owner = await make_account("o-owner")
    code = await phone_code(standin, owner.openid, "13900000207")
    assert await accounts.bind(owner, veteran.name, fake_id_number(207), code) == "bound"
    clerk = await make_staff()

    with pytest.raises(InvalidTransition):
        await accounts.confirm_binding(request.id, clerk, "核验")

    assert (await BindingRequest.get(id=request.id)).status == "cancelled"
    assert await WechatAccount.filter(veteran_id=veteran.id).count() == 1


async def test_unbind_needs_a_reason(live: Context) -> None:
    veteran = await make_veteran()
    clerk = await make_staff()

    with pytest.raises(ValidationFailed) as refused:
        await accounts.unbind(veteran.id, clerk, "   ")

    assert refused.value.details == {"fields": {"reason": "请填写原因"}}


async def test_unbind_frees_both_sides_and_revokes_every_token(live: Context) -> None:
    veteran = await make_veteran()
    account = await make_account("o-bound")
    await WechatAccount.filter(id=account.id).update(veteran_id=veteran.id)
    expiry = datetime.now(UTC) + timedelta(hours=1)
    for n in range(2):
        await ApiToken.create(id=f"{n:064d}", account=account, expires_at=expiry)
    clerk = await make_staff()

    await accounts.unbind(veteran.id, clerk, "账号被他人使用")

    assert (await WechatAccount.get(id=account.id)).veteran_id is None
    assert await ApiToken.filter(account=account, revoked_at__isnull=True).count() == 0
    event = await BindingEvent.get(action="unbound")
    assert (event.reason, event.staff_id) == ("账号被他人使用", clerk.id)  # type: ignore[attr-defined]
    assert await AuditLog.filter(action="binding.unbound", object_id=str(veteran.id)).exists()
    with pytest.raises(InvalidTransition):
        await accounts.unbind(veteran.id, clerk, "再解一次")
