"""Portal pages of notifications: every message's state and attempts, templates, phone tasks.

Messages and phone tasks are limited to the staff member's region (another county's answers
404). Template configuration is one setting for the whole province: province staff change it.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.app import client_ip
from backend.errors import TemplateConfigInvalid, ValidationFailed
from backend.models import OutboxAttempt, OutboxMessage, PhoneTask, StaffUser, TemplateConfig
from backend.routes.portal_common import (
    COOKIE_PATH,
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
from backend.services import notifications

bp = Blueprint("portal_notifications", url_prefix=COOKIE_PATH)

MESSAGE_STATUSES = {
    "pending": "待发送",
    "retry": "等待重试",
    "sending": "发送中",
    "accepted": "微信已接收",
    "delivered": "已送达",
    "unknown": "结果未知",
    "failed": "发送失败",
    "undeliverable": "无法送达",
}
TASK_STATUSES = {"open": "待处理", "done": "已完成"}
ATTEMPT_OUTCOMES = {
    "accepted": "微信已接收",
    "retry": "微信繁忙，稍后重试",
    "refused": "微信拒绝",
    "unknown": "未收到应答",
    "no_acceptance": "未发送",
}
BADGES = {
    "delivered": "badge-ok",
    "done": "badge-ok",
    "accepted": "badge-warn",
    "pending": "badge-warn",
    "retry": "badge-warn",
    "unknown": "badge-warn",
    "open": "badge-warn",
    "failed": "badge-bad",
    "undeliverable": "badge-bad",
}


def _page(request: Request, template: str, **ctx: Any) -> HTTPResponse:
    return render(
        request,
        template,
        message_statuses=MESSAGE_STATUSES,
        task_statuses=TASK_STATUSES,
        attempt_outcomes=ATTEMPT_OUTCOMES,
        events={name: spec.label for name, spec in notifications.EVENTS.items()},
        badge=lambda status: BADGES.get(status, ""),
        **ctx,
    )


def _choice(request: Request, name: str, allowed: dict[str, str], default: str = "") -> str:
    value = request.args.get(name, default)
    if value and value not in allowed:
        raise ValidationFailed(details={"fields": {name: "不是允许的取值"}})
    return value


@bp.get("/notifications", name="list_messages")
@staff_required()
async def list_messages(request: Request, staff: StaffUser) -> HTTPResponse:
    """Every subscribe message in the staff member's region, newest first, with its state."""
    status = _choice(request, "status", MESSAGE_STATUSES)
    event = _choice(request, "event", dict.fromkeys(notifications.EVENTS, ""))
    query = OutboxMessage.filter(veteran__county_code__startswith=scope_prefix(staff))
    if status:
        query = query.filter(status=status)
    if event:
        query = query.filter(event=event)
    page = await keyset_page(query.select_related("veteran"), *page_args(request))
    return _page(
        request,
        "notifications/list.html",
        page=page,
        selected_status=status,
        selected_event=event,
        next_query=query_without(request, "after"),
    )


@bp.get("/notifications/messages/<message_id:int>", name="show_message")
@staff_required()
async def show_message(request: Request, staff: StaffUser, message_id: int) -> HTTPResponse:
    """One message: what it says, its state and every attempt to send it."""
    message = await OutboxMessage.get_or_none(id=message_id).select_related("veteran")
    in_scope_or_404(staff, message.veteran.county_code if message else "")
    assert message is not None
    attempts = await OutboxAttempt.filter(message_id=message.id).order_by("id")
    tasks = await PhoneTask.filter(message_id=message.id)
    data = message.payload.get("data", {}) if isinstance(message.payload, dict) else {}
    values = [(key, str(entry.get("value", ""))) for key, entry in data.items()]
    return _page(
        request,
        "notifications/detail.html",
        message=message,
        attempts=attempts,
        tasks=tasks,
        values=values,
    )


@bp.get("/notifications/templates", name="list_templates")
@staff_required(level="province")
async def list_templates(request: Request, staff: StaffUser) -> HTTPResponse:
    """Which WeChat template each event uses, and a form to change it."""
    configs = {c.event: c for c in await TemplateConfig.all()}
    return _page(
        request,
        "notifications/templates.html",
        specs=notifications.EVENTS,
        configs=configs,
        kind_labels=notifications.KIND_LABELS,
        fits=notifications.FITS,
        mapping_text=_mapping_text,
    )


def _mapping_text(fields_map: dict[str, str] | None) -> str:
    return "\n".join(f"{key} = {name}" for key, name in (fields_map or {}).items())


def _parse_mapping(text: str) -> tuple[dict[str, str], list[str]]:
    """'thing1 = title' lines into a mapping, and the lines that are not of that form."""
    mapping: dict[str, str] = {}
    bad: list[str] = []
    for line in text.splitlines()[:40]:
        if not line.strip():
            continue
        key, sep, name = line.partition("=")
        if not sep or not key.strip() or not name.strip():
            bad.append(line.strip()[:40])
            continue
        mapping[key.strip()] = name.strip()
    return mapping, bad


@bp.post("/notifications/templates/<event>", name="save_template")
@staff_required(level="province")
async def save_template(request: Request, staff: StaffUser, event: str) -> HTTPResponse:
    """Save one event's template; a mapping that could not fit is refused, field by field."""
    back = "/portal/notifications/templates"
    mapping, bad = _parse_mapping(form_value(request, "fields_map")[:4000])
    if bad:
        flash(
            request, "字段对应关系每行应写成“字段名 = 内容”，有误的行：" + "、".join(bad), "error"
        )
        return redirect(request, back)
    try:
        await notifications.save_template_config(
            event,
            form_value(request, "template_id").strip(),
            form_value(request, "page").strip(),
            mapping,
            staff,
        )
    except TemplateConfigInvalid as exc:
        problems = exc.details.get("fields", {})
        text = "；".join(
            f"{name.removeprefix('fields_map.')}：{why}" for name, why in problems.items()
        )
        flash(request, f"{exc.message}{text}", "error")
        return redirect(request, back)
    flash(request, "消息模板配置已保存。")
    return redirect(request, back)


@bp.get("/notifications/phone-tasks", name="list_phone_tasks")
@staff_required()
async def list_phone_tasks(request: Request, staff: StaffUser) -> HTTPResponse:
    """Veterans WeChat could not reach, for the county to phone."""
    status = _choice(request, "status", TASK_STATUSES, default="open")
    query = PhoneTask.filter(county_code__startswith=scope_prefix(staff))
    if status:
        query = query.filter(status=status)
    page = await keyset_page(query.select_related("veteran"), *page_args(request))
    return _page(
        request,
        "notifications/phone_tasks.html",
        page=page,
        selected_status=status,
        next_query=query_without(request, "after"),
    )


@bp.post("/notifications/phone-tasks/<task_id:int>/done", name="complete_phone_task")
@staff_required()
async def complete_phone_task(request: Request, staff: StaffUser, task_id: int) -> HTTPResponse:
    """Record that the veteran was phoned, with a note of what was said."""
    await notifications.complete_phone_task(
        staff,
        task_id,
        form_value(request, "note").strip(),
        scope_prefix(staff),
        client_ip(request),
        getattr(request.ctx, "request_id", ""),
    )
    flash(request, "已记录电话告知。")
    return redirect(request, "/portal/notifications/phone-tasks")
