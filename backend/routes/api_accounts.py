"""Mini-program API: login, logout, privacy consent, binding and /me."""

from __future__ import annotations

import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.app import client_ip
from backend.errors import (
    AlreadyBound,
    BindingMismatch,
    PrivacyNotAccepted,
    RateLimited,
    Unauthenticated,
    WechatBadAnswer,
    WechatBusy,
    WechatCodeInvalid,
    WechatConfigError,
    WechatPhoneCodeInvalid,
    WechatRefused,
    WechatTimeout,
)
from backend.models import Region, WechatAccount
from backend.models.veterans import Veteran
from backend.routes.common import api_route, respond
from backend.schemas.accounts import (
    BindingCreate,
    BindingPublic,
    MePublic,
    PrivacyConsentCreate,
    PrivacyConsentPublic,
    RegistrationGlancePublic,
    SessionCreate,
    SessionPublic,
    VeteranPublic,
)
from backend.services import accounts

logger = logging.getLogger(__name__)

bp = Blueprint("api_accounts", url_prefix="/api/v1")

TAG = "账号与绑定"
WECHAT_ERRORS = [WechatBusy, WechatTimeout, WechatConfigError, WechatRefused, WechatBadAnswer]

STATUS_LABELS = {
    "active": "正常",
    "suspended": "暂停发放",
    "deceased": "已故",
    "transferred": "已转出",
}


def _request_id(request: Request) -> str:
    return str(getattr(request.ctx, "request_id", ""))


@api_route(
    bp,
    "POST",
    "/sessions",
    summary="用 wx.login 的 code 登录，换取本平台的令牌",
    tag=TAG,
    body=SessionCreate,
    response=SessionPublic,
    status=201,
    auth=None,
    errors=[WechatCodeInvalid, RateLimited, *WECHAT_ERRORS],
)
async def create_session(request: Request, body: SessionCreate) -> HTTPResponse:
    """Log in with a wx.login code."""
    account, token, expires_at = await accounts.login(body.code, client_ip(request))
    public = SessionPublic(
        token=token,
        expires_at=expires_at,
        privacy_accepted=accounts.privacy_accepted(account),
        privacy_version=request.app.ctx.settings.privacy_version,
        bound=account.veteran_id is not None,  # type: ignore[attr-defined]
    )
    return respond(public, 201)


@api_route(
    bp,
    "DELETE",
    "/sessions/current",
    summary="退出登录：当前令牌立即失效",
    tag=TAG,
    status=204,
    auth="account",
    errors=[Unauthenticated],
)
async def delete_session(request: Request, account: WechatAccount) -> HTTPResponse:
    """Revoke the token this request carries."""
    await accounts.logout(request.ctx.token_id)
    return respond(None)


@api_route(
    bp,
    "POST",
    "/privacy-consents",
    summary="同意隐私保护说明（记录版本与时间）",
    tag=TAG,
    body=PrivacyConsentCreate,
    response=PrivacyConsentPublic,
    auth="account",
    errors=[Unauthenticated],
)
async def create_privacy_consent(
    request: Request, body: PrivacyConsentCreate, account: WechatAccount
) -> HTTPResponse:
    """Accept the privacy notice version now in force."""
    accepted_at = await accounts.accept_privacy(
        account, body.version, client_ip(request), _request_id(request)
    )
    return respond(PrivacyConsentPublic(privacy_version=body.version, accepted_at=accepted_at))


@api_route(
    bp,
    "POST",
    "/bindings",
    summary="绑定名册身份（姓名、身份证号、微信手机号）",
    tag=TAG,
    body=BindingCreate,
    response=BindingPublic,
    status=201,
    auth="account",
    errors=[
        Unauthenticated,
        PrivacyNotAccepted,
        AlreadyBound,
        BindingMismatch,
        WechatPhoneCodeInvalid,
        RateLimited,
        *WECHAT_ERRORS,
    ],
    alternatives={202: BindingPublic},
)
async def create_binding(
    request: Request, body: BindingCreate, account: WechatAccount
) -> HTTPResponse:
    """Bind at once when the WeChat phone matches the roster; otherwise wait for a clerk."""
    outcome = await accounts.bind(
        account,
        body.name,
        body.id_number,
        body.phone_code,
        client_ip(request),
        _request_id(request),
    )
    if outcome == "bound":
        return respond(BindingPublic(status="bound", message=accounts.BOUND_MESSAGE), 201)
    return respond(BindingPublic(status="pending", message=accounts.PENDING_MESSAGE), 202)


@api_route(
    bp,
    "GET",
    "/me",
    summary="我的信息：绑定状态、名册信息（脱敏）与本年度登记概况",
    tag=TAG,
    response=MePublic,
    auth="account",
    errors=[Unauthenticated],
)
async def get_me(request: Request, account: WechatAccount) -> HTTPResponse:
    """Who is logged in; the veteran came with the token's query."""
    veteran: Veteran | None = account.veteran  # type: ignore[assignment]
    public = MePublic(
        binding=await accounts.binding_state(account),
        privacy_accepted=accounts.privacy_accepted(account),
        privacy_version_accepted=account.privacy_version,
        privacy_version=request.app.ctx.settings.privacy_version,
        veteran=await _veteran_public(veteran) if veteran is not None else None,
        registration=await _registration_summary(veteran) if veteran is not None else None,
    )
    return respond(public)


# Region names are reference data that never change while the service runs; caching them in
# the process saves /me a query and is never the only copy of anything.
_county_names: dict[str, str] = {}


async def _county_name(code: str) -> str:
    if code not in _county_names:
        names = await Region.filter(code=code).values_list("name", flat=True)
        if not names:
            return ""
        _county_names[code] = str(names[0])
    return _county_names[code]


async def _veteran_public(veteran: Veteran) -> VeteranPublic:
    return VeteranPublic(
        id=veteran.id,
        name=veteran.name,
        id_masked=veteran.id_masked,
        phone_masked=veteran.phone_masked,
        county_code=veteran.county_code,
        county_name=await _county_name(veteran.county_code),
        status=veteran.status,
        status_label=STATUS_LABELS.get(veteran.status, veteran.status),
    )


async def _registration_summary(veteran: Veteran) -> RegistrationGlancePublic | None:
    # Imported here: the registrations service imports the notification outbox and more,
    # none of which login needs.
    from backend.services import registrations

    return RegistrationGlancePublic.model_validate(await registrations.status_summary(veteran))
