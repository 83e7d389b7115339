"""Portal roster pages: list, detail, audited full ID view, unbinding, binding requests.

Who sees a full ID number: any staff member whose region covers the veteran's county (the
county's clerks and leads, and the city and province above). It is shown once, in answer to a
POST with a CSRF token, on a page the browser must not cache, and every view writes an audit
row `veteran.id_viewed`. Lists show only the masked ID and phone.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from tortoise.expressions import Subquery

from backend.app import client_ip
from backend.errors import NotFound, ValidationFailed
from backend.models.regions import Region
from backend.models.registrations import AnnualRegistration
from backend.models.staff import StaffUser
from backend.models.veterans import STATUSES, BindingEvent, BindingRequest, Veteran, WechatAccount
from backend.routes.portal_common import (
    flash,
    form_value,
    in_scope_or_404,
    keyset_page,
    page_args,
    query_without,
    redirect,
    render,
    scope_prefix,
    staff_required,
)
from backend.services import accounts, audit

logger = logging.getLogger(__name__)

bp = Blueprint("portal_veterans", url_prefix="/portal")

STATUS_LABELS = {
    "active": "正常",
    "suspended": "暂停发放",
    "deceased": "已故",
    "transferred": "已转出",
}
BINDING_ACTIONS = {
    "bound": "自助绑定",
    "pending": "等待核实",
    "confirmed": "工作人员确认绑定",
    "rejected": "工作人员驳回",
    "unbound": "解除绑定",
}
REGISTRATION_STATUSES = {
    "draft": "草稿",
    "submitted": "待审核",
    "returned": "退回补正",
    "approved": "审核通过",
}
ID_PURPOSE = "veteran.id_number"


async def _counties(staff: StaffUser) -> dict[str, str]:
    rows = await Region.filter(level="county", code__startswith=scope_prefix(staff)).order_by(
        "code"
    )
    return {row.code: row.name for row in rows}


async def _veteran_in_scope(staff: StaffUser, veteran_id: int) -> Veteran:
    veteran = await Veteran.get_or_none(id=veteran_id)
    if veteran is None:
        raise NotFound
    in_scope_or_404(staff, veteran.county_code)
    return veteran


def _form_text(request: Request, name: str, limit: int = 255) -> str:
    value = form_value(request, name).strip()
    if len(value) > limit:
        raise ValidationFailed(f"内容过长（不超过 {limit} 字）。")
    return value


@bp.get("/veterans", name="veterans")
@staff_required()
async def list_veterans(request: Request, staff: StaffUser) -> HTTPResponse:
    """The roster in the user's scope, newest entries first, masked numbers only."""
    after, limit = page_args(request)
    county = request.args.get("county", "")
    status = request.args.get("status", "")
    bound = request.args.get("bound", "")
    name = request.args.get("q", "").strip()[:64]

    query = Veteran.filter(county_code__startswith=scope_prefix(staff))
    if county:
        in_scope_or_404(staff, county)
        query = query.filter(county_code=county)
    if status:
        if status not in STATUSES:
            raise ValidationFailed("状态筛选条件不正确。")
        query = query.filter(status=status)
    bound_ids = Subquery(WechatAccount.filter(veteran_id__isnull=False).values("veteran_id"))
    if bound == "yes":
        query = query.filter(id__in=bound_ids)
    elif bound == "no":
        query = query.exclude(id__in=bound_ids)
    if name:
        query = query.filter(name__contains=name)
    page = await keyset_page(query, after, limit)

    ids = [v.id for v in page.items]
    bound_now = set(
        await WechatAccount.filter(veteran_id__in=ids).values_list("veteran_id", flat=True)
    )
    return render(
        request,
        "veterans/list.html",
        page=page,
        counties=await _counties(staff),
        statuses=STATUS_LABELS,
        bound_now=bound_now,
        filters={"county": county, "status": status, "bound": bound, "q": name},
        base_query=query_without(request, "after"),
    )


@bp.get("/veterans/<veteran_id:int>", name="veteran")
@staff_required()
async def show_veteran(request: Request, staff: StaffUser, veteran_id: int) -> HTTPResponse:
    """One roster entry with its WeChat binding, binding history and registrations."""
    veteran = await _veteran_in_scope(staff, veteran_id)
    county = await Region.get_or_none(code=veteran.county_code)
    account = await WechatAccount.get_or_none(veteran_id=veteran.id)
    events = (
        await BindingEvent.filter(veteran_id=veteran.id)
        .select_related("staff")
        .order_by("-id")
        .limit(50)
    )
    pending = await BindingRequest.filter(veteran_id=veteran.id, status="pending").order_by("id")
    registrations = await AnnualRegistration.filter(veteran_id=veteran.id).order_by("-report_year")
    return render(
        request,
        "veterans/detail.html",
        veteran=veteran,
        county=county,
        account=account,
        events=events,
        pending=pending,
        registrations=registrations,
        statuses=STATUS_LABELS,
        binding_actions=BINDING_ACTIONS,
        registration_statuses=REGISTRATION_STATUSES,
    )


@bp.post("/veterans/<veteran_id:int>/id-number", name="veteran_id_number")
@staff_required()
async def show_id_number(request: Request, staff: StaffUser, veteran_id: int) -> HTTPResponse:
    """The full ID number, once, with an audit row; never cached, never in a list."""
    veteran = await _veteran_in_scope(staff, veteran_id)
    full = request.app.ctx.cipher.decrypt(veteran.id_cipher, ID_PURPOSE)
    await audit.record(
        "staff",
        staff.id,
        "veteran.id_viewed",
        "veteran",
        veteran.id,
        {},
        client_ip(request),
        request.ctx.request_id,
    )
    return render(request, "veterans/id_number.html", veteran=veteran, id_number=full)


@bp.post("/veterans/<veteran_id:int>/unbind", name="veteran_unbind")
@staff_required()
async def unbind_veteran(request: Request, staff: StaffUser, veteran_id: int) -> HTTPResponse:
    """End the WeChat binding (a reason is required); the account's tokens are revoked."""
    veteran = await _veteran_in_scope(staff, veteran_id)
    reason = _form_text(request, "reason")
    await accounts.unbind(
        veteran.id, staff, reason, ip=client_ip(request), request_id=request.ctx.request_id
    )
    flash(request, "已解除微信绑定，该微信账号需重新绑定后才能使用。")
    return redirect(request, f"/portal/veterans/{veteran.id}")


@bp.get("/bindings", name="bindings")
@staff_required()
async def list_binding_requests(request: Request, staff: StaffUser) -> HTTPResponse:
    """Binding requests waiting for a clerk to confirm the person at the station, oldest first."""
    after_raw = request.args.get("after", "")
    after = int(after_raw) if after_raw.isdigit() else None
    rows = await accounts.pending_binding_requests(staff, after_id=after, limit=51)
    more = len(rows) > 50
    rows = rows[:50]
    return render(
        request,
        "veterans/bindings.html",
        rows=rows,
        next_after=rows[-1].id if more and rows else None,
        counties=await _counties(staff),
    )


@bp.post("/bindings/<request_id:int>/confirm", name="binding_confirm")
@staff_required()
async def confirm_binding(request: Request, staff: StaffUser, request_id: int) -> HTTPResponse:
    """The clerk checked the ID card of the person in front of them: bind the account."""
    reason = _form_text(request, "reason")
    await accounts.confirm_binding(
        request_id, staff, reason, ip=client_ip(request), request_id=request.ctx.request_id
    )
    flash(request, "已确认绑定。")
    return redirect(request, "/portal/bindings")


@bp.post("/bindings/<request_id:int>/reject", name="binding_reject")
@staff_required()
async def reject_binding(request: Request, staff: StaffUser, request_id: int) -> HTTPResponse:
    """The person could not be confirmed: the request ends and the account stays unbound."""
    reason = _form_text(request, "reason")
    await accounts.reject_binding(
        request_id, staff, reason, ip=client_ip(request), request_id=request.ctx.request_id
    )
    flash(request, "已驳回该绑定申请。", "info")
    return redirect(request, "/portal/bindings")
