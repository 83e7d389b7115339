"""Portal pages of interviews (约谈, rule 6.3): open, record held, close with outcome, cancel.

Scope is checked on the server (another county's interview answers 404). The notes taken at
an interview are shown only to a lead of the county or of a region above it; everyone else
sees that they exist, not what they say.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.errors import Conflict, InvalidTransition, ValidationFailed
from backend.models import AnnualRegistration, Interview, StaffUser, TransitionLog
from backend.routes.portal_common import (
    COOKIE_PATH,
    flash,
    in_scope_or_404,
    redirect,
    render,
    scope_prefix,
    staff_required,
)
from backend.routes.portal_registrations import (
    INTERVIEW_STATUSES,
    actor_args,
    badge_class,
    veteran_in_scope,
)
from backend.services import interviews as service

logger = logging.getLogger(__name__)

bp = Blueprint("portal_interviews", url_prefix=COOKIE_PATH)

SHANGHAI = ZoneInfo("Asia/Shanghai")
CONFLICT_TEXT = "该约谈已被其他工作人员处理，请查看当前状态。"
HIDDEN_NOTES = "（仅负责人可见）"
TEXT_LIMITS = {
    "reason": service.MAX_REASON,
    "location": service.MAX_LOCATION,
    "staff_present": service.MAX_STAFF_PRESENT,
    "notes": service.MAX_NOTES,
    "outcome": service.MAX_OUTCOME,
    "cancel_reason": service.MAX_REASON,
    "contact_phone": service.MAX_CONTACT_PHONE,
}


def _page(request: Request, template: str, status: int = 200, **ctx: Any) -> HTTPResponse:
    return render(
        request,
        template,
        status=status,
        interview_statuses=INTERVIEW_STATUSES,
        badge_class=badge_class,
        hidden_notes=HIDDEN_NOTES,
        **ctx,
    )


def _int_arg(request: Request, name: str) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 10:
        raise ValidationFailed(details={"fields": {name: "应为整数"}})
    return int(raw)


def _form(request: Request) -> dict[str, str]:
    """The posted text fields, verbatim; oversized ones are refused before anything else."""
    form = {key: str(values[0]) for key, values in (request.form or {}).items() if values}
    errors = {
        name: f"不能超过{limit}字"
        for name, limit in TEXT_LIMITS.items()
        if len(form.get(name, "")) > limit
    }
    if errors:
        raise ValidationFailed(details={"fields": errors})
    return form


def _lock_version(form: dict[str, str]) -> int:
    raw = form.get("lock_version", "").strip()
    if not raw.isdigit() or len(raw) > 10:
        raise ValidationFailed(details={"fields": {"lock_version": "应为整数"}})
    return int(raw)


def parse_local(raw: str, name: str) -> datetime:
    """A datetime-local input (Beijing time, to the minute) as an aware datetime."""
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError as exc:
        raise ValidationFailed(
            details={"fields": {name: "应为时间（如 2026-01-05 09:30）"}}
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    return value


def _local_input(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")


# -- list and open ---------------------------------------------------------------------------


@bp.get("/interviews", name="interviews")
@staff_required()
async def list_interviews(request: Request, staff: StaffUser) -> HTTPResponse:
    """Interviews in scope, newest first, by status."""
    status = request.args.get("status", "") or None
    if status is not None and status not in INTERVIEW_STATUSES:
        raise ValidationFailed(details={"fields": {"status": "不是允许的取值"}})
    before_id = _int_arg(request, "before_id")

    page = await service.list_interviews(scope_prefix(staff), status, before_id=before_id)
    pairs = [(k, v) for k, vs in request.args.items() if k != "before_id" for v in vs]
    next_query = urlencode([*pairs, ("before_id", str(page.next_before_id or ""))])
    return _page(
        request,
        "interviews/list.html",
        page=page,
        selected_status=status or "",
        before=before_id,
        first_query=urlencode(pairs),
        next_query=next_query,
    )


async def _new_form(
    request: Request,
    staff: StaffUser,
    veteran_id: int | None,
    registration_id: int | None,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTTPResponse:
    registration = None
    if registration_id is not None:
        registration = await AnnualRegistration.get_or_none(id=registration_id)
        in_scope_or_404(staff, registration.county_code if registration else "")
        assert registration is not None
        veteran_id = registration.veteran_id  # type: ignore[attr-defined]
    veteran = await veteran_in_scope(staff, veteran_id)
    suggested = datetime.now(SHANGHAI).replace(minute=0, second=0, microsecond=0)
    return _page(
        request,
        "interviews/new.html",
        status=422 if errors else 200,
        veteran=veteran,
        registration=registration,
        form=form or {"planned_at": _local_input(suggested + timedelta(days=3, hours=1))},
        errors=errors or {},
    )


@bp.get("/interviews/new", name="interview_new")
@staff_required()
async def show_new_interview(request: Request, staff: StaffUser) -> HTTPResponse:
    """The form to open an interview for a veteran, from a registration or the roster."""
    return await _new_form(
        request, staff, _int_arg(request, "veteran_id"), _int_arg(request, "registration_id")
    )


@bp.post("/interviews", name="interview_open")
@staff_required()
async def open_interview(request: Request, staff: StaffUser) -> HTTPResponse:
    """Plan the interview; the veteran is told when and where, never why."""
    form = _form(request)
    veteran_id = int(form["veteran_id"]) if form.get("veteran_id", "").isdigit() else None
    raw_reg = form.get("registration_id", "")
    registration_id = int(raw_reg) if raw_reg.isdigit() else None
    veteran = await veteran_in_scope(staff, veteran_id)
    contact_phone = form.get("contact_phone", "").strip()
    try:
        if not contact_phone:
            # Required here; the service keeps it optional for callers without a form.
            raise ValidationFailed(details={"fields": {"contact_phone": "请填写联系电话"}})
        planned_at = parse_local(form.get("planned_at", ""), "planned_at")
        interview = await service.open_interview(
            staff,
            veteran.id,
            form.get("reason", ""),
            planned_at,
            form.get("location", ""),
            registration_id,
            contact_phone=contact_phone,
            **actor_args(request),
        )
    except ValidationFailed as exc:
        errors = dict(exc.details.get("fields") or {})
        return await _new_form(request, staff, veteran.id, registration_id, form, errors)
    flash(request, "已安排约谈，并已通知本人约谈时间和地点。")
    return redirect(request, f"{COOKIE_PATH}/interviews/{interview.id}")


# -- one interview ---------------------------------------------------------------------------


async def _detail(
    request: Request,
    staff: StaffUser,
    interview: Interview,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTTPResponse:
    history = await TransitionLog.filter(workflow="interview", object_id=interview.id).order_by(
        "id"
    )
    actor_ids = {h.actor_id for h in history if h.actor_type == "staff" and h.actor_id}
    actor_ids.add(interview.created_by_id)  # type: ignore[attr-defined]
    names = dict(await StaffUser.filter(id__in=actor_ids).values_list("id", "display_name"))
    return _page(
        request,
        "interviews/detail.html",
        status=422 if errors else 200,
        interview=service.serialize_interview(staff, interview),
        veteran=interview.veteran,
        history=history,
        staff_names=names,
        form=form or {"held_at": _local_input(datetime.now(SHANGHAI))},
        errors=errors or {},
    )


@bp.get("/interviews/<interview_id:int>", name="interview")
@staff_required()
async def show_interview(request: Request, staff: StaffUser, interview_id: int) -> HTTPResponse:
    """One interview with its history; notes only for the county's lead and above."""
    interview = await service.get_interview(staff, interview_id)
    return await _detail(request, staff, interview)


async def _act(request: Request, staff: StaffUser, interview_id: int, action: str) -> HTTPResponse:
    form = _form(request)
    lock_version = _lock_version(form)
    actor = actor_args(request)
    try:
        if action == "held":
            held_at = parse_local(form.get("held_at", ""), "held_at")
            await service.record_held(
                staff,
                interview_id,
                lock_version,
                held_at,
                form.get("staff_present", ""),
                form.get("notes", ""),
                **actor,
            )
            flash(request, "已记录约谈情况。")
        elif action == "close":
            await service.close_interview(
                staff, interview_id, lock_version, form.get("outcome", ""), **actor
            )
            flash(request, "约谈已结束，结果已记录。")
        else:
            await service.cancel_interview(
                staff, interview_id, lock_version, form.get("cancel_reason", ""), **actor
            )
            flash(request, "约谈已取消。")
    except (Conflict, InvalidTransition):
        flash(request, CONFLICT_TEXT, "error")
    except ValidationFailed as exc:
        errors = dict(exc.details.get("fields") or {})
        if action == "cancel" and "reason" in errors:
            errors["cancel_reason"] = errors.pop("reason")
        interview = await service.get_interview(staff, interview_id)
        return await _detail(request, staff, interview, form, errors)
    return redirect(request, f"{COOKIE_PATH}/interviews/{interview_id}")


@bp.post("/interviews/<interview_id:int>/held", name="interview_held")
@staff_required()
async def record_held(request: Request, staff: StaffUser, interview_id: int) -> HTTPResponse:
    """Record that the interview took place: date, staff present, notes."""
    return await _act(request, staff, interview_id, "held")


@bp.post("/interviews/<interview_id:int>/close", name="interview_close")
@staff_required()
async def close_interview(request: Request, staff: StaffUser, interview_id: int) -> HTTPResponse:
    """Close a held interview with its outcome."""
    return await _act(request, staff, interview_id, "close")


@bp.post("/interviews/<interview_id:int>/cancel", name="interview_cancel")
@staff_required()
async def cancel_interview(request: Request, staff: StaffUser, interview_id: int) -> HTTPResponse:
    """Cancel a planned interview, with a reason."""
    return await _act(request, staff, interview_id, "cancel")
