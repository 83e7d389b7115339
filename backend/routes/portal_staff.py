"""Portal pages for staff accounts (created and disabled by the level above) and the audit log.

Audit scope: province staff see every row. City and county staff see the rows written by staff
of their region and below, and by veterans of their counties; rows written by the system (the
dispatcher, lockouts) about accounts show only to the province, since a system row carries no
region of its own.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from tortoise.expressions import Q, Subquery

from backend.app import client_ip
from backend.errors import ValidationFailed
from backend.models.audit import AuditLog
from backend.models.staff import StaffUser
from backend.models.veterans import Veteran
from backend.routes.portal_common import (
    flash,
    form_value,
    keyset_page,
    page_args,
    query_without,
    redirect,
    render,
    scope_prefix,
    staff_required,
)
from backend.services import staff as staff_service

logger = logging.getLogger(__name__)

bp = Blueprint("portal_staff", url_prefix="/portal")

ACTOR_TYPES = {"staff": "工作人员", "veteran": "退役军人", "system": "系统"}


def _form(request: Request, name: str, limit: int = 255) -> str:
    return form_value(request, name).strip()[: limit + 1]


@bp.get("/staff", name="staff")
@staff_required()
async def list_staff(request: Request, staff: StaffUser) -> HTTPResponse:
    """Accounts in the user's region and below; leads also get the form for the level below."""
    return await _staff_page(request, staff)


async def _staff_page(
    request: Request,
    staff: StaffUser,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> HTTPResponse:
    members = await staff_service.list_staff(staff)
    regions = await staff_service.manageable_regions(staff)
    manageable = {r.code for r in regions}
    return render(
        request,
        "staff/list.html",
        status=status,
        members=members,
        regions=regions,
        manageable=manageable,
        roles=staff_service.ROLE_LABELS,
        levels=staff_service.LEVEL_LABELS,
        errors=errors or {},
        form=form or {},
    )


@bp.post("/staff", name="staff_create")
@staff_required(lead=True)
async def create_staff(request: Request, staff: StaffUser) -> HTTPResponse:
    """Create an account for a region one level below the lead's own."""
    password = form_value(request, "password")
    limits = {"username": 64, "display_name": 64, "role": 16, "region_code": 6}
    typed = {name: _form(request, name, limit) for name, limit in limits.items()}
    try:
        if password != form_value(request, "password_again"):
            raise ValidationFailed(details={"fields": {"password_again": "两次输入的密码不一致"}})
        created = await staff_service.create_staff(
            staff,
            typed["username"],
            typed["display_name"],
            password,
            typed["role"],
            typed["region_code"],
            ip=client_ip(request),
            request_id=request.ctx.request_id,
        )
    except ValidationFailed as exc:
        # Show the form again with what was typed (never the passwords) and why it failed.
        fields = exc.details.get("fields", {})
        return await _staff_page(request, staff, status=422, errors=fields, form=typed)
    flash(request, f"已创建账号 {created.username}。请将初始密码当面交给本人。")
    return redirect(request, "/portal/staff")


@bp.post("/staff/<staff_id:int>/disable", name="staff_disable")
@staff_required(lead=True)
async def disable_staff(request: Request, staff: StaffUser, staff_id: int) -> HTTPResponse:
    """Disable an account one level down; its sessions end at once."""
    target = await staff_service.set_active(
        staff,
        staff_id,
        False,
        _form(request, "reason"),
        ip=client_ip(request),
        request_id=request.ctx.request_id,
    )
    flash(request, f"已停用账号 {target.username}。")
    return redirect(request, "/portal/staff")


@bp.post("/staff/<staff_id:int>/enable", name="staff_enable")
@staff_required(lead=True)
async def enable_staff(request: Request, staff: StaffUser, staff_id: int) -> HTTPResponse:
    """Re-enable an account one level down (also lifts a lockout)."""
    target = await staff_service.set_active(
        staff,
        staff_id,
        True,
        _form(request, "reason"),
        ip=client_ip(request),
        request_id=request.ctx.request_id,
    )
    flash(request, f"已启用账号 {target.username}。")
    return redirect(request, "/portal/staff")


@bp.post("/staff/<staff_id:int>/totp/reset", name="staff_totp_reset")
@staff_required(lead=True)
async def reset_staff_totp(request: Request, staff: StaffUser, staff_id: int) -> HTTPResponse:
    """Clear the TOTP of an account one level down (lost phone); it enrols again at login."""
    target = await staff_service.reset_totp(
        staff,
        staff_id,
        _form(request, "reason"),
        ip=client_ip(request),
        request_id=request.ctx.request_id,
    )
    flash(request, f"已重置账号 {target.username} 的动态验证码。")
    return redirect(request, "/portal/staff")


def _audit_scope(staff: StaffUser) -> Q | None:
    if staff.region.level == "province":
        return None
    prefix = scope_prefix(staff)
    staff_ids = Subquery(StaffUser.filter(region_id__startswith=prefix).values("id"))
    veteran_ids = Subquery(Veteran.filter(county_code__startswith=prefix).values("id"))
    return Q(actor_type="staff", actor_id__in=staff_ids) | Q(
        actor_type="veteran", actor_id__in=veteran_ids
    )


@bp.get("/audit", name="audit")
@staff_required()
async def list_audit(request: Request, staff: StaffUser) -> HTTPResponse:
    """The audit log, newest first, filtered by object, actor and action, within scope."""
    after, limit = page_args(request)
    filters = {
        key: request.args.get(key, "").strip()[:64]
        for key in ("object_type", "object_id", "actor_type", "actor_id", "action")
    }
    query = AuditLog.all()
    scope = _audit_scope(staff)
    if scope is not None:
        query = query.filter(scope)
    for key in ("object_type", "object_id", "action"):
        if filters[key]:
            query = query.filter(**{key: filters[key]})
    if filters["actor_type"]:
        if filters["actor_type"] not in ACTOR_TYPES:
            raise ValidationFailed("操作人类型不正确。")
        query = query.filter(actor_type=filters["actor_type"])
    if filters["actor_id"]:
        if not filters["actor_id"].isdigit():
            raise ValidationFailed("操作人编号应为数字。")
        query = query.filter(actor_id=int(filters["actor_id"]))
    page = await keyset_page(query, after, limit)

    staff_ids = {r.actor_id for r in page.items if r.actor_type == "staff" and r.actor_id}
    names = dict(
        await StaffUser.filter(id__in=staff_ids).values_list("id", "display_name")
        if staff_ids
        else []
    )
    return render(
        request,
        "audit/list.html",
        page=page,
        filters=filters,
        actor_types=ACTOR_TYPES,
        staff_names=names,
        base_query=query_without(request, "after"),
    )
