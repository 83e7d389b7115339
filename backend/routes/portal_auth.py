"""Portal login (password, then TOTP when owed), logout, home, static files and error pages."""

from __future__ import annotations

import logging
from urllib.parse import quote

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse

from backend.app import client_ip
from backend.errors import AccountLocked, AppError, Unauthenticated, ValidationFailed
from backend.models.notifications import PhoneTask
from backend.models.registrations import AnnualRegistration, Interview
from backend.models.staff import StaffSession, StaffUser
from backend.models.veterans import BindingRequest
from backend.routes.portal_common import (
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    cookie_value,
    drop_cookie,
    flash,
    form_value,
    new_login_csrf,
    redirect,
    render,
    render_portal_error,
    safe_next,
    scope_prefix,
    set_cookie,
    staff_required,
    static_dir,
)
from backend.services import staff as staff_service
from backend.services import totp

logger = logging.getLogger(__name__)

bp = Blueprint("portal_auth", url_prefix=COOKIE_PATH)
bp.static("/static", str(static_dir()), name="static")


@bp.before_server_start
async def install_error_pages(app: Sanic) -> None:
    """backend.app renders AppErrors on /portal paths through this hook."""
    app.ctx.render_portal_error = render_portal_error


def _login_page(request: Request, status: int = 200, **ctx: object) -> HTTPResponse:
    token = new_login_csrf()
    request.ctx.login_csrf = token
    next_url = safe_next(request, request.args.get("next") or str(ctx.pop("next", "") or ""))
    response = render(request, "auth/login.html", status=status, next=next_url, **ctx)
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token)
    return response


@bp.get("/login", name="login")
async def show_login(request: Request) -> HTTPResponse:
    """The login form; a double-submit token guards it against login CSRF."""
    return _login_page(request)


@bp.post("/login", name="login_submit")
async def submit_login(request: Request) -> HTTPResponse:
    """Check the password, open a session, set the cookie and go where the user was heading."""
    check_csrf(request, cookie_value(request, LOGIN_CSRF_COOKIE))
    username = form_value(request, "username").strip()[:64]
    password = form_value(request, "password")[:256]
    next_url = safe_next(request, form_value(request, "next"))
    if not username or not password:
        return _login_page(
            request,
            422,
            error=ValidationFailed("请输入用户名和密码。"),
            username=username,
            next=next_url,
        )
    try:
        staff = await staff_service.authenticate(
            username, password, client_ip(request), request.ctx.request_id
        )
    except AppError as exc:
        return _login_page(request, exc.status, error=exc, username=username, next=next_url)

    owed = staff_service.second_factor(staff)
    if owed:
        return await _start_second_factor(request, staff, owed, next_url)
    opened = await staff_service.open_session(staff, client_ip(request))
    response = redirect(request, next_url)
    set_cookie(
        request,
        response,
        SESSION_COOKIE,
        opened.cookie,
        max_age=request.app.ctx.settings.session_hours * 3600,
    )
    drop_cookie(request, response, LOGIN_CSRF_COOKIE)
    logger.info("staff %s logged in", staff.id)
    return response


async def _start_second_factor(
    request: Request, staff: StaffUser, owed: str, next_url: str
) -> HTTPResponse:
    # The pending cookie replaces any older session cookie: only the TOTP pages accept it.
    if owed == "setup":
        await totp.start_enrolment(staff)
    opened = await staff_service.open_session(staff, client_ip(request), pending=True)
    page = "/portal/login/totp/setup" if owed == "setup" else "/portal/login/totp"
    response = redirect(request, page + "?next=" + quote(next_url, safe=""))
    lifetime = int(staff_service.PENDING_LIFETIME.total_seconds())
    set_cookie(request, response, SESSION_COOKIE, opened.cookie, max_age=lifetime)
    drop_cookie(request, response, LOGIN_CSRF_COOKIE)
    return response


async def _pending(request: Request) -> StaffSession | None:
    session = await staff_service.pending_session_for(cookie_value(request, SESSION_COOKIE))
    # Its CSRF token goes into the form; request.ctx.staff stays unset (no navigation).
    request.ctx.staff_session = session
    return session


def _expired(request: Request) -> HTTPResponse:
    request.ctx.staff_session = None
    flash(request, "登录已超时，请重新输入用户名和密码。", "warning")
    response = redirect(request, "/portal/login")
    drop_cookie(request, response, SESSION_COOKIE)
    return response


async def _code_page(
    request: Request, session: StaffSession, next_url: str, status: int = 200, **ctx: object
) -> HTTPResponse:
    """The code form, or the enrolment page while the account has no confirmed TOTP."""
    staff: StaffUser = session.staff
    if staff.totp_confirmed_at is not None:
        return render(request, "auth/totp.html", status=status, next=next_url, **ctx)
    enrolment = await totp.pending_enrolment(staff)
    if enrolment is None:
        return _expired(request)
    return render(
        request, "auth/totp_setup.html", status=status, next=next_url, enrolment=enrolment, **ctx
    )


@bp.get("/login/totp", name="login_totp")
@bp.get("/login/totp/setup", name="login_totp_setup")
async def show_login_totp(request: Request) -> HTTPResponse:
    """Second step of the login: the TOTP code, or enrolment when it is required and missing.

    Both paths show whichever the account's state calls for, so a stale link cannot
    offer enrolment to an account that already has a TOTP.
    """
    session = await _pending(request)
    if session is None:
        return _expired(request)
    return await _code_page(request, session, safe_next(request, request.args.get("next")))


@bp.post("/login/totp", name="login_totp_submit")
async def submit_login_totp(request: Request) -> HTTPResponse:
    """Check the code; a full session under a new cookie replaces the pending one."""
    session = await _pending(request)
    if session is None:
        return _expired(request)
    check_csrf(request, session.csrf_token)
    next_url = safe_next(request, form_value(request, "next"))
    try:
        opened = await staff_service.finish_login(
            session,
            form_value(request, "code")[:16],
            ip=client_ip(request),
            request_id=request.ctx.request_id,
        )
    except (AccountLocked, Unauthenticated) as exc:
        request.ctx.staff_session = None
        response = _login_page(request, exc.status, error=exc, next=next_url)
        drop_cookie(request, response, SESSION_COOKIE)
        return response
    except AppError as exc:
        return await _code_page(request, session, next_url, exc.status, error=exc)

    response = redirect(request, next_url)
    set_cookie(
        request,
        response,
        SESSION_COOKIE,
        opened.cookie,
        max_age=request.app.ctx.settings.session_hours * 3600,
    )
    logger.info("staff %s logged in with TOTP", opened.session.staff_id)
    return response


@bp.post("/login/totp/cancel", name="login_totp_cancel")
async def cancel_login_totp(request: Request) -> HTTPResponse:
    """Give up the second step: the pending session is revoked."""
    session = await _pending(request)
    if session is not None:
        check_csrf(request, session.csrf_token)
        await staff_service.close_session(cookie_value(request, SESSION_COOKIE))
    request.ctx.staff_session = None
    response = redirect(request, "/portal/login")
    drop_cookie(request, response, SESSION_COOKIE)
    return response


@bp.get("/account/totp", name="account_totp")
@staff_required()
async def show_account_totp(request: Request, staff: StaffUser) -> HTTPResponse:
    """The staff member's own TOTP: status, or the enrolment in progress."""
    return render(
        request,
        "auth/account_totp.html",
        enrolment=await totp.pending_enrolment(staff),
        required=request.app.ctx.settings.totp_enforced,
    )


@bp.post("/account/totp/start", name="account_totp_start")
@staff_required()
async def start_account_totp(request: Request, staff: StaffUser) -> HTTPResponse:
    """Create the pending secret; the page then shows it until a code confirms it."""
    await totp.start_enrolment(staff)
    return redirect(request, "/portal/account/totp")


@bp.post("/account/totp/confirm", name="account_totp_confirm")
@staff_required()
async def confirm_account_totp(request: Request, staff: StaffUser) -> HTTPResponse:
    """Turn TOTP on with a code from the new authenticator; a typo here locks nothing."""
    try:
        await staff_service.confirm_enrolment(
            staff,
            form_value(request, "code")[:16],
            counts_to_lockout=False,
            ip=client_ip(request),
            request_id=request.ctx.request_id,
        )
    except ValidationFailed as exc:
        return render(
            request,
            "auth/account_totp.html",
            status=exc.status,
            error=exc,
            enrolment=await totp.pending_enrolment(staff),
            required=request.app.ctx.settings.totp_enforced,
        )
    flash(request, "动态验证码已启用，下次登录时需要输入。")
    return redirect(request, "/portal/account/totp")


@bp.post("/logout", name="logout")
@staff_required()
async def submit_logout(request: Request, staff: StaffUser) -> HTTPResponse:
    """Revoke this session; the cookie is cleared as well."""
    await staff_service.close_session(cookie_value(request, SESSION_COOKIE))
    request.ctx.staff = None
    flash(request, "您已安全退出。", "info")
    response = redirect(request, "/portal/login")
    drop_cookie(request, response, SESSION_COOKIE)
    return response


@bp.get("/", name="home")
@staff_required()
async def show_home(request: Request, staff: StaffUser) -> HTTPResponse:
    """Counts of open work in the user's scope; each count is one indexed COUNT query."""
    prefix = scope_prefix(staff)
    counts = {
        "to_review": await AnnualRegistration.filter(
            status="submitted", county_code__startswith=prefix
        ).count(),
        "returned": await AnnualRegistration.filter(
            status="returned", county_code__startswith=prefix
        ).count(),
        "pending_bindings": await BindingRequest.filter(
            status="pending", county_code__startswith=prefix
        ).count(),
        "phone_tasks": await PhoneTask.filter(
            status="open", county_code__startswith=prefix
        ).count(),
        "interviews": await Interview.filter(
            status__in=("planned", "held"), county_code__startswith=prefix
        ).count(),
    }
    return render(request, "auth/home.html", counts=counts)
