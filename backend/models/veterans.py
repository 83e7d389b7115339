"""The roster of veterans and the WeChat accounts bound to them."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from backend.models.roster import RosterImportBatch
    from backend.models.staff import StaffUser


STATUSES = ("active", "suspended", "deceased", "transferred")


class Veteran(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    #: AES-GCM ciphertext of the 18-digit ID number (backend.crypto)
    id_cipher = fields.TextField()
    #: keyed hash of the normalised ID number, the only way to look it up
    id_hash = fields.CharField(max_length=64, unique=True)
    id_masked = fields.CharField(max_length=18)
    phone_cipher = fields.TextField(null=True)
    phone_hash = fields.CharField(max_length=64, null=True, db_index=True)
    phone_masked = fields.CharField(max_length=20, default="")
    birth_date = fields.DateField()
    #: county of resettlement (安置地), a GB/T 2260 code
    county_code = fields.CharField(max_length=6, db_index=True)
    pay_start_date = fields.DateField()
    party_member = fields.BooleanField(default=False)
    status = fields.CharField(max_length=16, default="active")
    status_date = fields.DateField(null=True)
    import_batch: fields.ForeignKeyNullableRelation["RosterImportBatch"] = fields.ForeignKeyField(
        "models.RosterImportBatch", related_name="veterans", null=True, on_delete=fields.SET_NULL
    )
    import_batch_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    account: fields.BackwardOneToOneRelation["WechatAccount"]

    class Meta:
        table = "veteran"

    def __str__(self) -> str:
        return f"veteran#{self.id}"


class WechatAccount(Model):
    id = fields.IntField(primary_key=True)
    openid = fields.CharField(max_length=64, unique=True)
    unionid = fields.CharField(max_length=64, null=True)
    #: null until bound, unique, so one account per veteran and one veteran per account
    veteran: fields.OneToOneNullableRelation[Veteran] = fields.OneToOneField(
        "models.Veteran", related_name="account", null=True, on_delete=fields.SET_NULL
    )
    privacy_version = fields.CharField(max_length=32, null=True)
    privacy_accepted_at = fields.DatetimeField(null=True)
    bound_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)

    class Meta:
        table = "wechat_account"

    def __str__(self) -> str:
        return f"account#{self.id}"


class ApiToken(Model):
    #: SHA-256 of the bearer token handed to the mini-program
    id = fields.CharField(max_length=64, primary_key=True)
    account: fields.ForeignKeyRelation["WechatAccount"] = fields.ForeignKeyField(
        "models.WechatAccount", related_name="tokens", on_delete=fields.CASCADE
    )
    account_id: int
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class BindingRequest(Model):
    """A binding whose WeChat phone did not match the roster, waiting for a clerk."""

    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation["WechatAccount"] = fields.ForeignKeyField(
        "models.WechatAccount", related_name="binding_requests", on_delete=fields.CASCADE
    )
    account_id: int
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="binding_requests", on_delete=fields.CASCADE
    )
    veteran_id: int
    county_code = fields.CharField(max_length=6, db_index=True)
    #: pending, confirmed, rejected, cancelled
    status = fields.CharField(max_length=16, default="pending")
    phone_masked = fields.CharField(max_length=20, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    decided_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="binding_decisions", null=True, on_delete=fields.SET_NULL
    )
    decided_by_id: int | None
    decided_at = fields.DatetimeField(null=True)
    reason = fields.CharField(max_length=255, default="")

    class Meta:
        table = "binding_request"


class BindingEvent(Model):
    """Every bind and unbind, with who and why."""

    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation["WechatAccount"] = fields.ForeignKeyField(
        "models.WechatAccount", related_name="binding_events", on_delete=fields.CASCADE
    )
    account_id: int
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="binding_events", on_delete=fields.CASCADE
    )
    veteran_id: int
    #: bound, pending, confirmed, rejected, unbound
    action = fields.CharField(max_length=16)
    reason = fields.CharField(max_length=255, default="")
    staff: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="binding_events", null=True, on_delete=fields.SET_NULL
    )
    staff_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "binding_event"
