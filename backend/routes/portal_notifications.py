"""Portal pages of notifications: every message's state and attempts, templates, phone tasks.

Messages and phone tasks are limited to the staff member's region (another county's answers
404). Template configuration is one setting for the whole province: province staff change it.

A phone task shows the masked phone; the full number is shown like the full ID number on the
roster: once, in answer to a POST with a CSRF token, on a page the browser must not cache,
and every view writes an audit row `veteran.phone_viewed`.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.app import client_ip
from backend.errors import NotFound, TemplateConfigInvalid, ValidationFailed
from backend.models import OutboxAttempt, OutboxMessage, PhoneTask, StaffUser, TemplateConfig
from backend.routes.portal_common import (
    COOKIE_PATH,
    Page,
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
from backend.services import audit, notifications
from backend.services.accounts import PHONE_PURPOSE

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
#: WeChat errcodes of subscribeMessage.send, in words a clerk understands
ERRCODE_TEXTS = {
    0: "微信已接收",
    -1: "微信系统繁忙",
    40001: "接口凭证无效",
    40014: "接口凭证无效",
    42001: "接口凭证已过期",
    40003: "用户标识（openid）无效",
    40037: "模板ID无效",
    41030: "跳转页面不在已发布的小程序中",
    43101: "用户没有该模板的剩余订阅次数（或已关闭）",
    45009: "已达微信接口调用上限",
    47001: "请求格式错误",
    47003: "消息内容不符合模板字段的规则",
}
#: what an attempt without an errcode means, by its outcome
NO_ERRCODE_TEXTS = {
    "unknown": "未收到微信应答（网络超时或连接中断），结果未知",
    "no_acceptance": "用户没有剩余的订阅次数，未发送",
    "accepted": "微信已接收",
}
LEASE_EXPIRED = "lease expired"

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
        outcome_text=outcome_text,
        **ctx,
    )


def outcome_text(outcome: str, errcode: int | None, errmsg: str) -> str:
    """An attempt's (or message's) result in Chinese; WeChat's own errmsg is English."""
    if errcode is not None:
        return ERRCODE_TEXTS.get(errcode, "微信返回错误")
    if errmsg.startswith(LEASE_EXPIRED):
        return "发送进程中断，结果未知"
    return NO_ERRCODE_TEXTS.get(outcome, "")


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
    labels = await _key_labels(message)
    values = [
        (key, labels.get(key, ""), str(entry.get("value", ""))) for key, entry in data.items()
    ]
    return _page(
        request,
        "notifications/detail.html",
        message=message,
        attempts=attempts,
        tasks=tasks,
        values=values,
    )


async def _key_labels(message: OutboxMessage) -> dict[str, str]:
    """WeChat key -> the Chinese name of the value mapped to it, from the event's template.

    The message keeps only the keys; the mapping is today's configuration, used only while
    it still names the template the message was sent with.
    """
    config = await TemplateConfig.get_or_none(event=message.event)
    spec = notifications.EVENTS.get(message.event)
    if config is None or config.template_id != message.template_id:
        return {}
    labels: dict[str, str] = {}
    for key, name in (config.fields_map or {}).items():
        value = spec.values.get(name) if spec else None
        labels[key] = value.label if value else notifications.VALUE_LABELS.get(name, "")
    return labels


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
        task_events=await _task_events(page.items),
        revealed={},
    )


async def _task_events(tasks: list[PhoneTask]) -> dict[int, str]:
    """Task id -> the event of its outbox message, so approval and interview tasks differ."""
    message_ids = {t.message_id for t in tasks if t.message_id}  # type: ignore[attr-defined]
    if not message_ids:
        return {}
    events = dict(await OutboxMessage.filter(id__in=message_ids).values_list("id", "event"))
    return {
        t.id: events[t.message_id]  # type: ignore[attr-defined]
        for t in tasks
        if t.message_id in events  # type: ignore[attr-defined]
    }


@bp.post("/notifications/phone-tasks/<task_id:int>/phone", name="phone_task_phone")
@staff_required()
async def show_task_phone(request: Request, staff: StaffUser, task_id: int) -> HTTPResponse:
    """The veteran's full phone number for one task, once, audited; never cached."""
    task = (
        await PhoneTask.filter(id=task_id, county_code__startswith=scope_prefix(staff))
        .select_related("veteran")
        .first()
    )
    if task is None:
        raise NotFound()
    veteran = task.veteran
    revealed: dict[int, str] = {}
    if veteran.phone_cipher:
        revealed[task.id] = request.app.ctx.cipher.decrypt(veteran.phone_cipher, PHONE_PURPOSE)
        await audit.record(
            "staff",
            staff.id,
            "veteran.phone_viewed",
            "veteran",
            veteran.id,
            {"phone_task_id": task.id},
            client_ip(request),
            getattr(request.ctx, "request_id", ""),
        )
    return _page(
        request,
        "notifications/phone_tasks.html",
        page=Page([task], None, 1),
        selected_status="",
        next_query="",
        task_events=await _task_events([task]),
        revealed=revealed,
        single=True,
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
