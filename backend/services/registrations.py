"""Annual registration (年度登记审核, rule 6.3): windows, who must file, drafts, submission, review.

State machine REGISTRATION: draft -> submitted -> approved | returned; returned -> submitted.
Every transition goes through Workflow.move (guarded by status and lock_version, recorded in
TransitionLog) and writes an audit row in the same transaction.

Signatures (`today` defaults to today's date in Asia/Shanghai; ip/request_id go to the audit row):

    shanghai_today() -> date
    default_window(year) -> Window
    window_for(year) -> Window
    current_window(today=None) -> Window          # the current report year and its window
    set_window(staff, year, opens_on, closes_on, reason="", *, demo=False, ip="",
               request_id="") -> Window             # province staff only, else Forbidden
    must_file(veteran, year) -> bool               # pure, no database
    save_draft(veteran, year, content, *, today=None) -> AnnualRegistration
    submit(veteran, year, content=None, *, today=None, ip="", request_id="")
        -> AnnualRegistration                      # double tap safe
    enter_onsite(staff, veteran_id, year, content, *, today=None, ip="", request_id="")
        -> AnnualRegistration                      # channel "onsite", entered_by = staff
    approve(staff, registration_id, lock_version, reason="", *, ip="", request_id="")
        -> AnnualRegistration                      # + BenefitConfirmation + notification
    return_for_correction(staff, registration_id, lock_version, comments, deadline=None, *,
                          today=None, ip="", request_id="") -> AnnualRegistration
    grant_late_filing(staff, veteran_id, year, deadline, reason, *, today=None, ip="",
                      request_id="") -> LateFilingPermit
    list_registrations(scope_prefix, year, status=None, county_code=None, after_id=None,
                       limit=50) -> Page           # ordered by (county_code, id)
    registration_detail(staff, registration_id) -> RegistrationDetail
    not_filed(scope_prefix, year, county_code=None, *, after_id=None, limit=100)
        -> NotFiledReport
    overdue_reviews(scope_prefix, now=None, *, after_id=None, limit=50)
        -> Page                                    # ordered by (county_code, submitted_at, id)
    veteran_registrations(veteran) -> list[AnnualRegistration]
    current_status(veteran, *, today=None) -> CurrentStatus
    status_summary(veteran, *, today=None) -> dict   # for /me, two queries

Decisions: the window gates only the first submission; a returned registration is gated by its
correction deadline; a LateFilingPermit (one per veteran and year) opens either until its own
deadline. The clerk who entered a registration on site cannot approve it (SAME_CLERK) but may
return it for correction, since a return confirms nothing and only asks the veteran for more.
A roster entry whose status left "active" without a status date is treated as not required to
file, because it cannot be placed in any year.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q, Subquery
from tortoise.functions import Count
from tortoise.transactions import in_transaction

from backend import context
from backend.errors import (
    Conflict,
    Forbidden,
    InvalidTransition,
    NotFound,
    RegistrationClosed,
    RegistrationNotRequired,
    SameClerk,
    ValidationFailed,
)
from backend.models import (
    AnnualRegistration,
    BenefitConfirmation,
    LateFilingPermit,
    Region,
    RegistrationVersion,
    RegistrationWindow,
    ReviewComment,
    StaffUser,
    TransitionLog,
    Veteran,
)
from backend.schemas.registrations import (
    CONTENT_SECTIONS,
    SECTIONS,
    RegistrationContent,
    content_json,
    validate_content,
)
from backend.services import audit
from backend.services.workflow import Actor, Workflow

logger = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

REGISTRATION = Workflow(
    "registration",
    {
        "draft": frozenset({"submitted"}),
        "returned": frozenset({"submitted"}),
        "submitted": frozenset({"approved", "returned"}),
    },
)
EDITABLE = ("draft", "returned")
#: statuses that count as "filed" for the not-yet-filed page
FILED = ("submitted", "returned", "approved")
FIRST_YEAR = 2000
MAX_CORRECTION_DAYS = 180
MAX_COMMENT_CHARS = 1000
MAX_REASON_CHARS = 500


def shanghai_today() -> date:
    """Today's date where the veterans live; windows are evaluated in Asia/Shanghai."""
    return datetime.now(SHANGHAI).date()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _cn_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


@dataclass(frozen=True)
class Window:
    """The filing window of one reported year (inclusive dates, Asia/Shanghai)."""

    report_year: int
    opens_on: date
    closes_on: date
    #: the province changed the default
    is_override: bool = False
    is_demo_override: bool = False

    def contains(self, day: date) -> bool:
        return self.opens_on <= day <= self.closes_on

    @property
    def message(self) -> str:
        """e.g. 2026年度登记开放时间为2027年1月1日至2027年3月31日."""
        return (
            f"{self.report_year}年度登记开放时间为"
            f"{_cn_date(self.opens_on)}至{_cn_date(self.closes_on)}"
        )

    def closed_error(self) -> RegistrationClosed:
        return RegistrationClosed(
            f"{self.message}，现在不在开放时间内。如需补报，请联系所在县区服务站。",
            details={
                "report_year": self.report_year,
                "opens_on": self.opens_on.isoformat(),
                "closes_on": self.closes_on.isoformat(),
            },
        )


def default_window(year: int) -> Window:
    """1 January to 31 March of the year after the reported one."""
    return Window(year, date(year + 1, 1, 1), date(year + 1, 3, 31))


def _window_from_row(row: RegistrationWindow) -> Window:
    return Window(row.report_year, row.opens_on, row.closes_on, True, row.is_demo_override)


async def window_for(year: int) -> Window:
    """The window of a reported year: the province's override, else the default."""
    row = await RegistrationWindow.get_or_none(report_year=year)
    return _window_from_row(row) if row is not None else default_window(year)


async def current_window(today: date | None = None) -> Window:
    """The current report year (the one whose window contains today, else last year), one query."""
    today = today or shanghai_today()
    last_year = today.year - 1
    rows = await RegistrationWindow.filter(
        Q(opens_on__lte=today, closes_on__gte=today) | Q(report_year=last_year)
    )
    open_rows = [row for row in rows if row.opens_on <= today <= row.closes_on]
    if open_rows:
        return _window_from_row(max(open_rows, key=lambda row: row.report_year))
    for row in rows:
        if row.report_year == last_year:
            return _window_from_row(row)
    return default_window(last_year)


async def _region_of(staff: StaffUser) -> Region:
    region = getattr(staff, "region", None)
    if not isinstance(region, Region):
        await staff.fetch_related("region")
        region = staff.region
    return region


async def set_window(
    staff: StaffUser,
    year: int,
    opens_on: date,
    closes_on: date,
    reason: str = "",
    *,
    demo: bool = False,
    ip: str = "",
    request_id: str = "",
) -> Window:
    """Change a reported year's window; only province staff may (rule 6.3: set by the province)."""
    region = await _region_of(staff)
    if region.level != "province":
        raise Forbidden("只有省级工作人员可以设置年度登记开放时间。")
    errors: dict[str, str] = {}
    if not FIRST_YEAR <= year <= 2100:
        errors["report_year"] = "年度不正确"
    if closes_on < opens_on:
        errors["closes_on"] = "结束日期不能早于开始日期"
    elif (closes_on - opens_on).days > 366:
        errors["closes_on"] = "开放时间不能超过一年"
    if len(reason) > MAX_REASON_CHARS:
        errors["reason"] = "内容过长"
    if errors:
        raise ValidationFailed(details={"fields": errors})
    async with in_transaction():
        before = await RegistrationWindow.get_or_none(report_year=year)
        values = {
            "opens_on": opens_on,
            "closes_on": closes_on,
            "is_demo_override": demo,
            "reason": reason,
            "set_by_id": staff.id,
        }
        await RegistrationWindow.update_or_create(defaults=values, report_year=year)
        await audit.record(
            "staff",
            staff.id,
            "registration.window_set",
            "registration_window",
            year,
            {
                "opens_on": opens_on.isoformat(),
                "closes_on": closes_on.isoformat(),
                "before": [before.opens_on.isoformat(), before.closes_on.isoformat()]
                if before
                else None,
                "demo": demo,
                "reason": reason,
            },
            ip,
            request_id,
        )
    return Window(year, opens_on, closes_on, True, demo)


def must_file(veteran: Veteran, year: int) -> bool:
    """Active at some point in the year, with pay started on or before its last day."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    if veteran.pay_start_date > last:
        return False
    if veteran.status == "active":
        return True
    # Suspended, deceased or transferred: only an entry that left the roster before the year
    # began has nothing to report; without a date it cannot be placed, so it is not asked.
    return veteran.status_date is not None and veteran.status_date >= first


def _check_year(year: int, today: date) -> None:
    # A year can be reported on once it has begun; nothing before the platform's first year.
    if not FIRST_YEAR <= year <= today.year:
        raise NotFound("没有该年度的登记。")


async def _get_or_create(veteran: Veteran, year: int) -> AnnualRegistration:
    reg = await AnnualRegistration.get_or_none(veteran_id=veteran.id, report_year=year)
    if reg is not None:
        return reg
    try:
        return await AnnualRegistration.create(
            veteran_id=veteran.id, report_year=year, county_code=veteran.county_code
        )
    except IntegrityError:
        # A concurrent request created it first (one registration per veteran and year).
        return await AnnualRegistration.get(veteran_id=veteran.id, report_year=year)


async def save_draft(
    veteran: Veteran,
    year: int,
    content: RegistrationContent | dict[str, Any],
    *,
    today: date | None = None,
) -> AnnualRegistration:
    """Save the veteran's draft while it can still be submitted (window, permit or correction)."""
    today = today or shanghai_today()
    _check_year(year, today)
    if not must_file(veteran, year):
        raise RegistrationNotRequired()
    data = content_json(validate_content(content, year, today))
    stored = await AnnualRegistration.get_or_none(veteran_id=veteran.id, report_year=year)
    if stored is not None and stored.status not in EDITABLE:
        raise _not_editable(stored)
    # A draft is only worth keeping when it can still be submitted: the same gate applies.
    await _check_gate(stored or AnnualRegistration(veteran_id=veteran.id, report_year=year), today)
    reg = stored or await _get_or_create(veteran, year)
    if reg.status not in EDITABLE:
        raise _not_editable(reg)
    # Guarded by status: a draft never overwrites a registration submitted meanwhile.
    updated = await AnnualRegistration.filter(id=reg.id, status__in=EDITABLE).update(
        draft=data, lock_version=F("lock_version") + 1
    )
    if updated != 1:
        raise _not_editable(await AnnualRegistration.get(id=reg.id))
    return await AnnualRegistration.get(id=reg.id)


def _not_editable(reg: AnnualRegistration) -> InvalidTransition:
    if reg.status == "approved":
        text = f"{reg.report_year}年度登记已审核通过，不能再修改。"
    else:
        text = f"{reg.report_year}年度登记已提交，正在审核中，不能再修改。"
    return InvalidTransition(text, details={"status": reg.status})


async def _permit(veteran_id: int, year: int, today: date) -> LateFilingPermit | None:
    return await LateFilingPermit.filter(
        veteran_id=veteran_id, report_year=year, deadline__gte=today
    ).first()


async def _check_gate(reg: AnnualRegistration, today: date) -> None:
    """The window gates the first submission; a returned one has its correction deadline."""
    if reg.status == "returned":
        deadline = reg.correction_deadline
        if deadline is not None and today <= deadline:
            return
        if await _permit(reg.veteran_id, reg.report_year, today) is not None:  # type: ignore[attr-defined]
            return
        shown = _cn_date(deadline) if deadline else "-"
        raise RegistrationClosed(
            f"补正截止日期为{shown}，已经过期。请联系所在县区服务站。",
            details={
                "report_year": reg.report_year,
                "correction_deadline": deadline.isoformat() if deadline else None,
            },
        )
    window = await window_for(reg.report_year)
    if window.contains(today):
        return
    if await _permit(reg.veteran_id, reg.report_year, today) is not None:  # type: ignore[attr-defined]
        return
    raise window.closed_error()


def _check_complete(veteran: Veteran, content: RegistrationContent, prefix: str) -> None:
    # A party member reports their organisation life; others may leave the section empty.
    if veteran.party_member and content.party_life is None:
        raise ValidationFailed(
            details={"fields": {prefix + "party_life": "党员须填写组织生活情况"}}
        )


async def _submit_once(
    veteran: Veteran,
    year: int,
    content: RegistrationContent | dict[str, Any] | None,
    today: date,
    actor: Actor,
    staff: StaffUser | None,
    prefix: str,
) -> AnnualRegistration:
    # Everything is checked before anything is written: a refused submission leaves no row.
    given = None if content is None else validate_content(content, year, today, prefix)
    stored = await AnnualRegistration.get_or_none(veteran_id=veteran.id, report_year=year)
    reg = stored or AnnualRegistration(
        veteran_id=veteran.id, report_year=year, county_code=veteran.county_code
    )
    if staff is None and reg.status == "submitted":
        # A double tap: the same submission again answers with the one already made.
        if given is None or content_json(given) == reg.draft:
            return reg
    if reg.status not in EDITABLE:
        raise _not_editable(reg)
    await _check_gate(reg, today)
    parsed = given or validate_content(reg.draft, year, today, prefix)
    _check_complete(veteran, parsed, prefix)
    data = content_json(parsed)
    now = _utcnow()
    version_no = reg.current_version + 1
    changes: dict[str, Any] = {
        "draft": data,
        "current_version": version_no,
        "submitted_at": now,
        "first_submitted_at": reg.first_submitted_at or now,
        "correction_deadline": None,
    }
    if staff is not None:
        changes.update(channel="onsite", entered_by_id=staff.id)
    else:
        changes["channel"] = "online"
    from_state = reg.status
    async with in_transaction() as conn:
        if stored is None:
            # A concurrent first submit makes this insert fail; the caller looks again once.
            await reg.save(using_db=conn)
        # The guarded move comes first: a concurrent submit waits on the row and then loses.
        await REGISTRATION.move(reg, "submitted", actor, changes=changes, using=conn)
        await RegistrationVersion.create(
            registration_id=reg.id,
            version_no=version_no,
            data=data,
            entered_by_id=staff.id if staff else None,
            using_db=conn,
        )
        await audit.record(
            actor.kind,
            actor.id,
            "registration.entered_onsite" if staff else "registration.submitted",
            "registration",
            reg.id,
            {"report_year": year, "version_no": version_no, "from": from_state},
            actor.ip,
            actor.request_id,
        )
    logger.info("registration %s submitted as version %s by %s", reg.id, version_no, actor.kind)
    return reg


async def submit(
    veteran: Veteran,
    year: int,
    content: RegistrationContent | dict[str, Any] | None = None,
    *,
    today: date | None = None,
    ip: str = "",
    request_id: str = "",
) -> AnnualRegistration:
    """Submit the saved draft (or the given content): one unchangeable version, one transaction."""
    today = today or shanghai_today()
    _check_year(year, today)
    if not must_file(veteran, year):
        raise RegistrationNotRequired()
    actor = Actor("veteran", veteran.id, ip, request_id)
    try:
        return await _submit_once(veteran, year, content, today, actor, None, "content.")
    except (Conflict, IntegrityError):
        # Lost a race with a concurrent submit (a double tap): look again, once.
        logger.info("registration submit for veteran %s raced; retrying once", veteran.id)
        try:
            return await _submit_once(veteran, year, content, today, actor, None, "content.")
        except IntegrityError as exc:
            raise Conflict() from exc


async def _veteran_in_scope(staff: StaffUser, veteran_id: int) -> Veteran:
    region = await _region_of(staff)
    veteran = await Veteran.get_or_none(id=veteran_id)
    if veteran is None or not veteran.county_code.startswith(region.scope_prefix):
        raise NotFound()
    return veteran


async def enter_onsite(
    staff: StaffUser,
    veteran_id: int,
    year: int,
    content: RegistrationContent | dict[str, Any],
    *,
    today: date | None = None,
    ip: str = "",
    request_id: str = "",
) -> AnnualRegistration:
    """A clerk enters and submits the registration at the counter (on site, by whom recorded)."""
    today = today or shanghai_today()
    veteran = await _veteran_in_scope(staff, veteran_id)
    _check_year(year, today)
    if not must_file(veteran, year):
        raise RegistrationNotRequired("该退役军人本年度无需进行年度登记。")
    actor = Actor("staff", staff.id, ip, request_id)
    try:
        return await _submit_once(veteran, year, content, today, actor, staff, "")
    except IntegrityError as exc:
        raise Conflict() from exc


async def _registration_in_scope(staff: StaffUser, registration_id: int) -> AnnualRegistration:
    region = await _region_of(staff)
    reg = await AnnualRegistration.get_or_none(id=registration_id).select_related("veteran")
    # Another region's registration answers exactly like a missing one.
    if reg is None or not reg.county_code.startswith(region.scope_prefix):
        raise NotFound()
    return reg


def _check_lock(reg: AnnualRegistration, lock_version: int) -> None:
    if reg.lock_version != lock_version:
        raise Conflict(details={"status": reg.status})


async def _notify(event: str, veteran: Veteran, values: dict[str, Any], **kwargs: Any) -> None:
    # Imported here: the notifications service imports models that import nothing of ours,
    # but keeping the edge lazy lets either module load first.
    from backend.services import notifications

    await notifications.enqueue(event, veteran, values, **kwargs)


async def approve(
    staff: StaffUser,
    registration_id: int,
    lock_version: int,
    reason: str = "",
    *,
    ip: str = "",
    request_id: str = "",
) -> AnnualRegistration:
    """Approve: the year's benefits are confirmed (an explicit record) and the veteran is told."""
    reg = await _registration_in_scope(staff, registration_id)
    _check_lock(reg, lock_version)
    REGISTRATION.check(reg.status, "approved")
    if len(reason) > MAX_REASON_CHARS:
        raise ValidationFailed(details={"fields": {"reason": "内容过长"}})
    entered = RegistrationVersion.filter(registration_id=reg.id, entered_by_id=staff.id)
    if await entered.exists():
        raise SameClerk()
    now = _utcnow()
    actor = Actor("staff", staff.id, ip, request_id)
    async with in_transaction() as conn:
        await REGISTRATION.move(
            reg,
            "approved",
            actor,
            reason=reason,
            changes={"reviewed_by_id": staff.id, "reviewed_at": now},
            using=conn,
        )
        await BenefitConfirmation.create(
            veteran_id=reg.veteran_id,  # type: ignore[attr-defined]
            report_year=reg.report_year,
            registration_id=reg.id,
            confirmed_by_id=staff.id,
            using_db=conn,
        )
        await _notify(
            "registration.approved",
            reg.veteran,
            {"year": reg.report_year},
            object_type="registration",
            object_id=reg.id,
            using=conn,
        )
        await audit.record(
            "staff",
            staff.id,
            "registration.approved",
            "registration",
            reg.id,
            {
                "report_year": reg.report_year,
                "version_no": reg.current_version,
                "benefits_confirmed": True,
                "reason": reason,
            },
            ip,
            request_id,
        )
    return reg


def _clean_comments(comments: dict[str, str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    kept: dict[str, str] = {}
    for section, text in comments.items():
        if section not in SECTIONS:
            errors[f"comments.{section}"] = "不是允许的栏目"
        elif not isinstance(text, str):
            errors[f"comments.{section}"] = "应为文本"
        elif len(text) > MAX_COMMENT_CHARS:
            errors[f"comments.{section}"] = f"意见不能超过{MAX_COMMENT_CHARS}字"
        elif text.strip():
            kept[section] = text
    if not errors and not kept:
        errors["comments"] = "请至少对一个栏目填写补正意见"
    if errors:
        raise ValidationFailed(details={"fields": errors})
    return kept


async def return_for_correction(
    staff: StaffUser,
    registration_id: int,
    lock_version: int,
    comments: dict[str, str],
    deadline: date | None = None,
    *,
    today: date | None = None,
    ip: str = "",
    request_id: str = "",
) -> AnnualRegistration:
    """Return for correction (补正) with a comment per section, tied to the version commented on."""
    today = today or shanghai_today()
    reg = await _registration_in_scope(staff, registration_id)
    _check_lock(reg, lock_version)
    REGISTRATION.check(reg.status, "returned")
    kept = _clean_comments(comments)
    if deadline is None:
        deadline = today + timedelta(days=context.current().settings.correction_days)
    elif deadline < today:
        raise ValidationFailed(details={"fields": {"deadline": "补正期限不能早于今天"}})
    elif deadline > today + timedelta(days=MAX_CORRECTION_DAYS):
        raise ValidationFailed(
            details={"fields": {"deadline": f"补正期限不能超过{MAX_CORRECTION_DAYS}天"}}
        )
    version = await RegistrationVersion.get(registration_id=reg.id, version_no=reg.current_version)
    actor = Actor("staff", staff.id, ip, request_id)
    async with in_transaction() as conn:
        await REGISTRATION.move(
            reg,
            "returned",
            actor,
            reason="；".join(f"{SECTIONS[key]}：{text}" for key, text in kept.items()),
            changes={
                "correction_deadline": deadline,
                "reviewed_by_id": staff.id,
                "reviewed_at": _utcnow(),
            },
            using=conn,
        )
        for section, text in kept.items():
            await ReviewComment.create(
                registration_id=reg.id,
                version_id=version.id,
                section=section,
                comment=text,
                staff_id=staff.id,
                using_db=conn,
            )
        await _notify(
            "registration.returned",
            reg.veteran,
            {"year": reg.report_year, "deadline": deadline},
            object_type="registration",
            object_id=reg.id,
            using=conn,
        )
        await audit.record(
            "staff",
            staff.id,
            "registration.returned",
            "registration",
            reg.id,
            {
                "report_year": reg.report_year,
                "version_no": version.version_no,
                "sections": list(kept),
                "deadline": deadline.isoformat(),
            },
            ip,
            request_id,
        )
    return reg


async def grant_late_filing(
    staff: StaffUser,
    veteran_id: int,
    year: int,
    deadline: date,
    reason: str,
    *,
    today: date | None = None,
    ip: str = "",
    request_id: str = "",
) -> LateFilingPermit:
    """Let one veteran file after the window (or the correction deadline), with a reason."""
    today = today or shanghai_today()
    veteran = await _veteran_in_scope(staff, veteran_id)
    _check_year(year, today)
    errors: dict[str, str] = {}
    if not reason.strip():
        errors["reason"] = "请填写准许补报的原因"
    elif len(reason) > MAX_REASON_CHARS:
        errors["reason"] = "内容过长"
    if deadline < today:
        errors["deadline"] = "补报截止日期不能早于今天"
    elif deadline > today + timedelta(days=MAX_CORRECTION_DAYS):
        errors["deadline"] = f"补报截止日期不能超过{MAX_CORRECTION_DAYS}天"
    if errors:
        raise ValidationFailed(details={"fields": errors})
    if not must_file(veteran, year):
        raise RegistrationNotRequired("该退役军人本年度无需进行年度登记。")
    reg = await AnnualRegistration.get_or_none(veteran_id=veteran.id, report_year=year)
    if reg is not None and reg.status not in EDITABLE:
        raise _not_editable(reg)
    async with in_transaction():
        permit, _ = await LateFilingPermit.update_or_create(
            defaults={"deadline": deadline, "reason": reason, "granted_by_id": staff.id},
            veteran_id=veteran.id,
            report_year=year,
        )
        await audit.record(
            "staff",
            staff.id,
            "registration.late_filing_granted",
            "veteran",
            veteran.id,
            {"report_year": year, "deadline": deadline.isoformat(), "reason": reason},
            ip,
            request_id,
        )
    return permit


# ---- portal lists ---------------------------------------------------------------------------


@dataclass
class Page:
    """One page of a keyset-paged list; pass next_after_id back to get the next page."""

    items: list[AnnualRegistration]
    next_after_id: int | None


def in_scope(scope_prefix: str) -> Q:
    """county_code under a region prefix, as a range the indexes can use.

    Tortoise renders startswith on MySQL as CAST(col AS CHAR) LIKE 'p%', which no index serves;
    codes are digits, so [prefix, prefix with its last digit + 1) is the same set of codes.
    """
    if not scope_prefix:
        return Q()
    if len(scope_prefix) >= 6:
        return Q(county_code=scope_prefix)
    upper = scope_prefix[:-1] + chr(ord(scope_prefix[-1]) + 1)
    return Q(county_code__gte=scope_prefix, county_code__lt=upper)


def _clamp(limit: int, ceiling: int = 200) -> int:
    return max(1, min(int(limit), ceiling))


async def list_registrations(
    scope_prefix: str,
    year: int,
    status: str | None = None,
    county_code: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> Page:
    """Registrations of a year in scope, ordered by (county_code, id), keyset-paged.

    The filter and the order follow the indexes (report_year, status, county_code, id) and
    (report_year, county_code, id), so a page costs the same at row 1,000,000 as at row 1.
    """
    limit = _clamp(limit)
    query = AnnualRegistration.filter(report_year=year)
    if status is not None:
        query = query.filter(status=status)
    if county_code is not None:
        if not county_code.startswith(scope_prefix):
            return Page([], None)
        query = query.filter(county_code=county_code)
    else:
        query = query.filter(in_scope(scope_prefix))
    if after_id is not None:
        last = await AnnualRegistration.get_or_none(id=after_id).values("county_code")
        if last is None:
            return Page([], None)
        query = query.filter(
            Q(county_code__gt=last["county_code"])
            | Q(county_code=last["county_code"], id__gt=after_id)
        )
    rows = await query.order_by("county_code", "id").limit(limit + 1).select_related("veteran")
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more else None)


async def overdue_reviews(
    scope_prefix: str,
    now: datetime | None = None,
    *,
    after_id: int | None = None,
    limit: int = 50,
) -> Page:
    """Submitted registrations waiting longer than the review period, by county, oldest first.

    Served by the index (status, county_code, submitted_at, id) for any scope.
    """
    limit = _clamp(limit)
    now = now or _utcnow()
    cutoff = now - timedelta(days=context.current().settings.review_period_days)
    query = AnnualRegistration.filter(
        in_scope(scope_prefix), status="submitted", submitted_at__lt=cutoff
    )
    if after_id is not None:
        last = await AnnualRegistration.get_or_none(id=after_id).values(
            "county_code", "submitted_at"
        )
        if last is None or last["submitted_at"] is None:
            return Page([], None)
        county, mark = last["county_code"], last["submitted_at"]
        query = query.filter(
            Q(county_code__gt=county)
            | Q(county_code=county, submitted_at__gt=mark)
            | Q(county_code=county, submitted_at=mark, id__gt=after_id)
        )
    rows = (
        await query.order_by("county_code", "submitted_at", "id")
        .limit(limit + 1)
        .select_related("veteran")
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more else None)


@dataclass
class NotFiledReport:
    """Veterans who must file for the year and have not submitted, with counts by county."""

    counts: dict[str, int]
    total: int
    items: list[Veteran]
    next_after_id: int | None


def _must_file_filter(year: int) -> Q:
    first, last = date(year, 1, 1), date(year, 12, 31)
    return Q(pay_start_date__lte=last) & (
        Q(status="active") | Q(status_date__gte=first, status__not="active")
    )


async def not_filed(
    scope_prefix: str,
    year: int,
    county_code: str | None = None,
    *,
    after_id: int | None = None,
    limit: int = 100,
) -> NotFiledReport:
    """Veterans in scope who must file for the year and have no submitted registration."""
    limit = _clamp(limit, 500)
    if county_code is not None and not county_code.startswith(scope_prefix):
        return NotFiledReport({}, 0, [], None)
    filed = AnnualRegistration.filter(report_year=year, status__in=FILED).values("veteran_id")
    query = Veteran.filter(_must_file_filter(year)).filter(~Q(id__in=Subquery(filed)))
    if county_code is not None:
        query = query.filter(county_code=county_code)
    else:
        query = query.filter(in_scope(scope_prefix))
    grouped = (
        await query.annotate(n=Count("id"))
        .group_by("county_code")
        .order_by("county_code")
        .values("county_code", "n")
    )
    counts = {row["county_code"]: int(row["n"]) for row in grouped}
    page = query.order_by("id")
    if after_id is not None:
        page = page.filter(id__gt=after_id)
    rows = await page.limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return NotFiledReport(counts, sum(counts.values()), rows, rows[-1].id if more else None)


# ---- detail and diff ------------------------------------------------------------------------


@dataclass
class SectionDiff:
    """How one section differs from the veteran's previous year's last version."""

    section: str
    label: str
    #: new (no previous year), same, changed
    state: str
    before: Any
    after: Any
    #: list sections: items present now and not last year, and the other way round
    added: list[Any] = field(default_factory=list)
    removed: list[Any] = field(default_factory=list)


def diff_content(before: dict[str, Any] | None, after: dict[str, Any]) -> list[SectionDiff]:
    """Section-by-section comparison of two stored contents (before None: no previous year)."""
    result: list[SectionDiff] = []
    keys = [*CONTENT_SECTIONS, "remarks"]
    for key in keys:
        label = SECTIONS.get(key, SECTIONS["general"])
        now = after.get(key)
        if before is None:
            result.append(SectionDiff(key, label, "new", None, now))
            continue
        then = before.get(key)
        state = "same" if then == now else "changed"
        diff = SectionDiff(key, label, state, then, now)
        if isinstance(now, list) or isinstance(then, list):
            old_items, new_items = then or [], now or []
            diff.added = [item for item in new_items if item not in old_items]
            diff.removed = [item for item in old_items if item not in new_items]
        result.append(diff)
    return result


@dataclass
class RegistrationDetail:
    """Everything the review page shows for one registration."""

    registration: AnnualRegistration
    veteran: Veteran
    versions: list[RegistrationVersion]
    comments: list[ReviewComment]
    transitions: list[TransitionLog]
    previous: AnnualRegistration | None
    previous_version: RegistrationVersion | None
    diff: list[SectionDiff]
    confirmation: BenefitConfirmation | None
    permit: LateFilingPermit | None
    window: Window
    #: the content under review: the current version's, or the draft before any submission
    content: dict[str, Any]
    #: the staff member asking may approve (not the clerk who entered it on site)
    can_approve: bool


async def registration_detail(staff: StaffUser, registration_id: int) -> RegistrationDetail:
    """One registration in scope with its versions, comments, history and diff to last year."""
    reg = await _registration_in_scope(staff, registration_id)
    versions = await RegistrationVersion.filter(registration_id=reg.id).order_by("version_no")
    comments = (
        await ReviewComment.filter(registration_id=reg.id)
        .order_by("id")
        .select_related("version", "staff")
    )
    transitions = await TransitionLog.filter(workflow=REGISTRATION.name, object_id=reg.id).order_by(
        "id"
    )
    veteran_id: int = reg.veteran_id  # type: ignore[attr-defined]
    previous = await AnnualRegistration.get_or_none(
        veteran_id=veteran_id, report_year=reg.report_year - 1
    )
    previous_version = None
    if previous is not None and previous.current_version > 0:
        previous_version = await RegistrationVersion.get_or_none(
            registration_id=previous.id, version_no=previous.current_version
        )
    content = versions[-1].data if versions else reg.draft
    diff = diff_content(previous_version.data if previous_version else None, content)
    confirmation = await BenefitConfirmation.get_or_none(registration_id=reg.id)
    permit = await LateFilingPermit.get_or_none(veteran_id=veteran_id, report_year=reg.report_year)
    entered_ids = {v.entered_by_id for v in versions}  # type: ignore[attr-defined]
    return RegistrationDetail(
        registration=reg,
        veteran=reg.veteran,
        versions=versions,
        comments=comments,
        transitions=transitions,
        previous=previous,
        previous_version=previous_version,
        diff=diff,
        confirmation=confirmation,
        permit=permit,
        window=await window_for(reg.report_year),
        content=content,
        can_approve=reg.status == "submitted" and staff.id not in entered_ids,
    )


# ---- the veteran's view ---------------------------------------------------------------------


async def veteran_registrations(veteran: Veteran) -> list[AnnualRegistration]:
    """Every registration of the veteran, newest year first."""
    return await AnnualRegistration.filter(veteran_id=veteran.id).order_by("-report_year")


@dataclass
class CurrentStatus:
    """The current report year as the veteran sees it (GET /api/v1/registrations/current)."""

    window: Window
    is_open: bool
    must_file: bool
    registration: AnnualRegistration | None
    can_edit: bool
    can_submit: bool
    blocked_reason: str | None
    comments: list[ReviewComment]
    late_filing_deadline: date | None


async def current_status(veteran: Veteran, *, today: date | None = None) -> CurrentStatus:
    """Window, duty, registration and (when returned) comments: two queries in the common case."""
    today = today or shanghai_today()
    window = await current_window(today)
    year = window.report_year
    required = must_file(veteran, year)
    reg = await AnnualRegistration.get_or_none(veteran_id=veteran.id, report_year=year)
    status = reg.status if reg else "draft"
    comments: list[ReviewComment] = []
    permit: LateFilingPermit | None = None
    blocked: str | None = None
    can_edit = required and status in EDITABLE
    if not required:
        blocked = RegistrationNotRequired.message
    elif status == "returned" and reg is not None:
        comments = (
            await ReviewComment.filter(
                registration_id=reg.id, version__version_no=reg.current_version
            )
            .order_by("id")
            .select_related("version")
        )
        deadline = reg.correction_deadline
        if deadline is None or today > deadline:
            permit = await _permit(veteran.id, year, today)
            if permit is None:
                blocked = f"补正截止日期为{_cn_date(deadline) if deadline else '-'}，已经过期。"
    elif status == "draft" and not window.contains(today):
        permit = await _permit(veteran.id, year, today)
        if permit is None:
            blocked = window.closed_error().message
    elif status not in EDITABLE and reg is not None:
        blocked = _not_editable(reg).message
    return CurrentStatus(
        window=window,
        is_open=window.contains(today),
        must_file=required,
        registration=reg,
        can_edit=can_edit,
        can_submit=can_edit and blocked is None,
        blocked_reason=blocked,
        comments=comments,
        late_filing_deadline=permit.deadline if permit else None,
    )


async def status_summary(veteran: Veteran, *, today: date | None = None) -> dict[str, Any]:
    """The registration at a glance for /me: two queries, JSON-ready values."""
    today = today or shanghai_today()
    window = await current_window(today)
    year = window.report_year
    row = await AnnualRegistration.filter(veteran_id=veteran.id, report_year=year).values(
        "status", "correction_deadline", "current_version"
    )
    reg = row[0] if row else None
    deadline = reg["correction_deadline"] if reg else None
    return {
        "report_year": year,
        "must_file": must_file(veteran, year),
        "status": reg["status"] if reg else None,
        "current_version": reg["current_version"] if reg else 0,
        "window_open": window.contains(today),
        "opens_on": window.opens_on.isoformat(),
        "closes_on": window.closes_on.isoformat(),
        "correction_deadline": deadline.isoformat() if deadline else None,
    }
