"""Portal pages of the annual registration review (rule 6.3): list, review, on-site entry, windows.

Every page is limited to the staff member's region on the server: another county's record by
URL answers 404, exactly like a missing one. Decisions are POSTs carrying the CSRF token and
the lock_version the clerk saw, so a clerk who acts on a stale page gets a conflict message
and the current state instead of overwriting a colleague's decision.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any, TypedDict
from urllib.parse import urlencode

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend import context
from backend.app import client_ip
from backend.errors import Conflict, InvalidTransition, NotFound, SameClerk, ValidationFailed
from backend.models import (
    AnnualRegistration,
    Interview,
    LateFilingPermit,
    Region,
    RegistrationWindow,
    StaffUser,
    Veteran,
)
from backend.routes.portal_common import (
    COOKIE_PATH,
    flash,
    in_scope_or_404,
    redirect,
    render,
    scope_prefix,
    staff_required,
)
from backend.schemas.registrations import MAX_ITEMS, SECTIONS
from backend.services import registrations as service
from backend.services.idcard import InvalidIdNumber, parse_id_number

logger = logging.getLogger(__name__)

bp = Blueprint("portal_registrations", url_prefix=COOKIE_PATH)

STATUSES = {"draft": "草稿", "submitted": "待审核", "returned": "退回补正", "approved": "审核通过"}
INTERVIEW_STATUSES = {
    "planned": "已安排",
    "held": "已约谈",
    "closed": "已结束",
    "cancelled": "已取消",
}
CONFLICT_TEXT = "该登记已被其他工作人员处理，请查看当前状态。"
ID_PURPOSE = "veteran.id_number"
#: blank rows offered after the filled ones in each list section of the on-site form
SPARE_ROWS = 2
YEARS_SHOWN = 6
SEARCH_LIMIT = 50
PAGE_SIZE = 50
MAX_PAGE = 200
LIST_FIELDS = {
    "associations": ("name", "role", "joined_on"),
    "trips": ("departed_on", "returned_on", "destination_kind", "destination", "purpose"),
    "rewards_punishments": ("kind", "date", "title", "issuer"),
}
#: optional dates: an empty input means "not given", not a malformed date
OPTIONAL_DATES = {"joined_on", "returned_on"}
#: selects that always send a value; a row with only these filled is still a blank row
DEFAULTED = {"destination_kind", "kind"}
FIELD_LABELS = {
    "party_life": "组织生活",
    "party_life.organisation": "所在党组织",
    "party_life.participation": "参加组织生活情况",
    "contact_changes.new_address": "新住址",
    "contact_changes.new_phone": "新手机号",
    "remarks": "备注",
}


def badge_class(status: str) -> str:
    """The badge colour of a registration or interview status."""
    return {
        "approved": "badge-ok",
        "closed": "badge-ok",
        "submitted": "badge-warn",
        "planned": "badge-warn",
        "returned": "badge-bad",
    }.get(status, "")


def _page(request: Request, template: str, **ctx: Any) -> HTTPResponse:
    return render(
        request,
        template,
        statuses=STATUSES,
        interview_statuses=INTERVIEW_STATUSES,
        badge_class=badge_class,
        **ctx,
    )


class ActorArgs(TypedDict):
    """Where a staff action came from, for the audit row."""

    ip: str
    request_id: str


def actor_args(request: Request) -> ActorArgs:
    """The caller's address and request id as keyword arguments of a service call."""
    return {"ip": client_ip(request), "request_id": getattr(request.ctx, "request_id", "")}


# -- query and form parsing ------------------------------------------------------------------


def _int_arg(request: Request, name: str, *, low: int = 1, high: int = 2**31 - 1) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationFailed(details={"fields": {name: "应为整数"}}) from exc
    if not low <= value <= high:
        raise ValidationFailed(details={"fields": {name: "数值不正确"}})
    return value


def _form(request: Request, name: str, limit: int = 2000) -> str:
    form: Any = request.form or {}
    value = str(form.get(name) or "")
    if len(value) > limit:
        raise ValidationFailed(details={"fields": {name: "内容过长"}})
    return value


def _form_int(request: Request, name: str) -> int:
    raw = _form(request, name, 12).strip()
    try:
        return int(raw)
    except ValueError as exc:
        raise ValidationFailed(details={"fields": {name: "应为整数"}}) from exc


def _form_date(request: Request, name: str, *, required: bool = True) -> date | None:
    raw = _form(request, name, 10).strip()
    if not raw and not required:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ValidationFailed(details={"fields": {name: "应为日期（如 2026-01-05）"}}) from exc


def _year_arg(request: Request, default: int) -> int:
    year = _int_arg(request, "year", low=service.FIRST_YEAR, high=service.shanghai_today().year)
    return default if year is None else year


def _years() -> list[int]:
    last = service.shanghai_today().year
    return list(range(last, max(service.FIRST_YEAR, last - YEARS_SHOWN) - 1, -1))


async def _counties(staff: StaffUser) -> dict[str, str]:
    rows = await Region.filter(level="county", code__startswith=scope_prefix(staff)).order_by(
        "code"
    )
    return {row.code: row.name for row in rows}


async def _names(ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = await StaffUser.filter(id__in=wanted).values_list("id", "display_name")
    return {int(i): str(name) for i, name in rows}


def _county_arg(request: Request, staff: StaffUser) -> str | None:
    county = request.args.get("county", "") or None
    if county is not None:
        if len(county) != 6 or not county.isdigit():
            raise ValidationFailed(details={"fields": {"county": "县区代码不正确"}})
        in_scope_or_404(staff, county)
    return county


async def veteran_in_scope(staff: StaffUser, veteran_id: int | None) -> Veteran:
    """The veteran if in the staff member's region; anything else answers 404."""
    veteran = await Veteran.get_or_none(id=veteran_id) if veteran_id else None
    if veteran is None:
        raise NotFound
    in_scope_or_404(staff, veteran.county_code)
    return veteran


def _next_query(request: Request, after_id: int | None) -> str:
    pairs = [(k, v) for k, vs in request.args.items() if k != "after_id" for v in vs]
    first = urlencode(pairs)
    if after_id is None:
        return first
    return urlencode([*pairs, ("after_id", str(after_id))])


# -- list and detail -------------------------------------------------------------------------


@bp.get("/registrations", name="registrations")
@staff_required()
async def list_registrations(request: Request, staff: StaffUser) -> HTTPResponse:
    """Registrations of one year by status and county, keyset-paged on the list's own index."""
    current = await service.current_window()
    year = _year_arg(request, current.report_year)
    status = request.args.get("status", "") or None
    if status is not None and status not in STATUSES:
        raise ValidationFailed(details={"fields": {"status": "不是允许的取值"}})
    county = _county_arg(request, staff)
    after_id = _int_arg(request, "after_id")
    limit = _int_arg(request, "limit", high=MAX_PAGE) or PAGE_SIZE

    page = await service.list_registrations(
        scope_prefix(staff), year, status, county, after_id=after_id, limit=limit
    )
    return _page(
        request,
        "registrations/list.html",
        page=page,
        year=year,
        years=_years(),
        selected_status=status or "",
        county=county or "",
        counties=await _counties(staff),
        window=await service.window_for(year),
        after=after_id,
        first_query=_next_query(request, None),
        next_query=_next_query(request, page.next_after_id),
    )


@bp.get("/registrations/<registration_id:int>", name="registration")
@staff_required()
async def show_registration(
    request: Request, staff: StaffUser, registration_id: int
) -> HTTPResponse:
    """One registration: content by section, versions, comments, diff to last year, actions."""
    detail = await service.registration_detail(staff, registration_id)
    reg = detail.registration
    wanted = _int_arg(request, "version")
    shown = detail.versions[-1] if detail.versions else None
    if wanted is not None:
        shown = next((v for v in detail.versions if v.version_no == wanted), shown)

    comments: dict[str, list[dict[str, Any]]] = {}
    for c in detail.comments:
        comments.setdefault(c.section, []).append(
            {
                "version_no": c.version.version_no,
                "staff_name": c.staff.display_name,
                "created_at": c.created_at,
                "comment": c.comment,
            }
        )
    staff_ids = {v.entered_by_id for v in detail.versions}  # type: ignore[attr-defined]
    staff_ids |= {t.actor_id for t in detail.transitions if t.actor_type == "staff"}
    staff_ids |= {reg.entered_by_id, reg.reviewed_by_id}  # type: ignore[attr-defined]
    if detail.confirmation is not None:
        staff_ids.add(detail.confirmation.confirmed_by_id)  # type: ignore[attr-defined]
    names = await _names(staff_ids)
    veteran_id = reg.veteran_id  # type: ignore[attr-defined]
    interviews = await Interview.filter(veteran_id=veteran_id).order_by("-planned_at")
    county = await Region.get_or_none(code=reg.county_code)
    today = service.shanghai_today()
    return _page(
        request,
        "registrations/detail.html",
        reg=reg,
        veteran=detail.veteran,
        county_name=county.name if county else reg.county_code,
        sections=SECTIONS,
        shown=shown,
        comments=comments,
        diff=detail.diff,
        has_previous=detail.previous_version is not None,
        versions=detail.versions,
        history=detail.transitions,
        staff_names=names,
        entered_by_name=names.get(reg.entered_by_id or 0, ""),  # type: ignore[attr-defined]
        reviewer_name=names.get(reg.reviewed_by_id or 0, ""),  # type: ignore[attr-defined]
        confirmation=detail.confirmation,
        confirmed_by_name=names.get(getattr(detail.confirmation, "confirmed_by_id", 0) or 0, ""),
        permit=detail.permit,
        window=detail.window,
        can_approve=detail.can_approve,
        same_clerk=reg.status == "submitted" and not detail.can_approve,
        default_deadline=today + timedelta(days=context.current().settings.correction_days),
        interviews=interviews,
    )


def _conflict(request: Request, registration_id: int) -> HTTPResponse:
    flash(request, CONFLICT_TEXT, "error")
    return redirect(request, f"{COOKIE_PATH}/registrations/{registration_id}")


@bp.post("/registrations/<registration_id:int>/approve", name="registration_approve")
@staff_required()
async def approve_registration(
    request: Request, staff: StaffUser, registration_id: int
) -> HTTPResponse:
    """Approve the version the clerk saw; this confirms the year's benefits."""
    lock_version = _form_int(request, "lock_version")
    try:
        reg = await service.approve(staff, registration_id, lock_version, **actor_args(request))
    except (Conflict, InvalidTransition):
        return _conflict(request, registration_id)
    except SameClerk as exc:
        flash(request, exc.message, "error")
        return redirect(request, f"{COOKIE_PATH}/registrations/{registration_id}")
    flash(request, f"已审核通过，{reg.report_year}年度待遇已确认。")
    return redirect(request, f"{COOKIE_PATH}/registrations/{registration_id}")


@bp.post("/registrations/<registration_id:int>/return", name="registration_return")
@staff_required()
async def return_registration(
    request: Request, staff: StaffUser, registration_id: int
) -> HTTPResponse:
    """Return for correction with a comment per section and a deadline (default 15 days)."""
    lock_version = _form_int(request, "lock_version")
    comments = {key: _form(request, f"comment_{key}") for key in SECTIONS}
    deadline = _form_date(request, "deadline", required=False)
    try:
        reg = await service.return_for_correction(
            staff, registration_id, lock_version, comments, deadline, **actor_args(request)
        )
    except (Conflict, InvalidTransition):
        return _conflict(request, registration_id)
    shown = reg.correction_deadline.isoformat() if reg.correction_deadline else ""
    flash(request, f"已退回补正，补正期限为 {shown}。")
    return redirect(request, f"{COOKIE_PATH}/registrations/{registration_id}")


# -- on-site entry ---------------------------------------------------------------------------


def _blank_row(section: str) -> dict[str, str]:
    row = dict.fromkeys(LIST_FIELDS[section], "")
    if section == "trips":
        row["destination_kind"] = "hmt"
    if section == "rewards_punishments":
        row["kind"] = "reward"
    return row


def _row_is_blank(row: dict[str, str]) -> bool:
    return not any(value.strip() for key, value in row.items() if key not in DEFAULTED)


def form_to_content(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The on-site form as registration content, and the same values to show the form again.

    Blank list rows are dropped before validation so that error paths (trips.0.purpose) match
    the rows shown when the form comes back.
    """
    content: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    organisation = form.get("party_life.organisation", "")
    participation = form.get("party_life.participation", "")
    shown["party_life"] = {"organisation": organisation, "participation": participation}
    if organisation.strip() or participation.strip():
        content["party_life"] = {"organisation": organisation, "participation": participation}
    for section, names in LIST_FIELDS.items():
        rows: list[dict[str, str]] = []
        index = 0
        while any(f"{section}.{index}.{name}" in form for name in names):
            row = {name: form.get(f"{section}.{index}.{name}", "") for name in names}
            if not _row_is_blank(row):
                rows.append(row)
            index += 1
            if index > MAX_ITEMS:
                break
        content[section] = [
            {k: (None if k in OPTIONAL_DATES and not v.strip() else v) for k, v in row.items()}
            for row in rows
        ]
        shown[section] = rows + [_blank_row(section) for _ in range(SPARE_ROWS)]
    address = form.get("contact_changes.new_address", "")
    phone = form.get("contact_changes.new_phone", "").strip()
    shown["contact_changes"] = {"new_address": address, "new_phone": phone}
    if address.strip() or phone:
        content["contact_changes"] = {
            "new_address": address if address.strip() else None,
            "new_phone": phone or None,
        }
    content["remarks"] = form.get("remarks", "")
    shown["remarks"] = content["remarks"]
    return content, shown


def empty_form(draft: dict[str, Any] | None = None) -> dict[str, Any]:
    """Form values for a fresh on-site entry, prefilled from a saved draft when there is one."""
    draft = draft or {}
    party = draft.get("party_life") or {}
    contact = draft.get("contact_changes") or {}
    shown: dict[str, Any] = {
        "party_life": {
            "organisation": party.get("organisation", ""),
            "participation": party.get("participation", ""),
        },
        "contact_changes": {
            "new_address": contact.get("new_address") or "",
            "new_phone": contact.get("new_phone") or "",
        },
        "remarks": draft.get("remarks", ""),
    }
    for section, names in LIST_FIELDS.items():
        rows = [
            {name: "" if item.get(name) is None else str(item.get(name)) for name in names}
            for item in draft.get(section) or []
        ]
        shown[section] = rows + [_blank_row(section) for _ in range(SPARE_ROWS)]
    return shown


def _error_labels(errors: dict[str, str]) -> dict[str, str]:
    labels = {}
    for path in errors:
        head = path.split(".", 1)[0]
        labels[path] = FIELD_LABELS.get(path) or SECTIONS.get(head, path)
    return labels


async def _search(staff: StaffUser, q: str) -> list[Veteran]:
    prefix = scope_prefix(staff)
    try:
        number = parse_id_number(q).number
    except InvalidIdNumber:
        number = ""
    if number:
        digest = context.current().cipher.lookup_hash(number, ID_PURPOSE)
        query = Veteran.filter(id_hash=digest, county_code__startswith=prefix)
    else:
        query = Veteran.filter(name__contains=q.strip(), county_code__startswith=prefix)
    return list(await query.order_by("id").limit(SEARCH_LIMIT))


@bp.get("/registrations/onsite", name="registration_onsite")
@staff_required()
async def show_onsite(request: Request, staff: StaffUser) -> HTTPResponse:
    """Pick a veteran in scope, then show the registration form to fill at the counter."""
    current = await service.current_window()
    year = _year_arg(request, current.report_year)
    veteran_id = _int_arg(request, "veteran_id")
    if veteran_id is None:
        q = request.args.get("q", "")[:64]
        found = await _search(staff, q) if q.strip() else []
        existing = {}
        if found:
            rows = await AnnualRegistration.filter(
                report_year=year, veteran_id__in=[v.id for v in found]
            ).values_list("veteran_id", "status")
            existing = {int(vid): str(status) for vid, status in rows}
        return _page(
            request,
            "registrations/onsite_pick.html",
            year=year,
            q=q,
            found=found,
            existing=existing,
            counties=await _counties(staff),
        )
    veteran = await veteran_in_scope(staff, veteran_id)
    reg = await AnnualRegistration.get_or_none(veteran_id=veteran.id, report_year=year)
    if reg is not None and reg.status not in service.EDITABLE:
        flash(request, f"该退役军人{year}年度登记已提交，无需代录。", "info")
        return redirect(request, f"{COOKIE_PATH}/registrations/{reg.id}")
    return _page(
        request,
        "registrations/onsite_form.html",
        veteran=veteran,
        year=year,
        form=empty_form(reg.draft if reg else None),
        errors={},
        labels={},
    )


@bp.post("/registrations/onsite", name="registration_onsite_submit")
@staff_required()
async def submit_onsite(request: Request, staff: StaffUser) -> HTTPResponse:
    """Enter and submit a registration for a veteran at the counter (recorded as on-site)."""
    veteran_id = _form_int(request, "veteran_id")
    year = _form_int(request, "year")
    veteran = await veteran_in_scope(staff, veteran_id)
    form = {key: str(values[0]) for key, values in (request.form or {}).items() if values}
    if any(len(value) > 2000 for value in form.values()):
        raise ValidationFailed("填写的内容过长。")
    content, shown = form_to_content(form)

    try:
        reg = await service.enter_onsite(staff, veteran.id, year, content, **actor_args(request))
    except ValidationFailed as exc:
        errors = dict(exc.details.get("fields") or {})
        return _page(
            request,
            "registrations/onsite_form.html",
            status=422,
            veteran=veteran,
            year=year,
            form=shown,
            errors=errors,
            labels=_error_labels(errors),
        )
    flash(request, f"已现场代录{year}年度登记，请由其他工作人员审核。")
    return redirect(request, f"{COOKIE_PATH}/registrations/{reg.id}")


# -- late filing, not filed, overdue ---------------------------------------------------------


@bp.get("/registrations/late-permits", name="late_permits")
@staff_required()
async def list_late_permits(request: Request, staff: StaffUser) -> HTTPResponse:
    """Late filing permits of a year in scope, newest first."""
    current = await service.current_window()
    year = _year_arg(request, current.report_year)
    permits = (
        await LateFilingPermit.filter(
            report_year=year, veteran__county_code__startswith=scope_prefix(staff)
        )
        .order_by("-id")
        .limit(200)
        .select_related("veteran", "granted_by")
    )
    return _page(
        request, "registrations/late_permits.html", year=year, years=_years(), permits=permits
    )


def default_late_deadline(window: service.Window, today: date, correction_days: int) -> date:
    """The deadline the late-permit form offers before the clerk changes it.

    A permit only matters once the window has closed, so the default gives the veteran the
    usual correction period (correction_days, from settings) counted from the later of today and
    the window's last day: granted during the window it runs past the close by that period,
    granted afterwards it runs that period from today. It never exceeds the longest deadline
    the service accepts (today + MAX_CORRECTION_DAYS).
    """
    days = timedelta(days=correction_days)
    latest = today + timedelta(days=service.MAX_CORRECTION_DAYS)
    return min(max(today, window.closes_on) + days, latest)


async def _late_permit_form(
    request: Request,
    staff: StaffUser,
    veteran_id: int | None,
    year: int,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTTPResponse:
    veteran = await veteran_in_scope(staff, veteran_id)
    window = await service.window_for(year)
    correction_days = context.current().settings.correction_days
    if form is None:
        deadline = default_late_deadline(window, service.shanghai_today(), correction_days)
        form = {"reason": "", "deadline": deadline.isoformat()}
    return _page(
        request,
        "registrations/late_permit.html",
        status=422 if errors else 200,
        veteran=veteran,
        year=year,
        window=window,
        permit=await LateFilingPermit.get_or_none(veteran_id=veteran.id, report_year=year),
        form=form,
        errors=errors or {},
        correction_days=correction_days,
    )


@bp.get("/registrations/late-permits/new", name="late_permit_new")
@staff_required()
async def show_late_permit(request: Request, staff: StaffUser) -> HTTPResponse:
    """The form to let one veteran file late: reason required, deadline offered.

    The offered deadline is default_late_deadline(): the correction period counted from the
    later of today and the window's close, so a permit granted early still outlasts the window.
    """
    current = await service.current_window()
    year = _year_arg(request, current.report_year)
    return await _late_permit_form(request, staff, _int_arg(request, "veteran_id"), year)


@bp.post("/registrations/late-permits", name="late_permit_submit")
@staff_required()
async def grant_late_permit(request: Request, staff: StaffUser) -> HTTPResponse:
    """Grant (or extend) a late filing permit; the reason is kept in the audit log.

    A bad reason or deadline shows the form again (422) with what the clerk typed and the
    message next to each field; nothing is saved.
    """
    veteran_id = _form_int(request, "veteran_id")
    year = _form_int(request, "year")
    if not service.FIRST_YEAR <= year <= service.shanghai_today().year:
        # The same rule the service applies; checked first so the form is never redrawn for it.
        raise NotFound("没有该年度的登记。")
    posted: Any = request.form or {}
    form = {
        "reason": str(posted.get("reason") or ""),
        "deadline": str(posted.get("deadline") or "").strip()[:32],
    }
    try:
        deadline = _form_date(request, "deadline")
        assert deadline is not None
        reason = _form(request, "reason", service.MAX_REASON_CHARS)
        await service.grant_late_filing(
            staff, veteran_id, year, deadline, reason, **actor_args(request)
        )
    except ValidationFailed as exc:
        errors = dict(exc.details.get("fields") or {})
        if not errors:
            raise
        if "reason" in errors:
            # Keep what fits, so an overlong reason is trimmed rather than lost.
            form["reason"] = form["reason"][: service.MAX_REASON_CHARS]
        return await _late_permit_form(request, staff, veteran_id, year, form, errors)
    flash(request, f"已准许补报{year}年度登记，截止日期 {deadline.isoformat()}。")
    return redirect(request, f"{COOKIE_PATH}/registrations/late-permits?year={year}")


@bp.get("/registrations/not-filed", name="registrations_not_filed")
@staff_required()
async def list_not_filed(request: Request, staff: StaffUser) -> HTTPResponse:
    """Who must file for the year and has not, counted by county."""
    current = await service.current_window()
    year = _year_arg(request, current.report_year)
    county = _county_arg(request, staff)
    after_id = _int_arg(request, "after_id")

    report = await service.not_filed(scope_prefix(staff), year, county, after_id=after_id)
    return _page(
        request,
        "registrations/not_filed.html",
        report=report,
        year=year,
        years=_years(),
        county=county or "",
        counties=await _counties(staff),
        after=after_id,
        first_query=_next_query(request, None),
        next_query=_next_query(request, report.next_after_id),
    )


@bp.get("/registrations/overdue", name="registrations_overdue")
@staff_required()
async def list_overdue(request: Request, staff: StaffUser) -> HTTPResponse:
    """Submitted registrations still waiting after the review period, oldest first."""
    after_id = _int_arg(request, "after_id")
    page = await service.overdue_reviews(scope_prefix(staff), after_id=after_id)
    return _page(
        request,
        "registrations/overdue.html",
        page=page,
        counties=await _counties(staff),
        review_days=context.current().settings.review_period_days,
        after=after_id,
        first_query=_next_query(request, None),
        next_query=_next_query(request, page.next_after_id),
    )


# -- the filing window (province) ------------------------------------------------------------


@bp.get("/registrations/windows", name="registration_windows")
@staff_required(level="province")
async def list_windows(request: Request, staff: StaffUser) -> HTTPResponse:
    """Each reported year's window: the default, the province's override, demo or not."""
    years = _years()
    rows = {
        row.report_year: row
        for row in await RegistrationWindow.filter(report_year__in=years).select_related("set_by")
    }
    windows = [
        {"year": y, "default": service.default_window(y), "override": rows.get(y)} for y in years
    ]
    return _page(request, "registrations/windows.html", windows=windows)


@bp.post("/registrations/windows", name="registration_window_set")
@staff_required(level="province")
async def set_window(request: Request, staff: StaffUser) -> HTTPResponse:
    """Set one reported year's window (province staff only)."""
    year = _form_int(request, "year")
    opens_on = _form_date(request, "opens_on")
    closes_on = _form_date(request, "closes_on")
    assert opens_on is not None and closes_on is not None
    reason = _form(request, "reason", service.MAX_REASON_CHARS)
    demo = _form(request, "demo", 8) == "1"
    window = await service.set_window(
        staff, year, opens_on, closes_on, reason, demo=demo, **actor_args(request)
    )
    flash(request, f"已设置：{window.message}。")
    return redirect(request, f"{COOKIE_PATH}/registrations/windows")
