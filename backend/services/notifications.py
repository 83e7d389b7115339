"""Notifications: which template an event uses, the inbox, and the outbox row for WeChat.

Each event exposes a fixed set of named values, each of one kind (a free text, a date, a
year...). A TemplateConfig maps the template's WeChat keys (thing1, time2...) to value names;
it is checked when saved, so that a message built from it always fits WeChat's rules: only
thing and name values are ever shortened, every other kind must fit by construction. No value
name exposes an interview's reason or a punishment, so neither can reach WeChat's text.

enqueue() runs inside the transaction of the change that caused it: an InboxMessage always;
an OutboxMessage with the complete subscribe/send body when the veteran has a bound account
and the event has a template; a PhoneTask for the county when no account is bound, since
then neither WeChat nor the app can tell the veteran.

"interview.cancelled" has no default template: the stand-in's only appointment template is
a reminder (事项, 时间, 地点, 电话), so a cancellation sent through it would read as a
reminder to come, and it would spend the acceptance the veteran gave for the appointment.
Until the province configures a template of its own, a cancellation reaches a bound veteran
through the inbox and a PhoneTask (EventSpec.phone_without_template): a veteran who misses
it travels for nothing.

The acceptance ledger (and how one tap reported by both the mini-program and WeChat's popup
event is counted once) lives in backend.services.subscriptions; sending, retries, refunds and
the sent event in backend.services.dispatcher.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from backend import context
from backend.errors import Conflict, NotFound, TemplateConfigInvalid, ValidationFailed
from backend.models import (
    InboxMessage,
    OutboxMessage,
    PhoneTask,
    StaffUser,
    TemplateConfig,
    Veteran,
    WechatAccount,
)
from backend.services import audit
from backend.services.subscriptions import on_change, on_popup, report_acceptance
from backend.wechat.template_rules import KNOWN, SHORTENABLE, prefix_of, shorten

logger = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: the government service hotline, for templates with a phone field when none is given
DEFAULT_CONTACT_PHONE = "12345"
MAX_NOTE = 2000
KEY = re.compile(r"^[a-z_]+[0-9]{1,3}$")
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
PAGE = re.compile(r"^[A-Za-z0-9_\-/.]{1,128}(\?[A-Za-z0-9_\-=&%.]{0,120})?$")

#: value kind -> the WeChat key prefixes that can carry it (thing and name are shortened)
FITS: dict[str, frozenset[str]] = {
    "text": frozenset({"thing"}),
    "name": frozenset({"name", "thing"}),
    "phrase": frozenset({"phrase", "thing"}),
    "year": frozenset({"number", "character_string", "thing"}),
    "date": frozenset({"date", "time", "thing"}),
    "datetime": frozenset({"time", "date", "thing"}),
    "phone": frozenset({"phone_number", "character_string", "thing"}),
}

KIND_LABELS = {
    "text": "文字",
    "name": "姓名",
    "phrase": "短语",
    "year": "年份",
    "date": "日期",
    "datetime": "时间",
    "phone": "电话号码",
}


@dataclass(frozen=True)
class ValueSpec:
    kind: str
    label: str


@dataclass(frozen=True)
class EventSpec:
    """One event: its Chinese label, its values and which values the caller must give.

    phone_without_template: when no template is configured, a bound veteran is phoned too,
    for events the veteran must not miss.
    """

    label: str
    values: Mapping[str, ValueSpec]
    required: Mapping[str, type] = field(default_factory=dict)
    optional: Mapping[str, type] = field(default_factory=dict)
    phone_without_template: bool = False


_COMMON = {
    "title": ValueSpec("text", "事项"),
    "name": ValueSpec("name", "姓名"),
    "status": ValueSpec("phrase", "结果"),
    "remark": ValueSpec("text", "说明"),
    "notified_at": ValueSpec("datetime", "通知时间"),
}

EVENTS: dict[str, EventSpec] = {
    "registration.approved": EventSpec(
        "年度登记审核通过",
        {**_COMMON, "year": ValueSpec("year", "年度")},
        required={"year": int},
    ),
    "registration.returned": EventSpec(
        "年度登记退回补正",
        {**_COMMON, "year": ValueSpec("year", "年度"), "deadline": ValueSpec("date", "截止日期")},
        required={"year": int, "deadline": date},
    ),
    "interview.scheduled": EventSpec(
        "约谈安排",
        {
            **_COMMON,
            "planned_at": ValueSpec("datetime", "约谈时间"),
            "location": ValueSpec("text", "地点"),
            "contact_phone": ValueSpec("phone", "联系电话"),
        },
        required={"planned_at": datetime, "location": str},
        optional={"contact_phone": str},
    ),
    "interview.cancelled": EventSpec(
        "约谈取消",
        {
            **_COMMON,
            "planned_at": ValueSpec("datetime", "原定约谈时间"),
            "contact_phone": ValueSpec("phone", "联系电话"),
        },
        required={"planned_at": datetime},
        optional={"contact_phone": str},
        phone_without_template=True,
    ),
}

#: value name -> its Chinese label, for showing a message's keys to staff
VALUE_LABELS: dict[str, str] = {
    name: value.label for spec in EVENTS.values() for name, value in spec.values.items()
}

#: the stand-in's pre-registered demo templates (backend/wechat/standin.py DEMO_TEMPLATES)
DEFAULT_TEMPLATES: dict[str, tuple[str, str, dict[str, str]]] = {
    "registration.approved": (
        "DEMO-registration-result-0001",
        "pages/registration/index",
        {"thing1": "title", "phrase2": "status", "time3": "notified_at", "thing4": "remark"},
    ),
    "registration.returned": (
        "DEMO-correction-notice-0002",
        "pages/registration/index",
        {"thing1": "title", "time2": "deadline", "thing3": "remark"},
    ),
    "interview.scheduled": (
        "DEMO-appointment-notice-0003",
        "pages/index/index",
        {
            "thing1": "title",
            "time2": "planned_at",
            "thing3": "location",
            "phone_number4": "contact_phone",
        },
    ),
}


# -- formatting ------------------------------------------------------------------------------


def format_date(value: date) -> str:
    """2026年4月15日: the form WeChat's date and time fields accept and people read."""
    return f"{value.year}年{value.month}月{value.day}日"


def format_datetime(value: datetime) -> str:
    """2027年1月5日 09:30 in Beijing time."""
    local = value.astimezone(SHANGHAI)
    return f"{format_date(local.date())} {local:%H:%M}"


def _clean(text: str) -> str:
    # WeChat refuses line breaks in values; runs of blanks read as one.
    return " ".join(text.split())


def _event_values(event: str, veteran: Veteran, values: Mapping[str, Any]) -> dict[str, str]:
    """Every value name of the event as text, built from the caller's values."""
    now = datetime.now(UTC)
    if event == "interview.cancelled":
        # As with scheduling, the reason (for the interview or its cancellation) is no value.
        texts = {
            "title": "约谈取消",
            "status": "已取消",
            "remark": "原定约谈已取消，如有疑问请联系服务站",
            "planned_at": format_datetime(values["planned_at"]),
            "contact_phone": _clean(values.get("contact_phone") or "") or DEFAULT_CONTACT_PHONE,
        }
    elif event == "interview.scheduled":
        # The reason for the interview is never a value: only when and where.
        texts = {
            "title": "约谈通知",
            "status": "待面谈",
            "remark": "请按时前往，如有不便请联系服务站",
            "planned_at": format_datetime(values["planned_at"]),
            "location": _clean(values["location"]) or "详见小程序",
            "contact_phone": _clean(values.get("contact_phone") or "") or DEFAULT_CONTACT_PHONE,
        }
    else:
        year = values["year"]
        texts = {"title": f"{year}年度登记审核", "year": str(year)}
        if event == "registration.approved":
            texts |= {"status": "已通过", "remark": "当年待遇已确认，感谢您的配合"}
        else:
            texts |= {
                "status": "需补正",
                "remark": "请在小程序查看审核意见并修改后重新提交",
                "deadline": format_date(values["deadline"]),
            }
    texts["name"] = _clean(veteran.name)
    texts["notified_at"] = format_datetime(now)
    return texts


def build_data(fields_map: Mapping[str, str], texts: Mapping[str, str]) -> dict[str, Any]:
    """The subscribe/send `data` object: each key's value, thing and name shortened to fit."""
    data: dict[str, Any] = {}
    for key, name in fields_map.items():
        value = texts.get(name, "")
        if prefix_of(key) in SHORTENABLE:
            value = shorten(key, value)
        data[key] = {"value": value}
    return data


def _check_values(event: str, values: Mapping[str, Any]) -> EventSpec:
    """Refuse a call that gives the wrong values: a programming error, not a user's."""
    spec = EVENTS.get(event)
    if spec is None:
        raise ValueError(f"unknown notification event {event!r}")
    unknown = set(values) - set(spec.required) - set(spec.optional)
    if unknown:
        raise ValueError(f"{event} takes no values named {sorted(unknown)}")
    for name, kind in spec.required.items():
        value = values.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{event} needs {name} as {kind.__name__}")
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(f"{event}: {name} must be timezone-aware")
        if kind is date and isinstance(value, datetime):
            raise ValueError(f"{event}: {name} must be a date, not a datetime")
    for name, kind in spec.optional.items():
        if values.get(name) is not None and not isinstance(values[name], kind):
            raise ValueError(f"{event} needs {name} as {kind.__name__}")
    return spec


# -- template configuration --------------------------------------------------------------------


def check_template_config(
    event: str, template_id: str, page: str, fields_map: Any
) -> dict[str, str]:
    """Field problems of a template configuration in Chinese; empty when it is sound."""
    problems: dict[str, str] = {}
    spec = EVENTS.get(event)
    if spec is None:
        return {"event": "没有这种通知事件"}
    if not isinstance(template_id, str) or not TEMPLATE_ID.match(template_id):
        problems["template_id"] = "模板ID应为1至128位字母、数字、下划线或连字符"
    if not isinstance(page, str) or (page and not PAGE.match(page)) or page.startswith("/"):
        problems["page"] = "跳转页面应为小程序页面路径，如 pages/index/index，不以“/”开头"
    if not isinstance(fields_map, dict) or not fields_map:
        problems["fields_map"] = "请至少配置一个模板字段"
        return problems
    if len(fields_map) > 20:
        problems["fields_map"] = "模板字段过多"
        return problems
    for key, name in fields_map.items():
        problem = _key_problem(spec, key, name)
        if problem:
            problems[f"fields_map.{key}"[:80]] = problem
    return problems


def _key_problem(spec: EventSpec, key: Any, name: Any) -> str | None:
    if not isinstance(key, str) or not KEY.match(key) or prefix_of(key) not in KNOWN:
        return "不是微信模板的字段名（应如 thing1、time2）"
    value = spec.values.get(name) if isinstance(name, str) else None
    if value is None:
        return "该事件没有这项内容"
    kind = prefix_of(key)
    if kind in FITS[value.kind]:
        return None
    allowed = "、".join(sorted(FITS[value.kind]))
    return f"“{value.label}”是{KIND_LABELS[value.kind]}，不能放入 {kind} 字段（可用：{allowed}）"


async def save_template_config(
    event: str,
    template_id: str,
    page: str,
    fields_map: dict[str, str],
    staff: StaffUser | None,
) -> TemplateConfig:
    """Check and save which template an event uses; TEMPLATE_CONFIG_INVALID with field details."""
    problems = check_template_config(event, template_id, page, fields_map)
    if problems:
        raise TemplateConfigInvalid(details={"fields": problems})

    async with in_transaction() as conn:
        config, _ = await TemplateConfig.update_or_create(
            defaults={
                "template_id": template_id,
                "page": page,
                "fields_map": dict(fields_map),
                "updated_by_id": staff.id if staff else None,
            },
            event=event,
            using_db=conn,
        )
        await audit.record(
            "staff" if staff else "system",
            staff.id if staff else None,
            "template_config.saved",
            "template_config",
            event,
            detail={"template_id": template_id, "page": page, "fields_map": dict(fields_map)},
        )
    return config


async def ensure_default_templates() -> int:
    """Configure the stand-in's demo templates for events that have none; how many were set."""
    made = 0
    for event, (template_id, page, fields_map) in DEFAULT_TEMPLATES.items():
        if not await TemplateConfig.exists(event=event):
            await save_template_config(event, template_id, page, fields_map, None)
            made += 1
    return made


# -- the outbox and the inbox -------------------------------------------------------------------


def _inbox_text(event: str, values: Mapping[str, Any]) -> tuple[str, str]:
    """The inbox title and body, in words a veteran understands."""
    if event == "registration.approved":
        year = values["year"]
        return "年度登记审核已通过", f"您{year}年度的年度登记已审核通过，当年待遇已确认。"
    if event == "registration.returned":
        year, deadline = values["year"], format_date(values["deadline"])
        return (
            "年度登记需要补正",
            f"您{year}年度的年度登记需要补正。请在{deadline}前打开“年度登记”页面，"
            "按审核意见修改后重新提交。",
        )
    if event == "interview.cancelled":
        when = format_datetime(values["planned_at"])
        return "约谈已取消", f"原定于{when}的约谈已取消，如有疑问请联系服务站。"
    when, where = format_datetime(values["planned_at"]), _clean(values["location"])
    return (
        "约谈通知",
        f"服务站约您于{when}在{where}面谈，请按时前往。如时间不便，请与服务站联系。",
    )


async def enqueue(
    event: str,
    veteran: Veteran,
    values: dict[str, Any],
    *,
    object_type: str,
    object_id: int | None,
    using: BaseDBAsyncClient | None = None,
) -> OutboxMessage | None:
    """Tell the veteran about an event, inside the caller's transaction; the outbox row if any."""
    spec = _check_values(event, values)
    title, body = _inbox_text(event, values)
    await InboxMessage.create(
        veteran_id=veteran.id,
        event=event,
        title=title,
        body=body,
        object_type=object_type,
        object_id=object_id,
        using_db=using,
    )

    account = await WechatAccount.filter(veteran_id=veteran.id).using_db(using).first()
    if account is None:
        await open_phone_task(veteran, None, "未绑定微信，请电话告知：" + title, using=using)
        return None
    config = await TemplateConfig.filter(event=event).using_db(using).first()
    if config is None:
        if spec.phone_without_template:
            logger.warning(
                "no template configured for %s: phone task for veteran#%s", event, veteran.id
            )
            await open_phone_task(
                veteran, None, "未配置微信消息模板，请电话告知：" + title, using=using
            )
            return None
        logger.warning(
            "no template configured for %s: veteran#%s sees it in the inbox only", event, veteran.id
        )
        return None

    settings = context.current().settings
    payload = {
        "touser": account.openid,
        "template_id": config.template_id,
        "page": config.page,
        "miniprogram_state": settings.wechat_miniprogram_state,
        "lang": "zh_CN",
        "data": build_data(config.fields_map, _event_values(event, veteran, values)),
    }
    if not config.page:
        del payload["page"]
    return await OutboxMessage.create(
        veteran_id=veteran.id,
        account_id=account.id,
        event=event,
        object_type=object_type,
        object_id=object_id,
        template_id=config.template_id,
        payload=payload,
        status="pending",
        next_attempt_at=datetime.now(UTC),
        using_db=using,
    )


async def open_phone_task(
    veteran: Veteran | int,
    message_id: int | None,
    reason: str,
    *,
    county_code: str | None = None,
    using: BaseDBAsyncClient | None = None,
) -> PhoneTask:
    """Ask the veteran's county to phone them; one open task per message."""
    if isinstance(veteran, int):
        found = await Veteran.filter(id=veteran).using_db(using).first()
        if found is None:
            raise ValueError(f"veteran#{veteran} does not exist")
        veteran = found
    if message_id is not None:
        existing = await PhoneTask.filter(message_id=message_id).using_db(using).first()
        if existing is not None:
            return existing
    return await PhoneTask.create(
        veteran_id=veteran.id,
        county_code=county_code or veteran.county_code,
        message_id=message_id,
        reason=reason[:255],
        using_db=using,
    )


async def on_sent(openid: str, items: list[dict[str, str]]) -> None:
    """subscribe_msg_sent_event: WeChat's delivery result of messages we sent."""
    from backend.services import dispatcher

    await dispatcher.on_sent(openid, items)


__all__ = [
    "EVENTS",
    "VALUE_LABELS",
    "build_data",
    "check_template_config",
    "enqueue",
    "ensure_default_templates",
    "on_change",
    "on_popup",
    "on_sent",
    "open_phone_task",
    "report_acceptance",
    "save_template_config",
]


async def complete_phone_task(
    staff: StaffUser, task_id: int, note: str, scope_prefix: str, ip: str = "", request_id: str = ""
) -> PhoneTask:
    """Mark a phone task done with what the veteran was told; another region's is not found."""
    task = await PhoneTask.filter(id=task_id, county_code__startswith=scope_prefix).first()
    if task is None:
        raise NotFound()
    if len(note) > MAX_NOTE:
        raise ValidationFailed(details={"fields": {"note": f"备注不能超过{MAX_NOTE}字"}})

    now = datetime.now(UTC)
    async with in_transaction() as conn:
        done = (
            await PhoneTask.filter(id=task.id, status="open")
            .using_db(conn)
            .update(status="done", note=note, done_by_id=staff.id, done_at=now)
        )
        if not done:
            raise Conflict("该电话任务已由其他工作人员处理。")
        await audit.record(
            "staff",
            staff.id,
            "phone_task.done",
            "phone_task",
            task.id,
            {"veteran_id": task.veteran_id},
            ip,
            request_id,
        )
    return await PhoneTask.get(id=task.id)
