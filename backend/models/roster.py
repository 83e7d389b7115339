"""Roster import batches, kept for audit."""

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from backend.models.staff import StaffUser


class RosterImportBatch(Model):
    id = fields.IntField(primary_key=True)
    staff: fields.ForeignKeyRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="imports", on_delete=fields.RESTRICT
    )
    staff_id: int
    region_code = fields.CharField(max_length=6)
    filename = fields.CharField(max_length=255)
    file_sha256 = fields.CharField(max_length=64)
    #: previewed, applied, rejected, superseded
    status = fields.CharField(max_length=16)
    total_rows = fields.IntField(default=0)
    created_count = fields.IntField(default=0)
    updated_count = fields.IntField(default=0)
    unchanged_count = fields.IntField(default=0)
    error_count = fields.IntField(default=0)
    #: [{"row": 7, "field": "id_number", "reason": "…"}], capped for very bad files
    errors: list[Any] = fields.JSONField(default=list)
    #: [{"row": 9, "name": "…", "id_masked": "…", "fields": ["phone", "status"]}], capped
    changes: list[Any] = fields.JSONField(default=list)
    #: digest of the matched roster entries at preview time, apply refuses if it moved
    roster_digest = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    applied_at = fields.DatetimeField(null=True)

    class Meta:
        table = "roster_import_batch"
