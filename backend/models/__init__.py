"""Tortoise models, one module per domain area; all register under the app label `models`."""

from backend.models.audit import AuditLog, TransitionLog
from backend.models.notifications import (
    InboxMessage,
    OutboxAttempt,
    OutboxMessage,
    PhoneTask,
    PushEventSeen,
    SubscriptionEvent,
    SubscriptionLedger,
    TemplateConfig,
)
from backend.models.regions import Region
from backend.models.registrations import (
    AnnualRegistration,
    BenefitConfirmation,
    Interview,
    LateFilingPermit,
    RegistrationVersion,
    RegistrationWindow,
    ReviewComment,
)
from backend.models.roster import RosterImportBatch
from backend.models.shared import RateBucket, SharedValue
from backend.models.staff import StaffSession, StaffUser
from backend.models.veterans import ApiToken, BindingEvent, BindingRequest, Veteran, WechatAccount

__all__ = [
    "AnnualRegistration",
    "ApiToken",
    "AuditLog",
    "BenefitConfirmation",
    "BindingEvent",
    "BindingRequest",
    "InboxMessage",
    "Interview",
    "LateFilingPermit",
    "OutboxAttempt",
    "OutboxMessage",
    "PhoneTask",
    "PushEventSeen",
    "RateBucket",
    "Region",
    "RegistrationVersion",
    "RegistrationWindow",
    "ReviewComment",
    "RosterImportBatch",
    "SharedValue",
    "StaffSession",
    "StaffUser",
    "SubscriptionEvent",
    "SubscriptionLedger",
    "TemplateConfig",
    "TransitionLog",
    "Veteran",
    "WechatAccount",
]
