"""Request and response models of the notifications API: subscribe reports and the inbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TemplateId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$", max_length=128)]


class SubscriptionReportCreate(BaseModel):
    """What wx.requestSubscribeMessage answered: at most three templates per request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    results: dict[TemplateId, Literal["accept", "reject", "ban", "filter"]] = Field(
        min_length=1, max_length=3
    )


class TemplateAcceptancePublic(BaseModel):
    template_id: str
    #: one-time acceptances left, after this report
    remaining: int


class SubscriptionReportPublic(BaseModel):
    templates: list[TemplateAcceptancePublic]


class InboxQuery(BaseModel):
    """Keyset paging, newest first: pass the previous page's next_before_id."""

    model_config = ConfigDict(extra="forbid")

    before_id: int | None = Field(default=None, ge=1, le=2**62)
    limit: int = Field(default=20, ge=1, le=50)


class InboxMessagePublic(BaseModel):
    id: int
    event: str
    title: str
    body: str
    object_type: str
    object_id: int | None
    created_at: datetime
    read_at: datetime | None


class InboxPublic(BaseModel):
    items: list[InboxMessagePublic]
    #: null on the last page
    next_before_id: int | None
    unread: int
