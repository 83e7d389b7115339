"""Mini-program API of notifications: subscribe-request reports and the in-app inbox."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.errors import NotBound, NotFound, PrivacyNotAccepted, Unauthenticated, ValidationFailed
from backend.models import InboxMessage, WechatAccount
from backend.routes.common import api_route, respond
from backend.schemas.notifications import (
    InboxMessagePublic,
    InboxPublic,
    InboxQuery,
    SubscriptionReportCreate,
    SubscriptionReportPublic,
    TemplateAcceptancePublic,
)
from backend.services import inbox, subscriptions

bp = Blueprint("api_notifications", url_prefix="/api/v1")

TAG = "消息通知"
AUTH_ERRORS = [Unauthenticated, PrivacyNotAccepted, NotBound]


def _public(message: InboxMessage) -> InboxMessagePublic:
    return InboxMessagePublic(
        id=message.id,
        event=message.event,
        title=message.title,
        body=message.body,
        object_type=message.object_type,
        object_id=message.object_id,
        created_at=message.created_at,
        read_at=message.read_at,
    )


@api_route(
    bp,
    "POST",
    "/subscriptions",
    summary="上报订阅消息授权结果（wx.requestSubscribeMessage 的返回，每次最多3个模板）",
    tag=TAG,
    body=SubscriptionReportCreate,
    response=SubscriptionReportPublic,
    auth="account",
    errors=[Unauthenticated, ValidationFailed],
)
async def report_subscriptions(
    request: Request, body: SubscriptionReportCreate, account: WechatAccount
) -> HTTPResponse:
    """Count the templates the user accepted on the phone."""
    remaining = await subscriptions.report_acceptance(account, body.results)
    templates = [TemplateAcceptancePublic(template_id=t, remaining=n) for t, n in remaining.items()]
    return respond(SubscriptionReportPublic(templates=templates))


@api_route(
    bp,
    "GET",
    "/inbox",
    summary="站内消息列表（最新在前，用 before_id 翻页）",
    tag=TAG,
    query=InboxQuery,
    response=InboxPublic,
    errors=[*AUTH_ERRORS, ValidationFailed],
)
async def list_inbox(request: Request, query: InboxQuery, account: WechatAccount) -> HTTPResponse:
    """The veteran's messages, newest first."""
    veteran_id = account.veteran_id  # type: ignore[attr-defined]
    page, next_before = await inbox.list_inbox(
        veteran_id, before_id=query.before_id, limit=query.limit
    )
    unread = await inbox.unread_count(veteran_id)
    items = [_public(message) for message in page]
    return respond(InboxPublic(items=items, next_before_id=next_before, unread=unread))


@api_route(
    bp,
    "POST",
    "/inbox/<message_id:int>/read",
    summary="将一条站内消息标为已读",
    tag=TAG,
    response=InboxMessagePublic,
    errors=[*AUTH_ERRORS, NotFound],
)
async def read_inbox_message(
    request: Request, message_id: int, account: WechatAccount
) -> HTTPResponse:
    """Mark one message read; reading it again changes nothing."""
    veteran_id = account.veteran_id  # type: ignore[attr-defined]
    return respond(_public(await inbox.mark_read(veteran_id, message_id)))
