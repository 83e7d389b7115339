"""WeChat login, our own bearer tokens, the privacy notice, and binding an account to a veteran.

Binding needs more than name and ID number, which relatives know: the phone number WeChat
verified must match the roster's, otherwise a clerk confirms the person at the service station.
Every mismatch (unknown ID, wrong name, entry not active, veteran bound elsewhere) gets the one
BindingMismatch answer, so a guesser learns nothing from it; attempts are throttled per account,
per ID number and per client address in the shared store, which all processes share.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sanic import Request
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from backend import context
from backend.crypto import mask_phone, token_digest
from backend.errors import (
    AlreadyBound,
    BindingMismatch,
    Conflict,
    InvalidTransition,
    NotBound,
    NotFound,
    PrivacyNotAccepted,
    RateLimited,
    Unauthenticated,
    ValidationFailed,
)
from backend.models import (
    ApiToken,
    BindingEvent,
    BindingRequest,
    StaffUser,
    Veteran,
    WechatAccount,
)
from backend.services import audit, idcard, regions
from backend.services.workflow import Actor, Workflow

logger = logging.getLogger(__name__)

ID_PURPOSE = "veteran.id_number"
PHONE_PURPOSE = "veteran.phone"

# A carrier or a service station's Wi-Fi puts many phones behind one address.
LOGIN_ATTEMPTS_PER_MINUTE_PER_ADDRESS = 60
ADDRESS_FACTOR = 4

PENDING_MESSAGE = (
    "您的微信绑定手机号与名册登记的手机号不一致（或名册未登记手机号）。"
    "请携带本人身份证到所在地退役军人服务站，由工作人员核实后完成绑定。"
)
BOUND_MESSAGE = "绑定成功。"

#: binding requests wait for a clerk; every decision is a recorded transition
BINDING_REQUEST = Workflow(
    "binding_request",
    {"pending": frozenset({"confirmed", "rejected", "cancelled"})},
)

BindOutcome = Literal["bound", "pending"]


def _now() -> datetime:
    return datetime.now(UTC)


# -- login and tokens -----------------------------------------------------------------------


async def login(js_code: str, ip: str = "") -> tuple[WechatAccount, str, datetime]:
    """Exchange a wx.login code for our own token; the account is created on first login."""
    ctx = context.current()
    await _throttle(f"login:ip:{ip}", LOGIN_ATTEMPTS_PER_MINUTE_PER_ADDRESS, 60)
    # A used or expired code raises WechatCodeInvalid (LOGIN_CODE_INVALID): call wx.login again.
    session = await ctx.wechat.code2session(js_code)

    account = await _account_for(session.openid, session.unionid)
    token = secrets.token_urlsafe(32)
    expires_at = _now() + timedelta(hours=ctx.settings.token_hours)
    await ApiToken.create(id=token_digest(token), account=account, expires_at=expires_at)
    logger.info("account %s logged in", account.id)
    return account, token, expires_at


async def _account_for(openid: str, unionid: str | None) -> WechatAccount:
    now = _now()
    account = await WechatAccount.get_or_none(openid=openid)
    if account is None:
        try:
            account = await WechatAccount.create(openid=openid, unionid=unionid, last_login_at=now)
            return account
        except IntegrityError:
            # Two first logins of the same user at once: the other one created it.
            account = await WechatAccount.get(openid=openid)
    changes: dict[str, Any] = {"last_login_at": now}
    if unionid and unionid != account.unionid:
        changes["unionid"] = unionid
    await WechatAccount.filter(id=account.id).update(**changes)
    account.last_login_at = now
    account.unionid = changes.get("unionid", account.unionid)
    return account


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 128:
        raise Unauthenticated()
    return token


async def authenticate(request: Request, require_bound: bool) -> WechatAccount:
    """The account behind the request's bearer token (veteran prefetched as account.veteran)."""
    digest = token_digest(_bearer(request))
    # One query: the token, its account and the bound veteran, because /me is a hot read.
    row = (
        await ApiToken.filter(id=digest, revoked_at__isnull=True, expires_at__gt=_now())
        .select_related("account__veteran")
        .first()
    )
    if row is None:
        raise Unauthenticated()
    account: WechatAccount = row.account
    if require_bound:
        if not privacy_accepted(account):
            raise PrivacyNotAccepted()
        if account.veteran_id is None:  # type: ignore[attr-defined]
            raise NotBound()
    request.ctx.account = account
    request.ctx.token_id = digest
    return account


async def logout(token_id: str) -> None:
    """Revoke one token (DELETE /sessions/current)."""
    await ApiToken.filter(id=token_id, revoked_at__isnull=True).update(revoked_at=_now())


# -- privacy notice -------------------------------------------------------------------------


def privacy_accepted(account: WechatAccount) -> bool:
    """True when the account accepted the version of the privacy notice now in force."""
    return account.privacy_version == context.current().settings.privacy_version


async def accept_privacy(
    account: WechatAccount, version: str, ip: str = "", request_id: str = ""
) -> datetime:
    """Record that the account accepted this version of the privacy notice; returns when."""
    current = context.current().settings.privacy_version
    if version != current:
        raise ValidationFailed(
            "隐私保护说明已更新，请阅读最新版本后再同意。",
            details={"fields": {"version": f"当前版本为 {current}"}, "current_version": current},
        )
    now = _now()
    async with in_transaction():
        await WechatAccount.filter(id=account.id).update(
            privacy_version=version, privacy_accepted_at=now
        )
        await audit.record(
            "account",
            account.id,
            "privacy.accepted",
            "wechat_account",
            account.id,
            {"version": version},
            ip,
            request_id,
        )
    account.privacy_version, account.privacy_accepted_at = version, now
    return now


# -- binding --------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """Names compare without spaces, width variants or the several middle dots of minority names."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")
    for dot in ("•", "・", "‧", "∙", "●", "．", "."):
        text = text.replace(dot, "·")
    return text


async def bind(
    account: WechatAccount,
    name: str,
    id_number: str,
    phone_code: str,
    ip: str = "",
    request_id: str = "",
) -> BindOutcome:
    """Bind the account to the veteran with this name and ID; "pending" waits for a clerk."""
    ctx = context.current()
    if account.veteran_id is not None:  # type: ignore[attr-defined]
        raise AlreadyBound()
    if not privacy_accepted(account):
        raise PrivacyNotAccepted()
    limit = ctx.settings.bind_attempts_per_hour
    await _throttle(f"bind:account:{account.id}", limit, 3600)
    await _throttle(f"bind:ip:{ip}", limit * ADDRESS_FACTOR, 3600)
    try:
        number = idcard.parse_id_number(id_number).number
    except idcard.InvalidIdNumber as exc:
        raise ValidationFailed(details={"fields": {"id_number": exc.reason}}) from None
    id_hash = ctx.cipher.lookup_hash(number, ID_PURPOSE)
    await _throttle(f"bind:id:{id_hash}", limit, 3600)

    # Ask WeChat for the phone before judging name and ID, so that a mismatch answers no
    # faster than a match and a bad phone code never hints at whether the ID was right.
    # A bad code raises WechatPhoneCodeInvalid (PHONE_CODE_INVALID): tap the button again.
    phone = await ctx.wechat.phone_number(phone_code, account.openid)

    veteran = await Veteran.get_or_none(id_hash=id_hash)
    refusal = await _mismatch(account, veteran, name)
    if refusal or veteran is None:
        await audit.record(
            "account",
            account.id,
            "binding.refused",
            "wechat_account",
            account.id,
            {"reason": refusal},
            ip,
            request_id,
        )
        logger.info("binding refused for account %s (%s)", account.id, refusal)
        raise BindingMismatch()

    phone_hash = None
    if phone.country_code == "86":
        phone_hash = ctx.cipher.lookup_hash(phone.pure_phone_number, PHONE_PURPOSE)
    if veteran.phone_hash is not None and phone_hash == veteran.phone_hash:
        await _bind_now(account, veteran, ip, request_id)
        return "bound"
    await _request_binding(account, veteran, phone.pure_phone_number, ip, request_id)
    return "pending"


async def _mismatch(account: WechatAccount, veteran: Veteran | None, name: str) -> str:
    """Why this is not the caller's roster entry, for the audit row only; "" when it is."""
    if veteran is None:
        return "unknown_id"
    if normalize_name(name) != normalize_name(veteran.name):
        return "name"
    if veteran.status != "active":
        return "inactive"
    taken = await WechatAccount.filter(veteran_id=veteran.id).exclude(id=account.id).exists()
    return "bound_elsewhere" if taken else ""


async def _bind_now(account: WechatAccount, veteran: Veteran, ip: str, request_id: str) -> None:
    now = _now()
    try:
        async with in_transaction():
            updated = await WechatAccount.filter(id=account.id, veteran_id__isnull=True).update(
                veteran_id=veteran.id, bound_at=now
            )
            if updated != 1:
                raise AlreadyBound()
            await BindingEvent.create(account=account, veteran=veteran, action="bound")
            actor = Actor("account", account.id, ip, request_id)
            await _cancel_pending(account.id, veteran.id, actor)
            await audit.record(
                "account",
                account.id,
                "binding.bound",
                "veteran",
                veteran.id,
                {"account_id": account.id, "by": "phone"},
                ip,
                request_id,
            )
    except IntegrityError:
        # Another account bound this veteran a moment ago: the unique column decided.
        logger.info("binding race lost by account %s", account.id)
        raise BindingMismatch() from None
    account.veteran_id, account.bound_at = veteran.id, now  # type: ignore[attr-defined]
    logger.info("account %s bound to veteran %s", account.id, veteran.id)


async def _request_binding(
    account: WechatAccount, veteran: Veteran, phone: str, ip: str, request_id: str
) -> None:
    pending = await BindingRequest.filter(
        account_id=account.id, veteran_id=veteran.id, status="pending"
    ).first()
    if pending is not None:
        return
    async with in_transaction():
        request = await BindingRequest.create(
            account=account,
            veteran=veteran,
            county_code=veteran.county_code,
            phone_masked=mask_phone(phone),
        )
        await BindingEvent.create(account=account, veteran=veteran, action="pending")
        await audit.record(
            "account",
            account.id,
            "binding.requested",
            "binding_request",
            request.id,
            {"veteran_id": veteran.id},
            ip,
            request_id,
        )
    logger.info("binding request %s waits for a clerk", request.id)


async def _cancel_pending(account_id: int, veteran_id: int, actor: Actor) -> None:
    """Once a binding is made, other requests from this account or for this veteran are moot."""
    waiting = BindingRequest.filter(
        Q(account_id=account_id) | Q(veteran_id=veteran_id), status="pending"
    )
    for request in await waiting:
        await BINDING_REQUEST.move(request, "cancelled", actor, reason="binding made")


async def binding_state(account: WechatAccount) -> Literal["unbound", "pending", "bound"]:
    """Bound, waiting for a clerk, or neither."""
    if account.veteran_id is not None:  # type: ignore[attr-defined]
        return "bound"
    waiting = await BindingRequest.filter(account_id=account.id, status="pending").exists()
    return "pending" if waiting else "unbound"


# -- staff side (portal) --------------------------------------------------------------------


async def _in_scope(staff: StaffUser, county_code: str) -> None:
    await staff.fetch_related("region")
    if not await regions.is_within(staff.region, county_code):
        raise NotFound()


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise ValidationFailed(details={"fields": {"reason": "请填写原因"}})
    if len(text) > 255:
        raise ValidationFailed(details={"fields": {"reason": "原因最多255个字"}})
    return text


async def _pending_request(binding_request_id: int, staff: StaffUser) -> BindingRequest:
    request = await BindingRequest.get_or_none(id=binding_request_id).select_related(
        "account", "veteran"
    )
    if request is None:
        raise NotFound()
    await _in_scope(staff, request.county_code)
    if request.status != "pending":
        raise InvalidTransition("该绑定申请已处理。", details={"status": request.status})
    return request


async def confirm_binding(
    binding_request_id: int, staff: StaffUser, reason: str, ip: str = "", request_id: str = ""
) -> None:
    """A clerk saw the person and the ID card at the station: bind the account."""
    text = _reason(reason)
    request = await _pending_request(binding_request_id, staff)
    account, veteran = request.account, request.veteran
    if veteran.status != "active":
        raise InvalidTransition("名册中该人员不是正常状态，不能绑定。")
    actor = Actor("staff", staff.id, ip, request_id)
    now = _now()
    try:
        async with in_transaction():
            await BINDING_REQUEST.move(
                request,
                "confirmed",
                actor,
                reason=text,
                changes={"decided_by_id": staff.id, "decided_at": now, "reason": text},
            )
            updated = await WechatAccount.filter(id=account.id, veteran_id__isnull=True).update(
                veteran_id=veteran.id, bound_at=now
            )
            if updated != 1:
                raise Conflict("该微信账号已绑定其他人员，请先解除绑定。")
            await BindingEvent.create(
                account=account, veteran=veteran, action="confirmed", reason=text, staff=staff
            )
            await _cancel_pending(account.id, veteran.id, actor)
            await audit.record(
                "staff",
                staff.id,
                "binding.confirmed",
                "veteran",
                veteran.id,
                {"account_id": account.id, "binding_request_id": request.id, "reason": text},
                ip,
                request_id,
            )
    except IntegrityError:
        raise Conflict("该退役军人已绑定其他微信账号，请先解除绑定。") from None
    logger.info("binding request %s confirmed by staff %s", request.id, staff.id)


async def reject_binding(
    binding_request_id: int, staff: StaffUser, reason: str, ip: str = "", request_id: str = ""
) -> None:
    """A clerk could not confirm the person: the request ends, the account stays unbound."""
    text = _reason(reason)
    request = await _pending_request(binding_request_id, staff)
    actor = Actor("staff", staff.id, ip, request_id)
    async with in_transaction():
        await BINDING_REQUEST.move(
            request,
            "rejected",
            actor,
            reason=text,
            changes={"decided_by_id": staff.id, "decided_at": _now(), "reason": text},
        )
        await BindingEvent.create(
            account_id=request.account_id,  # type: ignore[attr-defined]
            veteran_id=request.veteran_id,  # type: ignore[attr-defined]
            action="rejected",
            reason=text,
            staff=staff,
        )
        await audit.record(
            "staff",
            staff.id,
            "binding.rejected",
            "binding_request",
            request.id,
            {"reason": text},
            ip,
            request_id,
        )


async def unbind(
    veteran_id: int, staff: StaffUser, reason: str, ip: str = "", request_id: str = ""
) -> None:
    """Staff end a binding: the account loses the veteran and every token it holds."""
    text = _reason(reason)
    veteran = await Veteran.get_or_none(id=veteran_id)
    if veteran is None:
        raise NotFound()
    await _in_scope(staff, veteran.county_code)
    account = await WechatAccount.get_or_none(veteran_id=veteran.id)
    if account is None:
        raise InvalidTransition("该人员未绑定微信账号。")
    now = _now()
    async with in_transaction():
        updated = await WechatAccount.filter(id=account.id, veteran_id=veteran.id).update(
            veteran_id=None, bound_at=None
        )
        if updated != 1:
            raise Conflict()
        revoked = await ApiToken.filter(account_id=account.id, revoked_at__isnull=True).update(
            revoked_at=now
        )
        await BindingEvent.create(
            account=account, veteran=veteran, action="unbound", reason=text, staff=staff
        )
        await audit.record(
            "staff",
            staff.id,
            "binding.unbound",
            "veteran",
            veteran.id,
            {"account_id": account.id, "reason": text, "tokens_revoked": revoked},
            ip,
            request_id,
        )
    logger.info("veteran %s unbound from account %s by staff %s", veteran.id, account.id, staff.id)


async def pending_binding_requests(
    staff: StaffUser, after_id: int | None = None, limit: int = 50
) -> list[BindingRequest]:
    """Requests waiting for a clerk in the staff member's region, oldest first (keyset paged)."""
    await staff.fetch_related("region")
    query = BindingRequest.filter(
        status="pending", county_code__startswith=staff.region.scope_prefix
    )
    if after_id is not None:
        query = query.filter(id__gt=after_id)
    return await query.order_by("id").limit(limit).select_related("veteran", "account")


# -- throttling -----------------------------------------------------------------------------


async def _throttle(key: str, limit: int, window_seconds: int) -> None:
    count = await context.current().store.hit(key, window_seconds)
    if count > limit:
        raise RateLimited(details={"retry_after_seconds": window_seconds})
