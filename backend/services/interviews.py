"""Interviews (约谈, rule 6.3): a recorded talk when a clerk sees warning signs.

State machine INTERVIEW: planned -> held -> closed; planned -> cancelled. Independent of the
registration's approve/return. Every transition goes through Workflow.move and writes an audit
row; opening one enqueues the "interview.scheduled" notification (time, place and the
station's contact phone: the reason never goes into WeChat text), cancelling one enqueues
"interview.cancelled" (the planned time only, never either reason) in the same transaction.

Signatures (ip/request_id go to the audit row; `now` defaults to the current UTC time):

    open_interview(staff, veteran_id, reason, planned_at, location, registration_id=None, *,
                   contact_phone="", now=None, ip="", request_id="") -> Interview
    record_held(staff, interview_id, lock_version, held_at, staff_present, notes, *,
                now=None, ip="", request_id="") -> Interview
    close_interview(staff, interview_id, lock_version, outcome, *, ip="", request_id="")
        -> Interview
    cancel_interview(staff, interview_id, lock_version, reason, *, ip="", request_id="")
        -> Interview
    get_interview(staff, interview_id) -> Interview       # in scope, else NotFound
    list_interviews(scope_prefix, status=None, veteran_id=None, before_id=None, limit=50)
        -> InterviewPage                                  # newest first, keyset on id
    can_read_notes(staff, interview) -> bool
    serialize_interview(staff, interview) -> dict         # notes hidden unless allowed

Notes are visible to a lead (role "lead") whose region covers the interview's county: the
county's own lead, and leads of its city and province. Clerks at any level never see them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from backend.errors import Conflict, NotFound, ValidationFailed
from backend.models import AnnualRegistration, Interview, Region, StaffUser, Veteran
from backend.services import audit
from backend.services.registrations import in_scope
from backend.services.workflow import Actor, Workflow

logger = logging.getLogger(__name__)

INTERVIEW = Workflow(
    "interview",
    {
        "planned": frozenset({"held", "cancelled"}),
        "held": frozenset({"closed"}),
    },
)
MAX_REASON = 2000
MAX_LOCATION = 128
MAX_STAFF_PRESENT = 255
MAX_NOTES = 10000
MAX_OUTCOME = 2000
#: how far ahead an interview may be planned
MAX_AHEAD = timedelta(days=366)
#: WeChat phone_number values are at most 17 characters
MAX_CONTACT_PHONE = 17
#: a mainland mobile, or a landline with an optional area code and dash (0351-1234567)
CONTACT_PHONE = re.compile(r"^(?:1[3-9][0-9]{9}|(?:0[1-9][0-9]{1,2}-?)?[1-9][0-9]{6,7})$")


def contact_phone_problem(value: str) -> str | None:
    """Why a contact phone is not acceptable, in Chinese; None when it is (or is empty)."""
    if value and (len(value) > MAX_CONTACT_PHONE or not CONTACT_PHONE.match(value)):
        return "应为手机号或固定电话（如 0351-1234567）"
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _region_of(staff: StaffUser) -> Region:
    region = getattr(staff, "region", None)
    if not isinstance(region, Region):
        await staff.fetch_related("region")
        region = staff.region
    return region


def _text(errors: dict[str, str], name: str, value: str, limit: int, missing: str) -> None:
    if not value.strip():
        errors[name] = missing
    elif len(value) > limit:
        errors[name] = f"不能超过{limit}字"


def _aware(errors: dict[str, str], name: str, value: datetime) -> None:
    # A time without its zone is ambiguous between Beijing and UTC: refuse rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        errors[name] = "时间须带时区（如 2026-01-05T09:30:00+08:00）"


async def open_interview(
    staff: StaffUser,
    veteran_id: int,
    reason: str,
    planned_at: datetime,
    location: str,
    registration_id: int | None = None,
    *,
    contact_phone: str = "",
    now: datetime | None = None,
    ip: str = "",
    request_id: str = "",
) -> Interview:
    """Plan an interview and tell the veteran when, where and whom to call (never why)."""
    now = now or _utcnow()
    region = await _region_of(staff)
    veteran = await Veteran.get_or_none(id=veteran_id)
    if veteran is None or not veteran.county_code.startswith(region.scope_prefix):
        raise NotFound()
    errors: dict[str, str] = {}
    _text(errors, "reason", reason, MAX_REASON, "请填写约谈原因")
    _text(errors, "location", location, MAX_LOCATION, "请填写约谈地点")
    _aware(errors, "planned_at", planned_at)
    contact_phone = contact_phone.strip()
    phone_problem = contact_phone_problem(contact_phone)
    if phone_problem:
        errors["contact_phone"] = phone_problem
    if "planned_at" not in errors:
        if planned_at < now:
            errors["planned_at"] = "约谈时间不能早于现在"
        elif planned_at > now + MAX_AHEAD:
            errors["planned_at"] = "约谈时间不能晚于一年以后"
    if registration_id is not None:
        owner = await AnnualRegistration.filter(id=registration_id).values_list(
            "veteran_id", flat=True
        )
        if not owner or owner[0] != veteran.id:
            errors["registration_id"] = "该登记不属于此退役军人"
    if errors:
        raise ValidationFailed(details={"fields": errors})
    async with in_transaction() as conn:
        interview = await Interview.create(
            veteran_id=veteran.id,
            registration_id=registration_id,
            county_code=veteran.county_code,
            status="planned",
            reason=reason,
            planned_at=planned_at,
            location=location,
            contact_phone=contact_phone,
            created_by_id=staff.id,
            using_db=conn,
        )
        from backend.services import notifications

        await notifications.enqueue(
            "interview.scheduled",
            veteran,
            {"planned_at": planned_at, "location": location, "contact_phone": contact_phone},
            object_type="interview",
            object_id=interview.id,
            using=conn,
        )
        await audit.record(
            "staff",
            staff.id,
            "interview.opened",
            "interview",
            interview.id,
            {"veteran_id": veteran.id, "registration_id": registration_id},
            ip,
            request_id,
        )
    logger.info("interview %s planned for veteran %s", interview.id, veteran.id)
    return interview


async def get_interview(staff: StaffUser, interview_id: int) -> Interview:
    """An interview in the staff member's region; another region's answers NotFound."""
    region = await _region_of(staff)
    interview = await Interview.get_or_none(id=interview_id).select_related("veteran")
    if interview is None or not interview.county_code.startswith(region.scope_prefix):
        raise NotFound()
    return interview


async def _move(
    staff: StaffUser,
    interview_id: int,
    lock_version: int,
    to_state: str,
    changes: dict[str, Any],
    reason: str,
    detail: dict[str, Any],
    ip: str,
    request_id: str,
    check: Callable[[Interview], dict[str, str]] | None = None,
) -> Interview:
    interview = await get_interview(staff, interview_id)
    if interview.lock_version != lock_version:
        raise Conflict(details={"status": interview.status})
    INTERVIEW.check(interview.status, to_state)
    errors = check(interview) if check else {}
    if errors:
        raise ValidationFailed(details={"fields": errors})
    actor = Actor("staff", staff.id, ip, request_id)
    async with in_transaction() as conn:
        await INTERVIEW.move(interview, to_state, actor, reason=reason, changes=changes, using=conn)
        if to_state == "cancelled":
            from backend.services import notifications

            # Only when it was planned: neither the interview's nor the cancellation's reason.
            await notifications.enqueue(
                "interview.cancelled",
                interview.veteran,
                {"planned_at": interview.planned_at, "contact_phone": interview.contact_phone},
                object_type="interview",
                object_id=interview.id,
                using=conn,
            )
        await audit.record(
            "staff",
            staff.id,
            f"interview.{to_state}",
            "interview",
            interview.id,
            detail,
            ip,
            request_id,
        )
    return interview


async def record_held(
    staff: StaffUser,
    interview_id: int,
    lock_version: int,
    held_at: datetime,
    staff_present: str,
    notes: str,
    *,
    now: datetime | None = None,
    ip: str = "",
    request_id: str = "",
) -> Interview:
    """Record that the interview took place: when, which staff were present, and notes."""
    now = now or _utcnow()
    errors: dict[str, str] = {}
    _aware(errors, "held_at", held_at)
    if "held_at" not in errors and held_at > now:
        errors["held_at"] = "约谈时间不能晚于现在"
    _text(errors, "staff_present", staff_present, MAX_STAFF_PRESENT, "请填写参加约谈的工作人员")
    _text(errors, "notes", notes, MAX_NOTES, "请填写约谈记录")
    if errors:
        raise ValidationFailed(details={"fields": errors})

    def not_before_opening(interview: Interview) -> dict[str, str]:
        # The form gives minutes: an interview held the minute it was opened is fine.
        if held_at < interview.created_at.replace(second=0, microsecond=0):
            return {"held_at": "约谈时间不能早于发起约谈的时间"}
        return {}

    return await _move(
        staff,
        interview_id,
        lock_version,
        "held",
        {"held_at": held_at, "staff_present": staff_present, "notes": notes},
        "",
        {"held_at": held_at.isoformat()},
        ip,
        request_id,
        check=not_before_opening,
    )


async def close_interview(
    staff: StaffUser,
    interview_id: int,
    lock_version: int,
    outcome: str,
    *,
    ip: str = "",
    request_id: str = "",
) -> Interview:
    """Close a held interview with its outcome."""
    errors: dict[str, str] = {}
    _text(errors, "outcome", outcome, MAX_OUTCOME, "请填写约谈结果")
    if errors:
        raise ValidationFailed(details={"fields": errors})
    return await _move(
        staff,
        interview_id,
        lock_version,
        "closed",
        {"outcome": outcome},
        outcome,
        {},
        ip,
        request_id,
    )


async def cancel_interview(
    staff: StaffUser,
    interview_id: int,
    lock_version: int,
    reason: str,
    *,
    ip: str = "",
    request_id: str = "",
) -> Interview:
    """Cancel a planned interview, with the reason recorded; the veteran is told (never why)."""
    errors: dict[str, str] = {}
    _text(errors, "reason", reason, MAX_REASON, "请填写取消原因")
    if errors:
        raise ValidationFailed(details={"fields": errors})
    return await _move(
        staff,
        interview_id,
        lock_version,
        "cancelled",
        {},
        reason,
        {"reason": reason},
        ip,
        request_id,
    )


@dataclass
class InterviewPage:
    """One page of interviews, newest first; pass next_before_id back for the next page."""

    items: list[Interview]
    next_before_id: int | None


async def list_interviews(
    scope_prefix: str,
    status: str | None = None,
    veteran_id: int | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> InterviewPage:
    """Interviews in scope, newest first, keyset-paged on id."""
    limit = max(1, min(int(limit), 200))
    query = Interview.filter(in_scope(scope_prefix))
    if status is not None:
        query = query.filter(status=status)
    if veteran_id is not None:
        query = query.filter(veteran_id=veteran_id)
    if before_id is not None:
        query = query.filter(id__lt=before_id)
    rows = await query.order_by("-id").limit(limit + 1).select_related("veteran")
    more = len(rows) > limit
    rows = rows[:limit]
    return InterviewPage(rows, rows[-1].id if more else None)


def can_read_notes(staff: StaffUser, interview: Interview) -> bool:
    """Only a lead of the interview's county or of a region above it reads the notes."""
    region = getattr(staff, "region", None)
    if staff.role != "lead" or not isinstance(region, Region):
        return False
    return interview.county_code.startswith(region.scope_prefix)


def serialize_interview(staff: StaffUser, interview: Interview) -> dict[str, Any]:
    """The interview as a dict for pages; notes are None (and notes_hidden True) unless allowed."""
    allowed = can_read_notes(staff, interview)
    return {
        "id": interview.id,
        "veteran_id": interview.veteran_id,  # type: ignore[attr-defined]
        "registration_id": interview.registration_id,  # type: ignore[attr-defined]
        "county_code": interview.county_code,
        "status": interview.status,
        "reason": interview.reason,
        "planned_at": interview.planned_at,
        "location": interview.location,
        "contact_phone": interview.contact_phone,
        "held_at": interview.held_at,
        "staff_present": interview.staff_present,
        "notes": interview.notes if allowed else None,
        "notes_hidden": not allowed,
        "outcome": interview.outcome,
        "lock_version": interview.lock_version,
        "created_by_id": interview.created_by_id,  # type: ignore[attr-defined]
        "created_at": interview.created_at,
        "updated_at": interview.updated_at,
    }
