"""Staff accounts and their portal sessions."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from backend.models.regions import Region


#: clerk handles cases, lead also sees interview notes and manages accounts one level down
ROLES = ("clerk", "lead")


class StaffUser(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=64, unique=True)
    display_name = fields.CharField(max_length=64)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharField(max_length=16, default="clerk")
    region: fields.ForeignKeyRelation["Region"] = fields.ForeignKeyField(
        "models.Region", related_name="staff", on_delete=fields.RESTRICT
    )
    region_id: int
    is_active = fields.BooleanField(default=True)
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    created_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="created_staff", null=True, on_delete=fields.SET_NULL
    )
    created_by_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    last_login_at = fields.DatetimeField(null=True)
    #: AES-GCM ciphertext of the TOTP secret (purpose staff.totp), set while enrolling
    totp_secret = fields.CharField(max_length=255, null=True)
    #: when the staff member proved the secret with a code, TOTP is on only once this is set
    totp_confirmed_at = fields.DatetimeField(null=True)
    #: the last TOTP time step accepted, so that no code is accepted twice
    totp_last_step = fields.BigIntField(null=True)

    class Meta:
        table = "staff_user"

    def __str__(self) -> str:
        return self.username


class StaffSession(Model):
    #: SHA-256 of the cookie value, the cookie itself is never stored
    id = fields.CharField(max_length=64, primary_key=True)
    staff: fields.ForeignKeyRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="sessions", on_delete=fields.CASCADE
    )
    staff_id: int
    csrf_token = fields.CharField(max_length=64)
    ip = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    #: password accepted but the second factor still owed, such a session opens no page
    mfa_pending = fields.BooleanField(default=False)

    class Meta:
        table = "staff_session"
