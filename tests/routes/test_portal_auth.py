"""Portal login over real HTTP: sessions, cookie flags, CSRF, lockout, logout and error pages."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace

import httpx

from backend.app import create_app
from backend.models import AuditLog, StaffSession, StaffUser
from backend.settings import Settings
from tests.conftest import free_port
from tests.factories import PORTAL_PASSWORD, make_region_tree, make_staff, portal_login


async def _login_form(client: httpx.AsyncClient) -> str:
    page = await client.get("/portal/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def _attempt(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    token = await _login_form(client)
    return await client.post(
        "/portal/login", data={"username": username, "password": password, "csrf_token": token}
    )


async def test_portal_page_without_login_redirects_to_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/portal/?from=mail")

    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login?next=%2Fportal%2F%3Ffrom%3Dmail"


async def test_login_sets_httponly_samesite_session_cookie(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1", password=PORTAL_PASSWORD)

    response = await _attempt(client, "clerk1", PORTAL_PASSWORD)

    assert response.status_code == 303
    assert response.headers["location"] == "/portal/"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("portal_session=")
    )
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/portal" in lowered
    assert "secure" not in lowered  # the test settings turn Secure off for plain-HTTP loopback
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    session = await StaffSession.get(staff_id=staff.id)
    assert session.id != value  # only the digest is stored
    assert await AuditLog.filter(action="staff.login", actor_id=staff.id).count() == 1


async def test_home_page_shows_counts_for_the_staff_region(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    await portal_login(client, "clerk1")

    response = await client.get("/portal/")

    assert response.status_code == 200
    assert "小店区" in response.text
    assert "待审核的年度登记" in response.text


async def test_wrong_password_and_unknown_user_get_the_same_message(
    client: httpx.AsyncClient,
) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)

    wrong = await _attempt(client, "clerk1", "not-the-password")
    unknown = await _attempt(client, "nobody", "not-the-password")

    assert wrong.status_code == unknown.status_code == 401
    assert "用户名或密码错误" in wrong.text
    assert "用户名或密码错误" in unknown.text
    assert "portal_session" not in wrong.headers.get("set-cookie", "")


async def test_repeated_failures_lock_the_account_even_for_the_right_password(
    client: httpx.AsyncClient,
) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1", password=PORTAL_PASSWORD)

    answers = [await _attempt(client, "clerk1", "wrong-password") for _ in range(5)]
    after = await _attempt(client, "clerk1", PORTAL_PASSWORD)

    assert [a.status_code for a in answers] == [401, 401, 401, 401, 423]
    assert after.status_code == 423
    assert "账号已临时锁定" in after.text
    row = await StaffUser.get(id=staff.id)
    assert row.locked_until is not None
    assert await AuditLog.filter(action="staff.login_failed", object_id=str(staff.id)).count() == 5
    assert await AuditLog.filter(action="staff.locked", object_id=str(staff.id)).count() == 1


async def test_login_post_without_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    await client.get("/portal/login")

    response = await client.post(
        "/portal/login", data={"username": "clerk1", "password": PORTAL_PASSWORD}
    )

    assert response.status_code == 403
    assert "页面已过期" in response.text
    assert await StaffSession.all().count() == 0


async def test_post_with_a_wrong_csrf_token_changes_nothing(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    await portal_login(client, "clerk1")

    response = await client.post("/portal/logout", data={"csrf_token": "forged"})

    assert response.status_code == 403
    assert "CSRF_FAILED" in response.text
    assert await StaffSession.filter(revoked_at=None).count() == 1


async def test_logout_revokes_the_session(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    token = await portal_login(client, "clerk1")
    cookie = client.cookies.get("portal_session", path="/portal")

    response = await client.post("/portal/logout", data={"csrf_token": token})

    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login"
    assert await StaffSession.filter(revoked_at=None).count() == 0
    client.cookies.set("portal_session", cookie or "", path="/portal")
    replay = await client.get("/portal/")
    assert replay.status_code == 303  # the old cookie no longer opens the portal


async def test_login_next_parameter_cannot_leave_the_portal(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    token = await _login_form(client)

    response = await client.post(
        "/portal/login",
        data={
            "username": "clerk1",
            "password": PORTAL_PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/portal",
        },
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/portal/"


async def test_unknown_portal_path_renders_the_chinese_error_page(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/portal/no-such-page")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "没有找到相关记录" in response.text


async def test_disabled_account_cannot_log_in(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    await StaffUser.filter(id=staff.id).update(is_active=False)

    response = await _attempt(client, "clerk1", PORTAL_PASSWORD)

    assert response.status_code == 401
    assert "用户名或密码错误" in response.text


async def test_stylesheet_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/portal/static/portal.css")

    assert response.status_code == 200
    assert "text/css" in response.headers["content-type"]


async def test_session_cookie_is_secure_unless_settings_turn_it_off(
    db_ready: Settings, standin: str
) -> None:
    await make_region_tree()
    await make_staff(username="clerk1", password=PORTAL_PASSWORD)
    port = free_port()
    live = replace(db_ready, wechat_api_base=standin, port=port, cookie_secure=True)
    app = create_app(live, name=f"vetsvc_secure_{uuid.uuid4().hex[:8]}")
    srv = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert srv is not None
    await srv.startup()
    await srv.before_start()
    await srv.after_start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            page = await http.get("/portal/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            # The browser would not send a Secure cookie over plain HTTP; pass it by hand.
            form_cookie = page.cookies.get("portal_login_csrf") or ""
            response = await http.post(
                "/portal/login",
                data={
                    "username": "clerk1",
                    "password": PORTAL_PASSWORD,
                    "csrf_token": token.group(1),
                },
                headers={"cookie": f"portal_login_csrf={form_cookie}"},
            )
    finally:
        await srv.before_stop()
        await srv.close()
        await srv.after_stop()

    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("portal_session=")
    )
    assert "secure" in cookie.lower()
