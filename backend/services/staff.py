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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from backend import context
from backend.crypto import token_digest
from backend.errors import AccountLocked, Forbidden, LoginFailed, NotFound, ValidationFailed
from backend.models.regions import Region
from backend.models.staff import ROLES, StaffSession, StaffUser
from backend.services import audit

logger = logging.getLogger(__name__)

CHILD_LEVEL = {"province": "city", "city": "county"}
ROLE_LABELS = {"clerk": "经办人员", "lead": "负责人"}
LEVEL_LABELS = {"province": "省级", "city": "市级", "county": "县区级"}

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,64}")
_MIN_PASSWORD = 10
_MAX_PASSWORD = 128

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
    """The active staff member with this password, with region fetched; else LoginFailed."""
    settings = context.current().settings
    staff = await StaffUser.get_or_none(username=username).select_related("region")
    if staff is None:
        await _verify(await _dummy(), password)
        logger.info("portal login refused: unknown user")
        raise LoginFailed
    if staff.locked_until is not None and staff.locked_until > _now():
        raise AccountLocked
    good = await _verify(staff.password_hash, password)
    if good and staff.is_active:
        return await _login_succeeded(staff, password, ip, request_id)

    await StaffUser.filter(id=staff.id).update(failed_logins=F("failed_logins") + 1)
    fresh = await StaffUser.get(id=staff.id)
    count = fresh.failed_logins
    locked = staff.is_active and count >= settings.login_lockout_failures
    detail = {"failures": count, "active": staff.is_active}
    await audit.record(
        "staff", staff.id, "staff.login_failed", "staff", staff.id, detail, ip, request_id
    )
    if locked:
        until = _now() + dt.timedelta(minutes=settings.login_lockout_minutes)
        await StaffUser.filter(id=staff.id).update(failed_logins=0, locked_until=until)
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
    raise LoginFailed


async def _login_succeeded(staff: StaffUser, password: str, ip: str, request_id: str) -> StaffUser:
    now = _now()
    changes: dict[str, object] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
    if _hasher.check_needs_rehash(staff.password_hash):
        changes["password_hash"] = await hash_password(password)
    await StaffUser.filter(id=staff.id).update(**changes)
    staff.failed_logins, staff.locked_until, staff.last_login_at = 0, None, now
    await audit.record("staff", staff.id, "staff.login", "staff", staff.id, {}, ip, request_id)
    return staff


async def open_session(staff: StaffUser, ip: str = "") -> Opened:
    """A new session row; the returned cookie value is the only copy of the secret."""
    hours = context.current().settings.session_hours
    cookie = secrets.token_urlsafe(32)
    session = await StaffSession.create(
        id=token_digest(cookie),
        staff=staff,
        csrf_token=secrets.token_urlsafe(32),
        ip=ip[:64],
        expires_at=_now() + dt.timedelta(hours=hours),
    )
    return Opened(cookie, session)


async def session_for(cookie: str) -> StaffSession | None:
    """The live session for a cookie value, with its active staff member and region."""
    if not cookie or len(cookie) > 128:
        return None
    session = await StaffSession.get_or_none(
        id=token_digest(cookie), revoked_at=None, expires_at__gt=_now()
    ).select_related("staff__region")
    if session is None or not session.staff.is_active:
        return None
    return session


async def close_session(cookie: str) -> None:
    """Log out: the session row is revoked, so the cookie is worthless even if kept."""
    if cookie:
        await StaffSession.filter(id=token_digest(cookie), revoked_at=None).update(
            revoked_at=_now()
        )


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
    reason = reason.strip()
    if not reason or len(reason) > 255:
        raise ValidationFailed(
            "请填写原因（不超过 255 字）。", details={"fields": {"reason": "请填写原因"}}
        )
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
