"""The audit trail: state changes and sensitive reads, as data."""

from typing import Any

from tortoise import fields
from tortoise.models import Model


class AuditLog(Model):
    id = fields.BigIntField(primary_key=True)
    #: staff, veteran, account (a WeChat account not yet bound) or system
    actor_type = fields.CharField(max_length=16)
    actor_id = fields.IntField(null=True)
    #: dotted, e.g. registration.returned, veteran.id_viewed
    action = fields.CharField(max_length=64)
    object_type = fields.CharField(max_length=32)
    object_id = fields.CharField(max_length=64)
    detail: dict[str, Any] = fields.JSONField(default=dict)
    ip = fields.CharField(max_length=64, default="")
    request_id = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)

    class Meta:
        table = "audit_log"
        indexes = (("object_type", "object_id"),)


class TransitionLog(Model):
    """One row per state-machine transition of any workflow: who, when, why."""

    id = fields.BigIntField(primary_key=True)
    workflow = fields.CharField(max_length=32)
    object_id = fields.IntField()
    from_state = fields.CharField(max_length=16)
    to_state = fields.CharField(max_length=16)
    actor_type = fields.CharField(max_length=16)
    actor_id = fields.IntField(null=True)
    reason = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "transition_log"
        indexes = (("workflow", "object_id"),)
