"""Portal pages for staff accounts (created and disabled by the level above) and the audit log.

Audit scope: province staff see every row. City and county staff see the rows written by staff
of their region and below, and by veterans of their counties; rows written by the system (the
dispatcher, lockouts) about accounts show only to the province, since a system row carries no
region of its own.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

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
    local_datetime,
    page_args,
    query_without,
    redirect,
    render,
    scope_prefix,
    staff_required,
)
from backend.schemas.registrations import SECTIONS
from backend.services import staff as staff_service

logger = logging.getLogger(__name__)

bp = Blueprint("portal_staff", url_prefix="/portal")

ACTOR_TYPES = {"staff": "工作人员", "veteran": "退役军人", "system": "系统"}

#: Chinese names of every action code the services write; an unknown code shows as itself
ACTION_LABELS = {
    "privacy.accepted": "同意隐私政策",
    "binding.requested": "申请人工确认绑定",
    "binding.bound": "绑定身份",
    "binding.refused": "绑定未通过",
    "binding.confirmed": "人工确认绑定",
    "binding.rejected": "驳回绑定申请",
    "binding.unbound": "解除绑定",
    "interview.opened": "发起约谈",
    "interview.held": "记录约谈",
    "interview.closed": "约谈结束",
    "interview.cancelled": "取消约谈",
    "roster.previewed": "预览名册",
    "roster.rejected": "名册校验未通过",
    "roster.imported": "导入名册",
    "registration.window_set": "设置登记时间",
    "registration.submitted": "提交年度登记",
    "registration.entered_onsite": "现场代录登记",
    "registration.approved": "审核通过",
    "registration.returned": "退回补正",
    "registration.late_filing_granted": "允许补报",
    "template_config.saved": "保存消息模板",
    "phone_task.done": "完成电话通知",
    "veteran.id_viewed": "查看完整身份证号",
    "staff.login": "登录",
    "staff.password_accepted": "密码正确，待验证动态验证码",
    "staff.login_failed": "登录失败",
    "staff.locked": "账号锁定",
    "staff.totp_failed": "动态验证码错误",
    "staff.totp_enrolled": "启用动态验证码",
    "staff.totp_reset": "重置动态验证码",
    "staff.created": "创建账号",
    "staff.enabled": "启用账号",
    "staff.disabled": "停用账号",
}

#: Chinese names of the object types in audit rows
OBJECT_LABELS = {
    "veteran": "退役军人",
    "wechat_account": "微信账号",
    "binding_request": "绑定申请",
    "interview": "约谈",
    "roster_import_batch": "名册导入",
    "staff": "工作人员",
    "registration_window": "登记时间",
    "registration": "年度登记",
    "template_config": "消息模板",
    "phone_task": "电话通知",
}

#: Chinese names of the detail keys; an unknown key shows as itself
DETAIL_LABELS = {
    "version": "隐私政策版本",
    "reason": "原因",
    "account_id": "微信账号编号",
    "by": "方式",
    "veteran_id": "退役军人编号",
    "binding_request_id": "绑定申请编号",
    "tokens_revoked": "注销登录凭证数",
    "registration_id": "年度登记编号",
    "held_at": "约谈时间",
    "filename": "文件名",
    "rows": "总行数",
    "created": "新增",
    "updated": "更新",
    "unchanged": "未变化",
    "errors": "错误行数",
    "second_factor": "第二步验证",
    "failures": "连续失败次数",
    "active": "账号启用",
    "minutes": "锁定分钟数",
    "stage": "环节",
    "username": "用户名",
    "role": "角色",
    "region": "行政区划",
    "opens_on": "开始日期",
    "closes_on": "截止日期",
    "before": "原设置",
    "demo": "演示设置",
    "report_year": "年度",
    "version_no": "版本",
    "from": "原状态",
    "benefits_confirmed": "确认待遇",
    "sections": "退回栏目",
    "deadline": "期限",
    "template_id": "模板编号",
    "page": "跳转页面",
    "fields_map": "字段对应",
}

#: coded values in details, per key; free text (a reason typed by staff) passes through as is
VALUE_LABELS: dict[str, dict[str, str]] = {
    "by": {"phone": "手机号核验"},
    "from": {"draft": "草稿", "returned": "退回补正"},
    "second_factor": {"totp": "动态验证码", "setup": "需先设置动态验证码"},
    "stage": {"enrol": "设置动态验证码"},
    "role": staff_service.ROLE_LABELS,
    "sections": SECTIONS,
    "reason": {
        "unknown_id": "身份证号不在名册中",
        "name": "姓名与名册不符",
        "inactive": "名册状态不可绑定",
        "bound_elsewhere": "已绑定其他微信账号",
    },
}


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


def _detail_value(key: str, value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, list | tuple):
        return "、".join(_detail_value(key, item) for item in value) or "—"
    if isinstance(value, dict):
        return "，".join(f"{k}：{_detail_value(str(k), v)}" for k, v in value.items()) or "—"
    if key == "held_at" and isinstance(value, str):
        try:
            return local_datetime(dt.datetime.fromisoformat(value))
        except ValueError:
            return value
    return VALUE_LABELS.get(key, {}).get(str(value), str(value))


def describe_detail(detail: Any) -> list[tuple[str, str]]:
    """An audit detail as (Chinese label, readable value) pairs, in the order written."""
    if not isinstance(detail, dict):
        return [] if detail in (None, "", [], {}) else [("详情", _detail_value("", detail))]
    pairs = [(str(key), value) for key, value in detail.items()]
    return [(DETAIL_LABELS.get(key, key), _detail_value(key, value)) for key, value in pairs]


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
        action_labels=ACTION_LABELS,
        object_labels=OBJECT_LABELS,
        details={row.id: describe_detail(row.detail) for row in page.items},
        base_query=query_without(request, "after"),
    )
