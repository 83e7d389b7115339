"""The veteran's in-app inbox: every notification, whether or not WeChat delivered it."""

from __future__ import annotations

from datetime import UTC, datetime

from backend.errors import NotFound
from backend.models import InboxMessage


async def list_inbox(
    veteran_id: int, *, before_id: int | None = None, limit: int = 20
) -> tuple[list[InboxMessage], int | None]:
    """A page of the veteran's messages, newest first, and the id to continue before."""
    query = InboxMessage.filter(veteran_id=veteran_id)
    if before_id is not None:
        query = query.filter(id__lt=before_id)
    rows = await query.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    page = rows[:limit]
    return page, (page[-1].id if more and page else None)


async def unread_count(veteran_id: int) -> int:
    """How many messages the veteran has not opened."""
    return await InboxMessage.filter(veteran_id=veteran_id, read_at__isnull=True).count()


async def mark_read(veteran_id: int, message_id: int) -> InboxMessage:
    """Mark one of the veteran's messages read; reading it twice keeps the first time."""
    message = await InboxMessage.filter(id=message_id, veteran_id=veteran_id).first()
    if message is None:
        # Another veteran's message answers exactly like a missing one.
        raise NotFound()
    if message.read_at is None:
        now = datetime.now(UTC)
        await InboxMessage.filter(id=message.id, read_at__isnull=True).update(read_at=now)
        message = await InboxMessage.get(id=message.id)
    return message
