"""TOTP as a service: the secret at rest, codes once each, shared lockout, reset, settings."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import replace

import pyotp
import pytest

from backend import context
from backend.errors import AccountLocked, Conflict, Forbidden, LoginFailed, ValidationFailed
from backend.models import AuditLog, StaffSession, StaffUser
from backend.services import staff as staff_service
from backend.services import totp
from backend.settings import Settings, SettingsError
from tests.factories import CITY, COUNTY, PORTAL_PASSWORD, make_region_tree, make_staff

#: a fixed instant in the middle of a 30-second step, so no test straddles a step boundary
T0 = 1_780_000_015.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The TOTP clock pinned to T0; tests move it by assigning clock[0]."""
    now = [T0]
    monkeypatch.setattr(totp, "_clock", lambda: now[0])
    return now


def _secret(row: StaffUser) -> str:
    assert row.totp_secret is not None
    return context.current().cipher.decrypt(row.totp_secret, totp.PURPOSE)


def _code(secret: str, at: float, steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(at + 30 * steps)


async def _enrolled(username: str = "clerk1", region: str = COUNTY) -> tuple[StaffUser, str]:
    """A staff member with a confirmed TOTP (step T0-1 used); returns the row and its secret."""
    staff = await make_staff(region, username=username, password=PORTAL_PASSWORD)
    await totp.start_enrolment(staff)
    secret = _secret(await StaffUser.get(id=staff.id))
    await staff_service.confirm_enrolment(staff, _code(secret, T0, -1), counts_to_lockout=False)
    return await StaffUser.get(id=staff.id).select_related("region"), secret


async def test_secret_is_160_random_bits_stored_only_encrypted(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1")

    await totp.start_enrolment(staff)
    row = await StaffUser.get(id=staff.id)
    secret = _secret(row)
    shown = await totp.pending_enrolment(staff)

    assert row.totp_secret is not None and row.totp_secret.startswith("v1:")
    assert secret not in row.totp_secret
    assert len(base64.b32decode(secret)) == 20
    assert row.totp_confirmed_at is None
    assert shown is not None and shown.secret == secret
    assert shown.uri.startswith("otpauth://totp/") and f"secret={secret}" in shown.uri
    assert shown.qr_svg.startswith("<svg") and "<path" in shown.qr_svg


async def test_a_pending_secret_is_kept_when_enrolment_starts_again(db_ready: Settings) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1")

    await totp.start_enrolment(staff)
    first = (await StaffUser.get(id=staff.id)).totp_secret
    await totp.start_enrolment(staff)

    assert (await StaffUser.get(id=staff.id)).totp_secret == first


async def test_enrolment_is_confirmed_only_by_a_code_from_the_secret(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1")
    await totp.start_enrolment(staff)
    secret = _secret(await StaffUser.get(id=staff.id))
    wrong = "000000" if _code(secret, T0) != "000000" else "111111"

    with pytest.raises(ValidationFailed):
        await staff_service.confirm_enrolment(staff, wrong, counts_to_lockout=False)
    assert (await StaffUser.get(id=staff.id)).totp_confirmed_at is None
    await staff_service.confirm_enrolment(staff, _code(secret, T0), counts_to_lockout=False)

    row = await StaffUser.get(id=staff.id)
    assert row.totp_confirmed_at is not None
    assert row.failed_logins == 0  # a typo on the account page locks nothing
    assert await AuditLog.filter(action="staff.totp_failed", object_id=str(staff.id)).count() == 1
    assert await AuditLog.filter(action="staff.totp_enrolled", object_id=str(staff.id)).count() == 1
    with pytest.raises(Conflict):
        await totp.start_enrolment(staff)


async def test_each_time_step_is_accepted_once(db_ready: Settings, clock: list[float]) -> None:
    await make_region_tree()
    staff, secret = await _enrolled()
    assert staff.totp_secret is not None

    first = await totp.accept_code(staff.id, staff.totp_secret, _code(secret, T0))
    replay = await totp.accept_code(staff.id, staff.totp_secret, _code(secret, T0))
    older = await totp.accept_code(staff.id, staff.totp_secret, _code(secret, T0, -1))

    assert (first, replay, older) == (True, False, False)
    assert (await StaffUser.get(id=staff.id)).totp_last_step == int(T0) // 30


async def test_codes_one_step_away_pass_and_two_steps_away_fail(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    staff, secret = await _enrolled()
    assert staff.totp_secret is not None

    too_far = await totp.accept_code(staff.id, staff.totp_secret, _code(secret, T0, 2))
    next_step = await totp.accept_code(staff.id, staff.totp_secret, _code(secret, T0, 1))

    assert (too_far, next_step) == (False, True)


def test_malformed_codes_are_refused_before_any_check() -> None:
    with pytest.raises(ValidationFailed):
        totp.clean_code("12345")
    with pytest.raises(ValidationFailed):
        totp.clean_code("12a456")
    assert totp.clean_code("123 456") == "123456"


async def test_password_alone_opens_only_a_pending_session(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    staff, secret = await _enrolled()

    found = await staff_service.authenticate("clerk1", PORTAL_PASSWORD)
    opened = await staff_service.open_session(found, pending=True)

    assert staff_service.second_factor(found) == "totp"
    assert await staff_service.session_for(opened.cookie) is None
    pending = await staff_service.pending_session_for(opened.cookie)
    assert pending is not None
    assert pending.expires_at <= dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    assert await AuditLog.filter(action="staff.login").count() == 0

    full = await staff_service.finish_login(pending, _code(secret, T0))

    assert await staff_service.session_for(full.cookie) is not None
    assert await staff_service.pending_session_for(opened.cookie) is None
    assert await AuditLog.filter(action="staff.login", object_id=str(staff.id)).count() == 1


async def test_wrong_codes_and_wrong_passwords_share_one_lockout(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    staff, secret = await _enrolled()
    good = _code(secret, T0)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(2):
        with pytest.raises(LoginFailed):
            await staff_service.authenticate("clerk1", "wrong-password")
    found = await staff_service.authenticate("clerk1", PORTAL_PASSWORD)
    opened = await staff_service.open_session(found, pending=True)
    pending = await staff_service.pending_session_for(opened.cookie)
    assert pending is not None

    for _ in range(2):
        with pytest.raises(LoginFailed):
            await staff_service.finish_login(pending, wrong)
    with pytest.raises(AccountLocked):
        await staff_service.finish_login(pending, wrong)
    with pytest.raises(AccountLocked):
        await staff_service.finish_login(pending, good)

    assert (await StaffUser.get(id=staff.id)).locked_until is not None
    assert await staff_service.pending_session_for(opened.cookie) is None
    failed = await AuditLog.filter(action="staff.totp_failed", object_id=str(staff.id)).count()
    assert failed == 3


async def test_enforced_totp_without_enrolment_is_owed_as_setup(db_ready: Settings) -> None:
    await make_region_tree()
    staff = await make_staff(username="clerk1")
    ctx = context.current()
    original = ctx.settings

    ctx.settings = replace(original, totp_required=True)
    try:
        owed = staff_service.second_factor(staff)
    finally:
        ctx.settings = original

    assert owed == "setup"
    assert staff_service.second_factor(staff) == ""


async def test_lead_resets_the_totp_of_an_account_one_level_down(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    target, _ = await _enrolled()
    opened = await staff_service.open_session(target)
    lead = await make_staff(CITY, role="lead")

    await staff_service.reset_totp(lead, target.id, "手机丢失")

    row = await StaffUser.get(id=target.id)
    assert (row.totp_secret, row.totp_confirmed_at, row.totp_last_step) == (None, None, None)
    assert await staff_service.session_for(opened.cookie) is None
    entry = await AuditLog.get(action="staff.totp_reset", object_id=str(target.id))
    assert entry.actor_id == lead.id
    assert await StaffSession.filter(staff_id=target.id, revoked_at=None).count() == 0


async def test_clerk_and_same_level_lead_cannot_reset_totp(
    db_ready: Settings, clock: list[float]
) -> None:
    await make_region_tree()
    target, _ = await _enrolled()
    clerk = await make_staff(CITY)
    peer = await make_staff(COUNTY, role="lead")

    with pytest.raises(Forbidden):
        await staff_service.reset_totp(clerk, target.id, "试图重置")
    with pytest.raises(Forbidden):
        await staff_service.reset_totp(peer, target.id, "试图重置")

    assert (await StaffUser.get(id=target.id)).totp_confirmed_at is not None


def test_production_refuses_to_turn_totp_off() -> None:
    with pytest.raises(SettingsError, match="APP_TOTP_REQUIRED"):
        Settings.from_env({"APP_ENV": "production", "APP_TOTP_REQUIRED": "false"})


def test_production_requires_totp_without_being_told() -> None:
    assert Settings(env="production").totp_enforced
    assert not Settings(env="development").totp_enforced
    assert Settings.from_env({"APP_ENV": "test", "APP_TOTP_REQUIRED": "true"}).totp_enforced
