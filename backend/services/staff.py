"""Staff accounts: Argon2 passwords, lockout, portal sessions, and who may manage whom.

Rules decided here:

- Only a lead manages accounts, and only for regions exactly one level below its own and
  inside its scope: the province's leads create and disable city accounts, a city's leads
  create and disable its counties' accounts. Nobody manages accounts at their own level, so
  a clerk cannot make a colleague and a county cannot grow its own staff unseen. Province
  accounts come from the command line (``creator=None``), never from the portal.
- One message ("用户名或密码错误") for an unknown user, a wrong password and a disabled
  account; unknown users still pay for one Argon2 verification, so timing tells nothing.
- After ``login_lockout_failures`` wrong passwords in a row the account is locked for
  ``login_lockout_minutes``; while locked, no password is checked.
- A session is a random cookie value of which only the SHA-256 is stored; it expires after
  ``session_hours`` and is revoked by logout or by disabling the account.
- TOTP second factor (RFC 6238, 30 s, 6 digits, one step either side): owed by an account that
  has confirmed one, and by every account when ``settings.totp_enforced`` (always in
  production). Then the password opens only a pending session of five minutes that no page
  accepts; the code (or, without an enrolment, enrolling) replaces it by a full session under
  a new cookie. Wrong codes count toward the same lockout as wrong passwords, and a password
  accepted on the way resets nothing, so the password does not buy fresh guesses. Each time
  step is accepted once: the last one used is stored and moved forward atomically.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from backend import context
from backend.crypto import token_digest
from backend.errors import (
    AccountLocked,
    AppError,
    Conflict,
    Forbidden,
    LoginFailed,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from backend.models.regions import Region
from backend.models.staff import ROLES, StaffSession, StaffUser
from backend.services import audit, totp

logger = logging.getLogger(__name__)

CHILD_LEVEL = {"province": "city", "city": "county"}
ROLE_LABELS = {"clerk": "经办人员", "lead": "负责人"}
LEVEL_LABELS = {"province": "省级", "city": "市级", "county": "县区级"}

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,64}")
_MIN_PASSWORD = 10
_MAX_PASSWORD = 128

PENDING_LIFETIME = dt.timedelta(minutes=5)
WRONG_CODE = "动态验证码不正确或已使用，请输入新的验证码。"

_hasher = PasswordHasher()
_dummy_hash: str | None = None


@dataclass
class Opened:
    """A freshly opened session: the cookie value goes to the browser, the row stays here."""

    cookie: str
    session: StaffSession


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def hash_password(password: str) -> str:
    """Argon2id hash, computed off the event loop (it is deliberately slow)."""
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def _dummy() -> str:
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = await hash_password(secrets.token_urlsafe(16))
    return _dummy_hash


async def authenticate(
    username: str, password: str, ip: str = "", request_id: str = ""
) -> StaffUser:
    """The active staff member with this password, with region fetched; else LoginFailed.

    When a second factor is owed (see ``second_factor``) the login is not complete yet:
    nothing is reset and ``staff.login`` is recorded only after the code.
    """
    username = username.strip().lower()
    staff = await StaffUser.get_or_none(username=username).select_related("region")
    if staff is None:
        await _verify(await _dummy(), password)
        logger.info("portal login refused: unknown user")
        await _count_unknown_failure(username)
        raise LoginFailed
    if _is_locked(staff):
        raise AccountLocked
    good = await _verify(staff.password_hash, password)
    if not (good and staff.is_active):
        await _count_failure(staff, "staff.login_failed", LoginFailed(), ip, request_id)
    if _hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = await hash_password(password)
        await StaffUser.filter(id=staff.id).update(password_hash=staff.password_hash)
    owed = second_factor(staff)
    if owed:
        detail = {"second_factor": owed}
        await audit.record(
            "staff", staff.id, "staff.password_accepted", "staff", staff.id, detail, ip, request_id
        )
        return staff
    return await _login_succeeded(staff, {}, ip, request_id)


async def _count_unknown_failure(username: str) -> None:
    """Unknown names lock like real ones, so the lockout does not tell which names exist."""
    settings = context.current().settings
    key = "login-unknown:" + token_digest(username)
    count = await context.current().store.hit(key, settings.login_lockout_minutes * 60)
    if count >= settings.login_lockout_failures:
        raise AccountLocked


def _is_locked(staff: StaffUser) -> bool:
    return staff.locked_until is not None and staff.locked_until > _now()


async def _count_failure(
    staff: StaffUser, action: str, error: AppError, ip: str, request_id: str
) -> NoReturn:
    """One more failure (password or code) toward the lockout; raises error or AccountLocked."""
    settings = context.current().settings
    await StaffUser.filter(id=staff.id).update(failed_logins=F("failed_logins") + 1)
    fresh = await StaffUser.get(id=staff.id)
    count = fresh.failed_logins
    locked = staff.is_active and count >= settings.login_lockout_failures
    detail = {"failures": count, "active": staff.is_active}
    await audit.record("staff", staff.id, action, "staff", staff.id, detail, ip, request_id)
    if locked:
        until = _now() + dt.timedelta(minutes=settings.login_lockout_minutes)
        await StaffUser.filter(id=staff.id).update(failed_logins=0, locked_until=until)
        await StaffSession.filter(staff_id=staff.id, mfa_pending=True, revoked_at=None).update(
            revoked_at=_now()
        )
        await audit.record(
            "system",
            None,
            "staff.locked",
            "staff",
            staff.id,
            {"minutes": settings.login_lockout_minutes},
            ip,
            request_id,
        )
        logger.warning("staff %s locked after %d failed logins", staff.id, count)
        raise AccountLocked
    raise error


async def _login_succeeded(
    staff: StaffUser, detail: dict[str, object], ip: str, request_id: str
) -> StaffUser:
    now = _now()
    await StaffUser.filter(id=staff.id).update(
        failed_logins=0, locked_until=None, last_login_at=now
    )
    staff.failed_logins, staff.locked_until, staff.last_login_at = 0, None, now
    await audit.record("staff", staff.id, "staff.login", "staff", staff.id, detail, ip, request_id)
    return staff


async def open_session(staff: StaffUser, ip: str = "", *, pending: bool = False) -> Opened:
    """A new session row; the returned cookie value is the only copy of the secret.

    pending=True opens the five-minute session that only the TOTP pages accept.
    """
    hours = context.current().settings.session_hours
    lifetime = PENDING_LIFETIME if pending else dt.timedelta(hours=hours)
    cookie = secrets.token_urlsafe(32)
    session = await StaffSession.create(
        id=token_digest(cookie),
        staff=staff,
        csrf_token=secrets.token_urlsafe(32),
        ip=ip[:64],
        expires_at=_now() + lifetime,
        mfa_pending=pending,
    )
    return Opened(cookie, session)


async def _live_session(cookie: str, pending: bool) -> StaffSession | None:
    if not cookie or len(cookie) > 128:
        return None
    session = await StaffSession.get_or_none(
        id=token_digest(cookie), revoked_at=None, expires_at__gt=_now(), mfa_pending=pending
    ).select_related("staff__region")
    if session is None or not session.staff.is_active:
        return None
    return session


async def session_for(cookie: str) -> StaffSession | None:
    """The live full session for a cookie value, with its active staff member and region."""
    return await _live_session(cookie, pending=False)


async def pending_session_for(cookie: str) -> StaffSession | None:
    """The live pending session (password given, TOTP owed) for a cookie value."""
    return await _live_session(cookie, pending=True)


async def close_session(cookie: str) -> None:
    """Log out: the session row is revoked, so the cookie is worthless even if kept."""
    if cookie:
        await StaffSession.filter(id=token_digest(cookie), revoked_at=None).update(
            revoked_at=_now()
        )


# -- TOTP second factor ----------------------------------------------------------------------


def second_factor(staff: StaffUser) -> str:
    """What the login still owes after the password: "totp", "setup" (enrol first) or ""."""
    if staff.totp_confirmed_at is not None:
        return "totp"
    if context.current().settings.totp_enforced:
        return "setup"
    return ""


async def confirm_enrolment(
    staff: StaffUser,
    code: str,
    *,
    counts_to_lockout: bool,
    ip: str = "",
    request_id: str = "",
) -> None:
    """Turn TOTP on once a code from the pending secret checks out.

    counts_to_lockout is True at login (the person has only shown a password) and False on
    the account page of someone fully logged in, where a typo should not lock them out.
    """
    code = totp.clean_code(code)
    fresh = await StaffUser.get(id=staff.id)
    if fresh.totp_confirmed_at is not None:
        raise Conflict("已启用动态验证码。")
    if fresh.totp_secret is None:
        raise Conflict("请先开始设置动态验证码。")
    if counts_to_lockout and _is_locked(fresh):
        raise AccountLocked
    if not await totp.accept_code(fresh.id, fresh.totp_secret, code):
        if counts_to_lockout:
            await _count_failure(
                fresh, "staff.totp_failed", LoginFailed(WRONG_CODE), ip, request_id
            )
        detail = {"stage": "enrol"}
        await audit.record(
            "staff", staff.id, "staff.totp_failed", "staff", staff.id, detail, ip, request_id
        )
        raise ValidationFailed(WRONG_CODE)

    now = _now()
    await StaffUser.filter(id=staff.id).update(totp_confirmed_at=now)
    staff.totp_confirmed_at = now
    await audit.record(
        "staff", staff.id, "staff.totp_enrolled", "staff", staff.id, {}, ip, request_id
    )
    logger.info("staff %s enrolled a TOTP authenticator", staff.id)


async def finish_login(
    session: StaffSession, code: str, *, ip: str = "", request_id: str = ""
) -> Opened:
    """Check the TOTP code of a pending session; a full session under a new cookie replaces it.

    With a code still owed and no enrolment, the code confirms the pending secret first.
    """
    staff: StaffUser = session.staff
    code = totp.clean_code(code)
    fresh = await StaffUser.get(id=staff.id).select_related("region")
    if _is_locked(fresh):
        raise AccountLocked
    if fresh.totp_confirmed_at is None:
        await confirm_enrolment(fresh, code, counts_to_lockout=True, ip=ip, request_id=request_id)
    elif fresh.totp_secret is None or not await totp.accept_code(fresh.id, fresh.totp_secret, code):
        await _count_failure(fresh, "staff.totp_failed", LoginFailed(WRONG_CODE), ip, request_id)

    revoked = await StaffSession.filter(id=session.id, revoked_at=None).update(revoked_at=_now())
    if revoked != 1:
        raise Unauthenticated("登录已超时，请重新登录。")
    await _login_succeeded(fresh, {"second_factor": "totp"}, ip, request_id)
    return await open_session(fresh, ip)


async def reset_totp(
    actor: StaffUser | None,
    staff_id: int,
    reason: str,
    *,
    ip: str = "",
    request_id: str = "",
) -> StaffUser:
    """A lead clears the TOTP of an account one level down (lost phone); its sessions end.

    actor None is the command line (`vetsvc reset-totp`), the only way for province accounts,
    which have no level above them.
    """
    reason = _check_reason(reason)
    if actor is None:
        target = await StaffUser.get_or_none(id=staff_id)
        if target is None:
            raise NotFound
    else:
        target = await _managed_target(actor, staff_id)

    async with in_transaction():
        await StaffUser.filter(id=target.id).update(
            totp_secret=None, totp_confirmed_at=None, totp_last_step=None
        )
        await StaffSession.filter(staff_id=target.id, revoked_at=None).update(revoked_at=_now())
        await audit.record(
            "staff" if actor else "system",
            actor.id if actor else None,
            "staff.totp_reset",
            "staff",
            target.id,
            {"reason": reason},
            ip,
            request_id,
        )
    target.totp_secret = target.totp_confirmed_at = target.totp_last_step = None
    return target


def can_manage(actor: StaffUser, target_region: Region) -> bool:
    """True when the actor is a lead one level above the target region and it lies in scope."""
    region: Region = actor.region
    return (
        actor.role == "lead"
        and actor.is_active
        and CHILD_LEVEL.get(region.level) == target_region.level
        and target_region.parent_id == region.code  # type: ignore[attr-defined]
    )


async def manageable_regions(actor: StaffUser) -> list[Region]:
    """The regions where this staff member may create accounts (empty for clerks)."""
    region: Region = actor.region
    if actor.role != "lead" or region.level not in CHILD_LEVEL:
        return []
    return await Region.filter(parent_id=region.code).order_by("code")


def _check_fields(username: str, display_name: str, password: str, role: str) -> None:
    problems: dict[str, str] = {}
    if not _USERNAME.fullmatch(username):
        problems["username"] = "用户名须为 3-64 位字母、数字或 _ . -"
    if not display_name.strip() or len(display_name) > 64:
        problems["display_name"] = "请填写姓名（不超过 64 字）"
    if not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        problems["password"] = f"密码长度须为 {_MIN_PASSWORD}-{_MAX_PASSWORD} 位"
    elif password.isdigit() or password.lower() == username.lower():
        problems["password"] = "密码过于简单"  # noqa: S105 (a message, not a password)
    if role not in ROLES:
        problems["role"] = "角色不正确"
    if problems:
        raise ValidationFailed("账号信息有误，请按提示修改。", details={"fields": problems})


async def create_staff(
    creator: StaffUser | None,
    username: str,
    display_name: str,
    password: str,
    role: str,
    region_code: str,
    *,
    ip: str = "",
    request_id: str = "",
) -> StaffUser:
    """Create an account; creator None is the command line's bootstrap, unrestricted."""
    # One spelling per name: "Li.Hua" and "li.hua" must not become two accounts.
    username = username.strip().lower()
    _check_fields(username, display_name, password, role)
    region = await Region.get_or_none(code=region_code)
    if creator is not None:
        if region is None or not region.code.startswith(creator.region.scope_prefix):
            raise NotFound("没有找到该行政区划。")
        if not can_manage(creator, region):
            raise Forbidden("只能为下一级行政区划创建账号。")
    elif region is None:
        raise NotFound("没有找到该行政区划。")
    password_hash = await hash_password(password)

    async with in_transaction():
        if await StaffUser.filter(username=username).exists():
            raise ValidationFailed(
                "该用户名已被使用。", details={"fields": {"username": "该用户名已被使用"}}
            )
        staff = await StaffUser.create(
            username=username,
            display_name=display_name.strip(),
            password_hash=password_hash,
            role=role,
            region=region,
            created_by=creator,
        )
        detail = {"username": username, "role": role, "region": region.code}
        await audit.record(
            "staff" if creator else "system",
            creator.id if creator else None,
            "staff.created",
            "staff",
            staff.id,
            detail,
            ip,
            request_id,
        )
    await staff.fetch_related("region")
    return staff


async def _managed_target(actor: StaffUser, staff_id: int) -> StaffUser:
    target = await StaffUser.get_or_none(id=staff_id).select_related("region")
    if target is None or not target.region.code.startswith(actor.region.scope_prefix):
        raise NotFound
    if target.id == actor.id or not can_manage(actor, target.region):
        raise Forbidden("只能管理下一级行政区划的账号。")
    return target


def _check_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason or len(reason) > 255:
        raise ValidationFailed(
            "请填写原因（不超过 255 字）。", details={"fields": {"reason": "请填写原因"}}
        )
    return reason


async def set_active(
    actor: StaffUser,
    staff_id: int,
    active: bool,
    reason: str,
    *,
    ip: str = "",
    request_id: str = "",
) -> StaffUser:
    """Disable (revoking every session) or re-enable an account one level down."""
    reason = _check_reason(reason)
    target = await _managed_target(actor, staff_id)

    async with in_transaction():
        await StaffUser.filter(id=target.id).update(
            is_active=active, failed_logins=0, locked_until=None
        )
        if not active:
            await StaffSession.filter(staff_id=target.id, revoked_at=None).update(revoked_at=_now())
        action = "staff.enabled" if active else "staff.disabled"
        await audit.record(
            "staff", actor.id, action, "staff", target.id, {"reason": reason}, ip, request_id
        )
    target.is_active = active
    return target


async def list_staff(actor: StaffUser) -> list[StaffUser]:
    """Accounts in the actor's region and below, by region then username."""
    prefix = actor.region.scope_prefix
    return (
        await StaffUser.filter(region_id__startswith=prefix)
        .select_related("region")
        .order_by("region_id", "username")
        .limit(500)
    )
