"""Mini-program API of the annual registration: current status, draft, submission, history."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.app import client_ip
from backend.errors import (
    Conflict,
    InvalidTransition,
    NotBound,
    NotFound,
    PrivacyNotAccepted,
    RegistrationClosed,
    RegistrationNotRequired,
    Unauthenticated,
    ValidationFailed,
)
from backend.models import AnnualRegistration, Veteran, WechatAccount
from backend.routes.common import api_route, respond
from backend.schemas.registrations import (
    SECTIONS,
    CommentPublic,
    RegistrationContent,
    RegistrationCurrentPublic,
    RegistrationListPublic,
    RegistrationPublic,
    RegistrationSummaryPublic,
    SubmissionCreate,
    WindowPublic,
)
from backend.services import registrations

bp = Blueprint("api_registrations", url_prefix="/api/v1")

TAG = "年度登记"
AUTH_ERRORS = [Unauthenticated, PrivacyNotAccepted, NotBound]


def _veteran(account: WechatAccount) -> Veteran:
    # authenticate(require_bound=True) fetched the bound veteran with the token.
    return account.veteran  # type: ignore[return-value]


def _public(reg: AnnualRegistration) -> RegistrationPublic:
    return RegistrationPublic(
        report_year=reg.report_year,
        status=reg.status,
        channel=reg.channel,
        content=reg.draft or {},
        current_version=reg.current_version,
        submitted_at=reg.submitted_at,
        correction_deadline=reg.correction_deadline,
        reviewed_at=reg.reviewed_at,
    )


@api_route(
    bp,
    "GET",
    "/registrations/current",
    summary="本年度登记状态：开放时间、是否须登记、草稿、审核意见与补正期限",
    tag=TAG,
    response=RegistrationCurrentPublic,
    errors=AUTH_ERRORS,
)
async def get_current_registration(request: Request, account: WechatAccount) -> HTTPResponse:
    """The current report year's registration as the veteran sees it."""
    state = await registrations.current_status(_veteran(account))
    window = state.window
    reg = state.registration
    comments = [
        CommentPublic(
            section=c.section,
            section_label=SECTIONS.get(c.section, c.section),
            comment=c.comment,
            version_no=c.version.version_no,
            created_at=c.created_at,
        )
        for c in state.comments
    ]
    public = RegistrationCurrentPublic(
        report_year=window.report_year,
        window=WindowPublic(
            report_year=window.report_year,
            opens_on=window.opens_on,
            closes_on=window.closes_on,
            is_open=state.is_open,
            message=window.message,
        ),
        must_file=state.must_file,
        status=reg.status if reg else None,
        can_edit=state.can_edit,
        can_submit=state.can_submit,
        blocked_reason=state.blocked_reason,
        registration=_public(reg) if reg else None,
        comments=comments,
        correction_deadline=reg.correction_deadline if reg else None,
        late_filing_deadline=state.late_filing_deadline,
    )
    return respond(public)


@api_route(
    bp,
    "PUT",
    "/registrations/<year:int>/draft",
    summary="保存登记草稿（未提交或被退回补正时可保存）",
    tag=TAG,
    body=RegistrationContent,
    response=RegistrationPublic,
    errors=[*AUTH_ERRORS, ValidationFailed, RegistrationNotRequired, InvalidTransition, NotFound],
)
async def save_registration_draft(
    request: Request, year: int, account: WechatAccount, body: RegistrationContent
) -> HTTPResponse:
    """Save the draft of one reported year."""
    reg = await registrations.save_draft(_veteran(account), year, body)
    return respond(_public(reg))


@api_route(
    bp,
    "POST",
    "/registrations/<year:int>/submission",
    summary="提交年度登记（重复点击只生成一次提交）",
    tag=TAG,
    body=SubmissionCreate,
    response=RegistrationPublic,
    errors=[
        *AUTH_ERRORS,
        ValidationFailed,
        RegistrationClosed,
        RegistrationNotRequired,
        InvalidTransition,
        Conflict,
        NotFound,
    ],
)
async def submit_registration(
    request: Request, year: int, account: WechatAccount, body: SubmissionCreate
) -> HTTPResponse:
    """Submit the saved draft, or the content sent with it."""
    reg = await registrations.submit(
        _veteran(account),
        year,
        body.content,
        ip=client_ip(request),
        request_id=str(getattr(request.ctx, "request_id", "")),
    )
    return respond(_public(reg))


@api_route(
    bp,
    "GET",
    "/registrations",
    summary="历年登记记录",
    tag=TAG,
    response=RegistrationListPublic,
    errors=AUTH_ERRORS,
)
async def list_my_registrations(request: Request, account: WechatAccount) -> HTTPResponse:
    """Every registration of the veteran, newest year first."""
    rows = await registrations.veteran_registrations(_veteran(account))
    items = [
        RegistrationSummaryPublic(
            report_year=reg.report_year,
            status=reg.status,
            channel=reg.channel,
            current_version=reg.current_version,
            submitted_at=reg.submitted_at,
            reviewed_at=reg.reviewed_at,
            correction_deadline=reg.correction_deadline,
        )
        for reg in rows
    ]
    return respond(RegistrationListPublic(items=items))
