"""What every staff portal page shares: templates, login guard, CSRF, flashes, scope, paging.

How a portal handler looks::

    bp = Blueprint("portal_things", url_prefix="/portal")

    @bp.get("/things")
    @staff_required()
    async def list_things(request: Request, staff: StaffUser) -> HTTPResponse:
        page = await keyset_page(Thing.filter(county_code__startswith=scope_prefix(staff)),
                                 *page_args(request))
        return render(request, "things/list.html", page=page)

    @bp.post("/things/<thing_id:int>/close")
    @staff_required(lead=True)
    async def close_thing(request: Request, staff: StaffUser, thing_id: int) -> HTTPResponse:
        ...                          # the CSRF token was already checked by staff_required
        flash(request, "已关闭。")
        return redirect(request, f"/portal/things/{thing_id}")

- Every POST through ``staff_required`` has its ``csrf_token`` form field (or X-CSRF-Token
  header) compared in constant time with the session's token; templates put
  ``{{ csrf_field() }}`` inside each form.
- Flashes live in a signed cookie: ``flash()`` queues a message, ``redirect()`` writes the
  queue into the cookie, the next ``render()`` shows and clears it. Use this module's
  ``redirect``, not Sanic's, after a flash.
- An AppError raised on a /portal path becomes error.html with its Chinese message and
  status; a refused form post (validation, conflict, wrong state) is flashed and sent back
  to the page it came from (303). 401 on GET goes to the login page.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sanic import Request
from sanic.response import HTTPResponse, html
from tortoise.queryset import QuerySet

from backend.errors import (
    AppError,
    CsrfFailed,
    Forbidden,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from backend.models.regions import scope_prefix as region_scope_prefix
from backend.models.staff import StaffUser

logger = logging.getLogger(__name__)

SESSION_COOKIE = "portal_session"
FLASH_COOKIE = "portal_flash"
LOGIN_CSRF_COOKIE = "portal_login_csrf"
COOKIE_PATH = "/portal"
SHANGHAI = ZoneInfo("Asia/Shanghai")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

Handler = Callable[..., Awaitable[HTTPResponse]]
T = TypeVar("T")


def templates_dir() -> Path:
    """admin_portal/templates, found as package data (admin_portal is never imported for code)."""
    import importlib.resources

    return Path(str(importlib.resources.files("admin_portal") / "templates"))


def static_dir() -> Path:
    import importlib.resources

    return Path(str(importlib.resources.files("admin_portal") / "static"))


def _local(value: dt.datetime | dt.date | None, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            # Naive values from the database are UTC (use_tz with timezone UTC).
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(SHANGHAI).strftime(fmt)
    return value.strftime(fmt[:8] if fmt.startswith("%Y-%m-%d") else fmt)


def local_datetime(value: dt.datetime | dt.date | None) -> str:
    """A UTC datetime shown in Asia/Shanghai, to the minute."""
    return _local(value, "%Y-%m-%d %H:%M")


def local_date(value: dt.datetime | dt.date | None) -> str:
    """The Asia/Shanghai calendar date of a UTC datetime, or a date as it is."""
    return _local(value, "%Y-%m-%d")


def _build_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_dt"] = local_datetime
    env.filters["local_date"] = local_date
    env.globals["static_url"] = lambda name: f"{COOKIE_PATH}/static/{quote(name)}"
    return env


_env: Environment | None = None


def jinja_env() -> Environment:
    """The one template environment (autoescape on for every template)."""
    global _env
    if _env is None:
        _env = _build_env()
    return _env


# -- flashes ---------------------------------------------------------------------------------


def flash(request: Request, text: str, kind: str = "success") -> None:
    """Queue a message (kind: success, info, warning, error) for the next page shown."""
    queued: list[dict[str, str]] = getattr(request.ctx, "flash_out", [])
    queued.append({"text": text[:300], "kind": kind})
    request.ctx.flash_out = queued


def _sign(payload: bytes, request: Request) -> str:
    key = request.app.ctx.settings.secret_key.encode()
    return hmac.new(key, b"flash:" + payload, hashlib.sha256).hexdigest()


def _encode_flashes(request: Request, items: list[dict[str, str]]) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(items, ensure_ascii=False).encode())
    return payload.decode() + "." + _sign(payload, request)


def _decode_flashes(request: Request) -> list[dict[str, str]]:
    raw = cookie_value(request, FLASH_COOKIE)
    payload, _, mac = raw.partition(".")
    if not payload or not hmac.compare_digest(mac, _sign(payload.encode(), request)):
        return []
    try:
        items = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except ValueError:
        return []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def set_cookie(
    request: Request, response: HTTPResponse, name: str, value: str, max_age: int | None = None
) -> None:
    """A portal cookie: HttpOnly, SameSite=Lax, Secure unless settings turn it off.

    Lax, not Strict: a link into the portal from another site (mail, the office system)
    should arrive logged in, and no GET changes anything; every POST carries a CSRF token.
    """
    settings = request.app.ctx.settings
    response.add_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
        max_age=max_age,
    )


def drop_cookie(request: Request, response: HTTPResponse, name: str) -> None:
    """Expire a portal cookie."""
    set_cookie(request, response, name, "", max_age=0)


def _write_flashes(request: Request, response: HTTPResponse) -> None:
    queued = getattr(request.ctx, "flash_out", [])
    if queued:
        set_cookie(request, response, FLASH_COOKIE, _encode_flashes(request, queued[-10:]))


def safe_next(request: Request, target: str | None, default: str = "/portal/") -> str:
    """A redirect target on this portal only (no scheme, no host, no //), else the default."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(COOKIE_PATH):
        return default
    if "\\" in target or target.startswith("//"):
        return default
    return parts.path + (f"?{parts.query}" if parts.query else "")


def redirect(request: Request, to: str, status: int = 303) -> HTTPResponse:
    """A redirect inside the portal that carries the queued flashes along."""
    response = HTTPResponse(status=status, headers={"Location": safe_next(request, to)})
    _write_flashes(request, response)
    return response


# -- request values --------------------------------------------------------------------------


def form_value(request: Request, name: str) -> str:
    """One form field as text ("" when absent); works for urlencoded and multipart posts."""
    form = request.form
    value = form.get(name) if form else None
    return str(value) if value is not None else ""


def cookie_value(request: Request, name: str) -> str:
    value = request.cookies.get(name)
    return str(value) if value is not None else ""


# -- rendering -------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    session = getattr(request.ctx, "staff_session", None)
    if session is not None:
        return str(session.csrf_token)
    return str(getattr(request.ctx, "login_csrf", ""))


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTTPResponse:
    """Render a portal page with staff, CSRF token, flashes and url_for in its context."""
    token = csrf_token(request)
    flashes = _decode_flashes(request) + getattr(request.ctx, "flash_out", [])
    request.ctx.flash_out = []
    staff = getattr(request.ctx, "staff", None)
    values: dict[str, Any] = {
        "request": request,
        "staff": staff,
        "csrf_token": token,
        "csrf_field": lambda: Markup('<input type="hidden" name="csrf_token" value="{}">').format(
            token
        ),
        "flashes": flashes,
        "url_for": request.app.url_for,
        "path": request.path,
    }
    values.update(ctx)
    body = jinja_env().get_template(template).render(values)
    response = html(body, status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.cookies.get(FLASH_COOKIE):
        drop_cookie(request, response, FLASH_COOKIE)
    return response


# -- authentication and CSRF -----------------------------------------------------------------


def check_csrf(request: Request, expected: str) -> None:
    """Constant-time comparison of the form's (or header's) token with the expected one."""
    sent = request.headers.get("x-csrf-token", "")
    if not sent:
        sent = form_value(request, "csrf_token")
    if not expected or not sent or not hmac.compare_digest(str(sent), expected):
        raise CsrfFailed


def staff_required(
    *, lead: bool = False, level: str | Sequence[str] | None = None
) -> Callable[[Handler], Handler]:
    """Guard a portal handler: a live session, CSRF on POST, role and region level.

    lead=True admits only leads; level ("province", "city", "county" or a tuple of them)
    admits only staff whose region has that level. The handler receives `staff` (with
    `staff.region` loaded) as a keyword argument; request.ctx.staff is set too.
    """
    levels = (level,) if isinstance(level, str) else tuple(level or ())

    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapped(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            from backend.services.staff import session_for

            session = await session_for(cookie_value(request, SESSION_COOKIE))
            if session is None:
                raise Unauthenticated("请先登录。")
            request.ctx.staff_session = session
            request.ctx.staff = session.staff
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                check_csrf(request, session.csrf_token)
            if lead and session.staff.role != "lead":
                raise Forbidden
            if levels and session.staff.region.level not in levels:
                raise Forbidden
            return await handler(request, *args, staff=session.staff, **kwargs)

        return wrapped

    return decorate


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


# -- scope and paging ------------------------------------------------------------------------


def scope_prefix(staff: StaffUser) -> str:
    """The region-code prefix of everything this staff member may see."""
    region = staff.region
    return region_scope_prefix(region.code, region.level)


def in_scope(staff: StaffUser, county_code: str) -> bool:
    return bool(county_code) and county_code.startswith(scope_prefix(staff))


def in_scope_or_404(staff: StaffUser, county_code: str) -> None:
    """Another region's record answers exactly like a record that does not exist."""
    if not in_scope(staff, county_code):
        raise NotFound


@dataclass
class Page:
    """One page of a keyset listing, newest first; `next_after` is the cursor or None."""

    items: list[Any]
    next_after: int | None
    limit: int


def page_args(request: Request, default: int = PAGE_SIZE) -> tuple[int | None, int]:
    """The `after` cursor and `limit` from the query string; nonsense is refused, not guessed."""
    after_raw = request.args.get("after", "")
    limit_raw = request.args.get("limit", "")
    try:
        after = int(after_raw) if after_raw else None
        limit = int(limit_raw) if limit_raw else default
    except ValueError as exc:
        raise ValidationFailed("分页参数不正确。") from exc
    if (after is not None and after < 1) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValidationFailed("分页参数不正确。")
    return after, limit


async def keyset_page(
    query: QuerySet[Any], after: int | None, limit: int, field: str = "id"
) -> Page:
    """Rows with `field` below the cursor, highest first: no OFFSET, fast on any page."""
    if after is not None:
        query = query.filter(**{f"{field}__lt": after})
    rows = list(await query.order_by(f"-{field}").limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, getattr(rows[-1], field) if more and rows else None, limit)


def query_without(request: Request, *names: str) -> str:
    """The current query string without some keys, for building 'next page' links."""
    from urllib.parse import urlencode

    pairs = [(k, v) for k, vs in request.args.items() if k not in names for v in vs]
    return urlencode(pairs)


# -- errors ----------------------------------------------------------------------------------


def _back(request: Request) -> str | None:
    referer = request.headers.get("referer", "")
    if not referer:
        return None
    parts = urlsplit(referer)
    if parts.netloc and parts.netloc != request.host:
        return None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return safe_next(request, target, default="") or None


def _details_text(error: AppError) -> str:
    fields = error.details.get("fields") if isinstance(error.details, dict) else None
    if isinstance(fields, dict) and fields:
        return "；".join(str(v) for v in fields.values())
    return ""


async def render_portal_error(request: Request, error: AppError) -> HTTPResponse:
    """Turn an AppError on a /portal path into a page, a login redirect or a flash."""
    is_get = request.method in ("GET", "HEAD")
    if error.status == 401 and is_get:
        target = request.path + (f"?{request.query_string}" if request.query_string else "")
        return redirect(request, "/portal/login?next=" + quote(target, safe=""))
    back = None if is_get else _back(request)
    flashable = error.status in (400, 409, 413, 422, 423) or isinstance(error, ValidationFailed)
    if back and flashable and getattr(request.ctx, "staff", None) is not None:
        extra = _details_text(error)
        flash(request, error.message + (f"（{extra}）" if extra else ""), "error")
        return redirect(request, back)
    return render(request, "error.html", status=error.status, error=error)
