"""The TOTP second factor over real HTTP: enrolment, the code step, replay, lockout, reset."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import unquote

import httpx
import pyotp
import pytest

from backend.app import create_app
from backend.models import AuditLog, StaffSession, StaffUser
from backend.services import totp
from backend.settings import Settings
from tests.conftest import free_port
from tests.factories import (
    CITY,
    COUNTY,
    PORTAL_PASSWORD,
    make_region_tree,
    make_staff,
    portal_login,
)

#: a fixed instant in the middle of a 30-second step: the server checks codes against it
T0 = 1_780_000_015.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The server's TOTP clock (same process) pinned to T0; move it by assigning clock[0]."""
    now = [T0]
    monkeypatch.setattr(totp, "_clock", lambda: now[0])
    return now


@pytest.fixture
async def required_client(db_ready: Settings, standin: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server started with APP_TOTP_REQUIRED=true (as production behaves)."""
    port = free_port()
    live = replace(db_ready, wechat_api_base=standin, port=port, totp_required=True)
    app = create_app(live, name=f"vetsvc_totp_{uuid.uuid4().hex[:8]}")
    srv = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert srv is not None
    await srv.startup()
    await srv.before_start()
    await srv.after_start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            yield http
    finally:
        await srv.before_stop()
        await srv.close()
        await srv.after_stop()


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None, page.text[:300]
    return found.group(1)


def _secret_on(page: httpx.Response) -> str:
    found = re.search(r'密钥：<span class="mono">([A-Z2-7]{32})</span>', page.text)
    assert found is not None, page.text[:300]
    return found.group(1)


def _code(secret: str, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(T0 + 30 * steps)


def _wrong(secret: str) -> str:
    return "000000" if _code(secret) != "000000" else "111111"


async def _password_step(
    client: httpx.AsyncClient, username: str = "clerk1", next_url: str = ""
) -> httpx.Response:
    token = _csrf(await client.get("/portal/login"))
    data = {"username": username, "password": PORTAL_PASSWORD, "csrf_token": token}
    if next_url:
        data["next"] = next_url
    return await client.post("/portal/login", data=data)


async def _send_code(client: httpx.AsyncClient, code: str) -> httpx.Response:
    page = await client.get("/portal/login/totp")
    assert page.status_code == 200, page.text[:300]
    return await client.post(
        "/portal/login/totp", data={"code": code, "csrf_token": _csrf(page), "next": "/portal/"}
    )


async def _enrol_on_account_page(client: httpx.AsyncClient) -> str:
    """Enrol the logged-in staff member with a code of step T0-1; returns the secret."""
    token = _csrf(await client.get("/portal/account/totp"))
    started = await client.post("/portal/account/totp/start", data={"csrf_token": token})
    assert started.status_code == 303
    page = await client.get("/portal/account/totp")
    secret = _secret_on(page)
    assert "<svg" in page.text and "otpauth://totp/" in page.text
    confirmed = await client.post(
        "/portal/account/totp/confirm", data={"code": _code(secret, -1), "csrf_token": token}
    )
    assert confirmed.status_code == 303
    return secret


async def _logout(client: httpx.AsyncClient) -> None:
    token = _csrf(await client.get("/portal/"))
    await client.post("/portal/logout", data={"csrf_token": token})


async def _enrolled_and_logged_out(client: httpx.AsyncClient) -> tuple[StaffUser, str]:
    await make_region_tree()
    staff = await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    await portal_login(client, "clerk1")
    secret = await _enrol_on_account_page(client)
    await _logout(client)
    return staff, secret


async def test_account_page_is_linked_and_enrols_with_a_code(
    client: httpx.AsyncClient, clock: list[float]
) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    await portal_login(client, "clerk1")

    home = await client.get("/portal/")
    secret = await _enrol_on_account_page(client)
    after = await client.get("/portal/account/totp")

    assert 'href="/portal/account/totp"' in home.text
    assert after.status_code == 200
    assert "已启用" in after.text and secret not in after.text
    row = await StaffUser.get(id=staff.id)
    assert row.totp_confirmed_at is not None
    assert await AuditLog.filter(action="staff.totp_enrolled", object_id=str(staff.id)).count() == 1


async def test_enrolled_account_logs_in_with_password_then_code(
    client: httpx.AsyncClient, clock: list[float]
) -> None:
    staff, secret = await _enrolled_and_logged_out(client)

    step_one = await _password_step(client, next_url="/portal/registrations")
    assert step_one.status_code == 303
    assert unquote(step_one.headers["location"]) == "/portal/login/totp?next=/portal/registrations"
    page = await client.get(step_one.headers["location"])
    done = await client.post(
        "/portal/login/totp",
        data={"code": _code(secret), "csrf_token": _csrf(page), "next": "/portal/registrations"},
    )

    assert done.status_code == 303
    assert done.headers["location"] == "/portal/registrations"
    assert (await client.get("/portal/registrations")).status_code == 200
    live = await StaffSession.filter(staff_id=staff.id, revoked_at=None)
    assert [s.mfa_pending for s in live] == [False]
    login = await AuditLog.filter(action="staff.login", object_id=str(staff.id)).order_by("-id")
    assert login[0].detail == {"second_factor": "totp"}


async def test_pending_session_cannot_reach_other_pages(
    client: httpx.AsyncClient, clock: list[float]
) -> None:
    await _enrolled_and_logged_out(client)

    await _password_step(client)
    listing = await client.get("/portal/registrations")
    home = await client.get("/portal/")

    assert listing.status_code == 303
    assert listing.headers["location"].startswith("/portal/login?next=")
    assert home.status_code == 303


async def test_replayed_code_is_refused(client: httpx.AsyncClient, clock: list[float]) -> None:
    _, secret = await _enrolled_and_logged_out(client)
    await _password_step(client)
    assert (await _send_code(client, _code(secret))).status_code == 303
    await _logout(client)

    await _password_step(client)
    replay = await _send_code(client, _code(secret))

    assert replay.status_code == 401
    assert "动态验证码不正确或已使用" in replay.text
    assert (await client.get("/portal/registrations")).status_code == 303


async def test_wrong_codes_count_toward_the_lockout(
    client: httpx.AsyncClient, clock: list[float], db_ready: Settings
) -> None:
    staff, secret = await _enrolled_and_logged_out(client)
    await _password_step(client)

    answers = [
        (await _send_code(client, _wrong(secret))).status_code
        for _ in range(db_ready.login_lockout_failures - 1)
    ]
    locking = await _send_code(client, _wrong(secret))
    after = await _password_step(client)

    assert answers == [401] * (db_ready.login_lockout_failures - 1)
    assert locking.status_code == 423
    assert "账号已临时锁定" in locking.text
    assert after.status_code == 423
    assert (await StaffUser.get(id=staff.id)).locked_until is not None
    assert await AuditLog.filter(action="staff.locked", object_id=str(staff.id)).count() == 1


async def test_required_totp_sends_an_unenrolled_account_to_setup(
    required_client: httpx.AsyncClient, clock: list[float]
) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1", password=PORTAL_PASSWORD)

    step_one = await _password_step(required_client)
    assert step_one.status_code == 303
    assert step_one.headers["location"].startswith("/portal/login/totp/setup?")
    blocked = await required_client.get("/portal/registrations")
    setup = await required_client.get(step_one.headers["location"])
    secret = _secret_on(setup)
    done = await required_client.post(
        "/portal/login/totp",
        data={"code": _code(secret), "csrf_token": _csrf(setup), "next": "/portal/"},
    )

    assert blocked.status_code == 303
    assert "<svg" in setup.text and "otpauth://totp/" in setup.text
    assert done.status_code == 303 and done.headers["location"] == "/portal/"
    assert (await required_client.get("/portal/registrations")).status_code == 200
    row = await StaffUser.get(id=staff.id)
    assert row.totp_confirmed_at is not None
    assert await AuditLog.filter(action="staff.totp_enrolled", object_id=str(staff.id)).count() == 1


async def test_lead_resets_totp_from_the_staff_list(
    client: httpx.AsyncClient, clock: list[float]
) -> None:
    target, _ = await _enrolled_and_logged_out(client)
    await make_staff(CITY, username="citylead", password=PORTAL_PASSWORD, role="lead")
    await portal_login(client, "citylead")
    listing = await client.get("/portal/staff")

    answer = await client.post(
        f"/portal/staff/{target.id}/totp/reset",
        data={"reason": "手机丢失", "csrf_token": _csrf(listing)},
    )

    assert f"/portal/staff/{target.id}/totp/reset" in listing.text
    assert answer.status_code == 303
    row = await StaffUser.get(id=target.id)
    assert row.totp_secret is None and row.totp_confirmed_at is None
    entry = await AuditLog.get(action="staff.totp_reset", object_id=str(target.id))
    assert entry.detail == {"reason": "手机丢失"}
    async with httpx.AsyncClient(base_url=str(client.base_url)) as again:
        await portal_login(again, "clerk1")  # no code is asked for any more


async def test_clerk_cannot_reset_totp(client: httpx.AsyncClient, clock: list[float]) -> None:
    target, _ = await _enrolled_and_logged_out(client)
    await make_staff(COUNTY, username="peer", password=PORTAL_PASSWORD)
    token = await portal_login(client, "peer")

    answer = await client.post(
        f"/portal/staff/{target.id}/totp/reset", data={"reason": "试图重置", "csrf_token": token}
    )

    assert answer.status_code == 403
    assert (await StaffUser.get(id=target.id)).totp_confirmed_at is not None
