"""Roster pages over real HTTP: masking, scope, the audited full ID view, unbinding, bindings."""

from __future__ import annotations

import datetime as dt

import httpx

from backend.models import ApiToken, AuditLog, BindingEvent, BindingRequest, WechatAccount
from tests.factories import (
    OTHER_COUNTY,
    PORTAL_PASSWORD,
    fake_id_number,
    make_region_tree,
    make_staff,
    make_veteran,
    portal_login,
)

NOW = dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)


async def _clerk(client: httpx.AsyncClient, region: str = "140105", role: str = "clerk") -> str:
    await make_region_tree()
    await make_staff(region, username="clerk1", password=PORTAL_PASSWORD, role=role)
    return await portal_login(client, "clerk1")


async def _bound(veteran_id: int, openid: str = "openid-1") -> WechatAccount:
    account = await WechatAccount.create(openid=openid, veteran_id=veteran_id, bound_at=NOW)
    await ApiToken.create(id="t" * 64, account=account, expires_at=NOW + dt.timedelta(days=99))
    return account


async def test_roster_list_shows_masked_numbers_only(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    id_number = fake_id_number(501)
    veteran = await make_veteran(id_number=id_number, phone="13912345678")

    response = await client.get("/portal/veterans")

    assert response.status_code == 200
    assert veteran.name in response.text
    assert veteran.id_masked in response.text
    assert id_number not in response.text
    assert "13912345678" not in response.text
    assert "139****5678" in response.text


async def test_roster_list_leaves_out_other_counties(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    mine = await make_veteran(name="本县人员")
    other = await make_veteran(name="外县人员", county_code=OTHER_COUNTY)

    response = await client.get("/portal/veterans")

    assert mine.name in response.text
    assert other.name not in response.text


async def test_filter_by_another_county_answers_not_found(client: httpx.AsyncClient) -> None:
    await _clerk(client)

    response = await client.get(f"/portal/veterans?county={OTHER_COUNTY}")

    assert response.status_code == 404
    assert "没有找到相关记录" in response.text


async def test_filters_by_binding_status_and_name(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    bound = await make_veteran(name="张已绑")
    await make_veteran(name="李未绑")
    await _bound(bound.id)

    only_bound = await client.get("/portal/veterans?bound=yes")
    only_unbound = await client.get("/portal/veterans?bound=no")
    by_name = await client.get("/portal/veterans", params={"q": "李"})

    assert "张已绑" in only_bound.text and "李未绑" not in only_bound.text
    assert "李未绑" in only_unbound.text and "张已绑" not in only_unbound.text
    assert "李未绑" in by_name.text and "张已绑" not in by_name.text


async def test_list_pages_with_a_keyset_cursor(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    made = [await make_veteran(name=f"分页{i:02d}") for i in range(5)]

    first = await client.get("/portal/veterans?limit=2")
    second = await client.get(f"/portal/veterans?limit=2&after={made[3].id}")

    assert "分页04" in first.text and "分页03" in first.text and "分页02" not in first.text
    assert f"after={made[3].id}" in first.text
    assert "分页02" in second.text and "分页01" in second.text and "分页04" not in second.text


async def test_stored_script_in_a_name_is_shown_escaped(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    veteran = await make_veteran(name='<script>alert("x")</script>😀')

    listing = await client.get("/portal/veterans")
    detail = await client.get(f"/portal/veterans/{veteran.id}")

    for page in (listing, detail):
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;😀" in page.text


async def test_detail_of_another_county_answers_not_found(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    other = await make_veteran(county_code=OTHER_COUNTY)

    response = await client.get(f"/portal/veterans/{other.id}")

    assert response.status_code == 404
    assert other.name not in response.text


async def test_city_staff_see_their_counties(client: httpx.AsyncClient) -> None:
    await _clerk(client, region="140100")
    veteran = await make_veteran()

    response = await client.get(f"/portal/veterans/{veteran.id}")

    assert response.status_code == 200
    assert veteran.name in response.text


async def test_full_id_view_is_shown_once_and_audited(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    id_number = fake_id_number(502)
    veteran = await make_veteran(id_number=id_number)

    response = await client.post(
        f"/portal/veterans/{veteran.id}/id-number", data={"csrf_token": token}
    )

    assert response.status_code == 200
    assert id_number in response.text
    assert response.headers["cache-control"] == "no-store"
    row = await AuditLog.get(action="veteran.id_viewed")
    assert row.object_type == "veteran" and row.object_id == str(veteran.id)
    assert row.actor_type == "staff" and row.ip == "127.0.0.1"
    assert id_number not in str(row.detail)


async def test_full_id_view_needs_the_csrf_token(client: httpx.AsyncClient) -> None:
    await _clerk(client)
    id_number = fake_id_number(503)
    veteran = await make_veteran(id_number=id_number)

    response = await client.post(f"/portal/veterans/{veteran.id}/id-number", data={})

    assert response.status_code == 403
    assert id_number not in response.text
    assert await AuditLog.filter(action="veteran.id_viewed").count() == 0


async def test_full_id_of_another_county_answers_not_found(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    id_number = fake_id_number(504)
    other = await make_veteran(id_number=id_number, county_code=OTHER_COUNTY)

    response = await client.post(
        f"/portal/veterans/{other.id}/id-number", data={"csrf_token": token}
    )

    assert response.status_code == 404
    assert id_number not in response.text
    assert await AuditLog.filter(action="veteran.id_viewed").count() == 0


async def test_unbind_without_reason_is_refused_and_keeps_the_binding(
    client: httpx.AsyncClient,
) -> None:
    token = await _clerk(client)
    veteran = await make_veteran()
    await _bound(veteran.id)
    page = f"/portal/veterans/{veteran.id}"

    response = await client.post(
        f"{page}/unbind", data={"csrf_token": token, "reason": "  "}, headers={"referer": page}
    )

    assert response.status_code == 303
    assert response.headers["location"] == page
    shown = await client.get(page)
    assert "请填写原因" in shown.text
    assert await WechatAccount.filter(veteran_id=veteran.id).exists()


async def test_unbind_revokes_tokens_and_records_the_reason(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    veteran = await make_veteran()
    account = await _bound(veteran.id)

    response = await client.post(
        f"/portal/veterans/{veteran.id}/unbind",
        data={"csrf_token": token, "reason": "本人更换手机 <微信>"},
    )

    assert response.status_code == 303
    refreshed = await WechatAccount.get(id=account.id)
    assert refreshed.veteran_id is None  # type: ignore[attr-defined]
    assert await ApiToken.filter(account_id=account.id, revoked_at=None).count() == 0
    event = await BindingEvent.get(veteran_id=veteran.id, action="unbound")
    assert event.reason == "本人更换手机 <微信>"
    assert await AuditLog.filter(action="binding.unbound", object_id=str(veteran.id)).exists()
    shown = await client.get(f"/portal/veterans/{veteran.id}")
    assert "本人更换手机 &lt;微信&gt;" in shown.text


async def test_unbind_in_another_county_answers_not_found(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    other = await make_veteran(county_code=OTHER_COUNTY)
    await _bound(other.id)

    response = await client.post(
        f"/portal/veterans/{other.id}/unbind", data={"csrf_token": token, "reason": "试探"}
    )

    assert response.status_code == 404
    assert await WechatAccount.filter(veteran_id=other.id).exists()


async def _pending(county: str = "140105") -> BindingRequest:
    veteran = await make_veteran(county_code=county)
    account = await WechatAccount.create(openid=f"openid-{veteran.id}")
    return await BindingRequest.create(
        account=account, veteran=veteran, county_code=county, phone_masked="138****0000"
    )


async def test_clerk_confirms_a_pending_binding(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    pending = await _pending()

    listing = await client.get("/portal/bindings")
    response = await client.post(
        f"/portal/bindings/{pending.id}/confirm",
        data={"csrf_token": token, "reason": "已核验身份证原件"},
    )

    assert "138****0000" in listing.text
    assert response.status_code == 303
    account = await WechatAccount.get(id=pending.account_id)  # type: ignore[attr-defined]
    assert account.veteran_id == pending.veteran_id  # type: ignore[attr-defined]
    assert (await BindingRequest.get(id=pending.id)).status == "confirmed"


async def test_clerk_rejects_a_pending_binding(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    pending = await _pending()

    response = await client.post(
        f"/portal/bindings/{pending.id}/reject", data={"csrf_token": token, "reason": "非本人"}
    )

    assert response.status_code == 303
    assert (await BindingRequest.get(id=pending.id)).status == "rejected"
    account = await WechatAccount.get(id=pending.account_id)  # type: ignore[attr-defined]
    assert account.veteran_id is None  # type: ignore[attr-defined]


async def test_binding_request_of_another_county_is_hidden(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    other = await _pending(OTHER_COUNTY)

    listing = await client.get("/portal/bindings")
    response = await client.post(
        f"/portal/bindings/{other.id}/confirm", data={"csrf_token": token, "reason": "试探"}
    )

    assert "138****0000" not in listing.text
    assert response.status_code == 404
    assert (await BindingRequest.get(id=other.id)).status == "pending"
