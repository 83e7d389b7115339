"""Staff accounts as a service: passwords, lockout, sessions, and who may manage whom."""

from __future__ import annotations

import datetime as dt

import pytest

from backend.errors import AccountLocked, Forbidden, LoginFailed, NotFound, ValidationFailed
from backend.models import AuditLog, StaffSession, StaffUser
from backend.services import staff as staff_service
from backend.settings import Settings
from tests.factories import CITY, COUNTY, OTHER_COUNTY, PROVINCE, make_region_tree, make_staff

PASSWORD = "Correct-horse-42"


async def _lead(region: str) -> StaffUser:
    return await make_staff(region, role="lead")


async def test_password_is_stored_as_argon2_and_checked(db_ready: Settings) -> None:
    await make_region_tree()
    await staff_service.create_staff(None, "prov1", "省管理员", PASSWORD, "lead", PROVINCE)

    row = await StaffUser.get(username="prov1")
    found = await staff_service.authenticate("prov1", PASSWORD)

    assert row.password_hash.startswith("$argon2id$")
    assert PASSWORD not in row.password_hash
    assert found.id == row.id and found.region.code == PROVINCE


async def test_unknown_user_and_wrong_password_raise_the_same_error(db_ready: Settings) -> None:
    await make_region_tree()
    await staff_service.create_staff(None, "prov1", "省管理员", PASSWORD, "lead", PROVINCE)

    with pytest.raises(LoginFailed) as unknown:
        await staff_service.authenticate("nobody", PASSWORD)
    with pytest.raises(LoginFailed) as wrong:
        await staff_service.authenticate("prov1", "wrong-password")

    assert unknown.value.message == wrong.value.message == "用户名或密码错误。"


async def test_lockout_after_configured_failures_then_expiry_lets_in(db_ready: Settings) -> None:
    await make_region_tree()
    staff = await staff_service.create_staff(None, "clerk1", "甲", PASSWORD, "clerk", COUNTY)
    for _ in range(db_ready.login_lockout_failures - 1):
        with pytest.raises(LoginFailed):
            await staff_service.authenticate("clerk1", "wrong-password")

    with pytest.raises(AccountLocked):
        await staff_service.authenticate("clerk1", "wrong-password")
    with pytest.raises(AccountLocked):
        await staff_service.authenticate("clerk1", PASSWORD)

    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    await StaffUser.filter(id=staff.id).update(locked_until=past)
    assert (await staff_service.authenticate("clerk1", PASSWORD)).id == staff.id
    assert (await StaffUser.get(id=staff.id)).failed_logins == 0


async def test_unknown_names_lock_out_like_real_ones(db_ready: Settings) -> None:
    await make_region_tree()
    await staff_service.create_staff(None, "clerk1", "甲", PASSWORD, "clerk", COUNTY)
    answers: dict[str, list[str]] = {"clerk1": [], "nosuchuser": []}

    for name, seen in answers.items():
        for _ in range(db_ready.login_lockout_failures):
            try:
                await staff_service.authenticate(name, "wrong-password")
            except (LoginFailed, AccountLocked) as exc:
                seen.append(exc.code)

    # A guesser cannot tell from the answers which of the two names is an account.
    assert answers["clerk1"] == answers["nosuchuser"]
    assert answers["clerk1"][-1] == "ACCOUNT_LOCKED"


async def test_usernames_are_one_spelling_whatever_the_case(db_ready: Settings) -> None:
    await make_region_tree()
    staff = await staff_service.create_staff(None, "Li.Hua", "李华", PASSWORD, "clerk", COUNTY)

    assert staff.username == "li.hua"
    with pytest.raises(ValidationFailed):
        await staff_service.create_staff(None, "LI.HUA", "李华", PASSWORD, "clerk", COUNTY)
    assert (await staff_service.authenticate(" LI.hua ", PASSWORD)).id == staff.id


async def test_session_stores_only_the_digest_and_expires(db_ready: Settings) -> None:
    await make_region_tree()
    staff = await make_staff()

    opened = await staff_service.open_session(staff, "127.0.0.1")

    assert opened.session.id != opened.cookie
    assert (await staff_service.session_for(opened.cookie)) is not None
    await StaffSession.filter(id=opened.session.id).update(
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    assert await staff_service.session_for(opened.cookie) is None


async def test_province_lead_creates_city_accounts_only(db_ready: Settings) -> None:
    await make_region_tree()
    lead = await _lead(PROVINCE)

    city_clerk = await staff_service.create_staff(lead, "city1", "市甲", PASSWORD, "clerk", CITY)

    assert city_clerk.region.code == CITY and city_clerk.created_by_id == lead.id  # type: ignore[attr-defined]
    with pytest.raises(Forbidden):
        await staff_service.create_staff(lead, "county1", "县甲", PASSWORD, "clerk", COUNTY)
    row = await AuditLog.get(action="staff.created")
    assert row.actor_id == lead.id and row.object_id == str(city_clerk.id)


async def test_city_lead_creates_county_accounts_in_its_own_city_only(
    db_ready: Settings,
) -> None:
    await make_region_tree()
    lead = await _lead(CITY)

    await staff_service.create_staff(lead, "county1", "县甲", PASSWORD, "lead", COUNTY)

    with pytest.raises(NotFound):
        await staff_service.create_staff(lead, "county2", "县乙", PASSWORD, "clerk", OTHER_COUNTY)
    with pytest.raises(Forbidden):
        await staff_service.create_staff(lead, "city2", "市乙", PASSWORD, "clerk", CITY)


async def test_clerks_and_county_leads_create_no_accounts(db_ready: Settings) -> None:
    await make_region_tree()
    city_clerk = await make_staff(CITY, role="clerk")
    county_lead = await _lead(COUNTY)

    with pytest.raises(Forbidden):
        await staff_service.create_staff(city_clerk, "x1abc", "甲", PASSWORD, "clerk", COUNTY)
    with pytest.raises(Forbidden):
        await staff_service.create_staff(county_lead, "x2abc", "乙", PASSWORD, "clerk", COUNTY)


async def test_weak_password_and_duplicate_username_are_refused(db_ready: Settings) -> None:
    await make_region_tree()
    lead = await _lead(CITY)
    await staff_service.create_staff(lead, "county1", "县甲", PASSWORD, "clerk", COUNTY)

    with pytest.raises(ValidationFailed) as short:
        await staff_service.create_staff(lead, "county2", "县乙", "short", "clerk", COUNTY)
    with pytest.raises(ValidationFailed) as taken:
        await staff_service.create_staff(lead, "county1", "县丙", PASSWORD, "clerk", COUNTY)

    assert "password" in short.value.details["fields"]
    assert "username" in taken.value.details["fields"]
    assert await StaffUser.filter(username="county2").count() == 0


async def test_disabling_revokes_sessions_and_blocks_login(db_ready: Settings) -> None:
    await make_region_tree()
    lead = await _lead(CITY)
    clerk = await staff_service.create_staff(lead, "county1", "县甲", PASSWORD, "clerk", COUNTY)
    opened = await staff_service.open_session(clerk)

    await staff_service.set_active(lead, clerk.id, False, "调离岗位")

    assert await staff_service.session_for(opened.cookie) is None
    with pytest.raises(LoginFailed):
        await staff_service.authenticate("county1", PASSWORD)
    row = await AuditLog.get(action="staff.disabled")
    assert row.detail == {"reason": "调离岗位"} and row.actor_id == lead.id


async def test_disabling_outside_scope_or_own_level_is_refused(db_ready: Settings) -> None:
    await make_region_tree()
    lead = await _lead(CITY)
    peer = await make_staff(CITY)
    outsider = await make_staff(OTHER_COUNTY)

    with pytest.raises(NotFound):
        await staff_service.set_active(lead, outsider.id, False, "试探")
    with pytest.raises(Forbidden):
        await staff_service.set_active(lead, peer.id, False, "试探")
    with pytest.raises(Forbidden):
        await staff_service.set_active(lead, lead.id, False, "试探")
