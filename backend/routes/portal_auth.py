"""Portal login, logout, home page and static files; installs the portal's error pages."""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse

from backend.app import client_ip
from backend.errors import AppError, ValidationFailed
from backend.models.notifications import PhoneTask
from backend.models.registrations import AnnualRegistration, Interview
from backend.models.staff import StaffUser
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
