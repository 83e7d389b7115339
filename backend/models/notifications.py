"""Subscribe messages: template configuration, acceptance ledger, outbox, inbox, phone tasks."""

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from backend.models.staff import StaffUser
    from backend.models.veterans import Veteran, WechatAccount


class TemplateConfig(Model):
    """Which WeChat template an event uses and how its fields are filled."""

    #: registration.approved, registration.returned, interview.scheduled
    event = fields.CharField(max_length=64, primary_key=True)
    template_id = fields.CharField(max_length=128)
    page = fields.CharField(max_length=128, default="")
    #: {"thing1": "title", "time2": "deadline"}: WeChat key -> our value name
    fields_map: dict[str, Any] = fields.JSONField(default=dict)
    updated_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="templates_set", null=True, on_delete=fields.SET_NULL
    )
    updated_by_id: int | None
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "template_config"


class SubscriptionLedger(Model):
    """How many one-time acceptances an account has left for a template."""

    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation["WechatAccount"] = fields.ForeignKeyField(
        "models.WechatAccount", related_name="ledger", on_delete=fields.CASCADE
    )
    account_id: int
    template_id = fields.CharField(max_length=128)
    remaining = fields.IntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subscription_ledger"
        unique_together = (("account", "template_id"),)


class SubscriptionEvent(Model):
    """Every change to the ledger and where it came from."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation["WechatAccount"] = fields.ForeignKeyField(
        "models.WechatAccount", related_name="subscription_events", on_delete=fields.CASCADE
    )
    account_id: int
    template_id = fields.CharField(max_length=128)
    #: report (mini-program), popup, change, send, refund
    source = fields.CharField(max_length=16)
    #: accept, reject, withdraw, spend
    action = fields.CharField(max_length=16)
    delta = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "subscription_event"


class OutboxMessage(Model):
    """A subscribe message written in the same transaction as the change that caused it."""

    id = fields.BigIntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="outbox", on_delete=fields.RESTRICT
    )
    veteran_id: int
    account: fields.ForeignKeyNullableRelation["WechatAccount"] = fields.ForeignKeyField(
        "models.WechatAccount", related_name="outbox", null=True, on_delete=fields.SET_NULL
    )
    account_id: int | None
    event = fields.CharField(max_length=64)
    #: the registration or interview the message is about
    object_type = fields.CharField(max_length=32, default="")
    object_id = fields.IntField(null=True)
    template_id = fields.CharField(max_length=128, default="")
    #: the complete subscribe/send body, built when enqueued
    payload: dict[str, Any] = fields.JSONField(default=dict)
    #: pending, sending, accepted, delivered, failed, unknown, undeliverable
    status = fields.CharField(max_length=16, default="pending")
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    locked_by = fields.CharField(max_length=64, null=True)
    locked_until = fields.DatetimeField(null=True)
    #: the 64-bit msgid WeChat returned, kept as text
    msgid = fields.CharField(max_length=32, null=True, db_index=True)
    last_errcode = fields.IntField(null=True)
    last_error = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    sent_at = fields.DatetimeField(null=True)
    settled_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox_message"
        indexes = (("status", "next_attempt_at"),)


class OutboxAttempt(Model):
    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyRelation["OutboxMessage"] = fields.ForeignKeyField(
        "models.OutboxMessage", related_name="attempt_log", on_delete=fields.CASCADE
    )
    message_id: int
    worker = fields.CharField(max_length=64)
    #: accepted, retry, refused, unknown, token_refreshed
    outcome = fields.CharField(max_length=16)
    errcode = fields.IntField(null=True)
    errmsg = fields.CharField(max_length=255, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "outbox_attempt"


class InboxMessage(Model):
    """What the veteran sees in the app, whether or not WeChat delivered."""

    id = fields.BigIntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="inbox", on_delete=fields.CASCADE
    )
    veteran_id: int
    event = fields.CharField(max_length=64)
    title = fields.CharField(max_length=64)
    body = fields.TextField()
    object_type = fields.CharField(max_length=32, default="")
    object_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    read_at = fields.DatetimeField(null=True)

    class Meta:
        table = "inbox_message"
        indexes = (("veteran_id", "id"),)


class PhoneTask(Model):
    """The county phones a veteran that WeChat could not reach."""

    id = fields.IntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="phone_tasks", on_delete=fields.CASCADE
    )
    veteran_id: int
    county_code = fields.CharField(max_length=6, db_index=True)
    message: fields.ForeignKeyNullableRelation["OutboxMessage"] = fields.ForeignKeyField(
        "models.OutboxMessage", related_name="phone_tasks", null=True, on_delete=fields.SET_NULL
    )
    message_id: int | None
    reason = fields.CharField(max_length=255)
    #: open, done
    status = fields.CharField(max_length=8, default="open")
    note = fields.TextField(default="")
    done_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="phone_tasks_done", null=True, on_delete=fields.SET_NULL
    )
    done_by_id: int | None
    done_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "phone_task"


class PushEventSeen(Model):
    """Push deliveries already handled, so a repeated delivery changes nothing."""

    key = fields.CharField(max_length=128, primary_key=True)
    received_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "push_event_seen"
