"""Annual registration (年度登记审核, rule 6.3) and interviews (约谈)."""

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

if TYPE_CHECKING:
    from backend.models.staff import StaffUser
    from backend.models.veterans import Veteran


class RegistrationWindow(Model):
    """The filing window for one reported year, when the province changed the default."""

    report_year = fields.IntField(primary_key=True)
    opens_on = fields.DateField()
    closes_on = fields.DateField()
    #: a demo override is shown as such in the portal
    is_demo_override = fields.BooleanField(default=False)
    reason = fields.CharField(max_length=255, default="")
    set_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="windows_set", null=True, on_delete=fields.SET_NULL
    )
    set_by_id: int | None
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "registration_window"


class AnnualRegistration(Model):
    id = fields.IntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="registrations", on_delete=fields.RESTRICT
    )
    veteran_id: int
    report_year = fields.IntField()
    #: copied from the veteran so that list pages filter on one indexed table
    county_code = fields.CharField(max_length=6)
    #: draft, submitted, returned, approved (backend.services.registrations.TRANSITIONS)
    status = fields.CharField(max_length=16, default="draft")
    #: the draft being edited, submitted content lives in RegistrationVersion
    draft: dict[str, Any] = fields.JSONField(default=dict)
    current_version = fields.IntField(default=0)
    #: online (by the veteran) or onsite (entered by staff at the counter)
    channel = fields.CharField(max_length=8, default="online")
    entered_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser",
        related_name="entered_registrations",
        null=True,
        on_delete=fields.SET_NULL,
    )
    entered_by_id: int | None
    submitted_at = fields.DatetimeField(null=True)
    first_submitted_at = fields.DatetimeField(null=True)
    correction_deadline = fields.DateField(null=True)
    reviewed_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser",
        related_name="reviewed_registrations",
        null=True,
        on_delete=fields.SET_NULL,
    )
    reviewed_by_id: int | None
    reviewed_at = fields.DatetimeField(null=True)
    #: bumped on every change, guarded updates compare it
    lock_version = fields.IntField(default=0)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "annual_registration"
        unique_together = (("veteran", "report_year"),)
        indexes = (
            ("report_year", "status", "county_code", "id"),
            ("report_year", "county_code", "id"),
            #: the overdue-reviews page: submitted ones by county, oldest first
            ("status", "county_code", "submitted_at", "id"),
        )

    def __str__(self) -> str:
        return f"registration#{self.id}({self.report_year})"


class RegistrationVersion(Model):
    """An unchangeable copy of what was submitted, one per submission."""

    id = fields.IntField(primary_key=True)
    registration: fields.ForeignKeyRelation["AnnualRegistration"] = fields.ForeignKeyField(
        "models.AnnualRegistration", related_name="versions", on_delete=fields.RESTRICT
    )
    registration_id: int
    version_no = fields.IntField()
    data: dict[str, Any] = fields.JSONField()
    submitted_at = fields.DatetimeField(auto_now_add=True)
    entered_by: fields.ForeignKeyNullableRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="entered_versions", null=True, on_delete=fields.SET_NULL
    )
    entered_by_id: int | None

    class Meta:
        table = "registration_version"
        unique_together = (("registration", "version_no"),)


class ReviewComment(Model):
    """A comment by the reviewer on one section of one submitted version."""

    id = fields.IntField(primary_key=True)
    registration: fields.ForeignKeyRelation["AnnualRegistration"] = fields.ForeignKeyField(
        "models.AnnualRegistration", related_name="comments", on_delete=fields.RESTRICT
    )
    registration_id: int
    version: fields.ForeignKeyRelation["RegistrationVersion"] = fields.ForeignKeyField(
        "models.RegistrationVersion", related_name="comments", on_delete=fields.RESTRICT
    )
    version_id: int
    section = fields.CharField(max_length=32)
    comment = fields.TextField()
    staff: fields.ForeignKeyRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="review_comments", on_delete=fields.RESTRICT
    )
    staff_id: int
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "review_comment"


class BenefitConfirmation(Model):
    """The explicit record that approval confirmed the benefits of the year."""

    id = fields.IntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="benefit_confirmations", on_delete=fields.RESTRICT
    )
    veteran_id: int
    report_year = fields.IntField()
    registration: fields.ForeignKeyRelation["AnnualRegistration"] = fields.ForeignKeyField(
        "models.AnnualRegistration", related_name="confirmations", on_delete=fields.RESTRICT
    )
    registration_id: int
    confirmed_by: fields.ForeignKeyRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="confirmations", on_delete=fields.RESTRICT
    )
    confirmed_by_id: int
    confirmed_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "benefit_confirmation"
        unique_together = (("veteran", "report_year"),)


class LateFilingPermit(Model):
    """Permission by a clerk for one veteran to file after the window closed."""

    id = fields.IntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="late_permits", on_delete=fields.RESTRICT
    )
    veteran_id: int
    report_year = fields.IntField()
    deadline = fields.DateField()
    reason = fields.TextField()
    granted_by: fields.ForeignKeyRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="late_permits", on_delete=fields.RESTRICT
    )
    granted_by_id: int
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "late_filing_permit"
        unique_together = (("veteran", "report_year"),)


class Interview(Model):
    """约谈: planned, held, closed with an outcome (or cancelled)."""

    id = fields.IntField(primary_key=True)
    veteran: fields.ForeignKeyRelation["Veteran"] = fields.ForeignKeyField(
        "models.Veteran", related_name="interviews", on_delete=fields.RESTRICT
    )
    veteran_id: int
    registration: fields.ForeignKeyNullableRelation["AnnualRegistration"] = fields.ForeignKeyField(
        "models.AnnualRegistration", related_name="interviews", null=True, on_delete=fields.SET_NULL
    )
    registration_id: int | None
    county_code = fields.CharField(max_length=6, db_index=True)
    #: planned, held, closed, cancelled
    status = fields.CharField(max_length=16, default="planned")
    #: the warning signs, staff-only, never sent through WeChat
    reason = fields.TextField()
    planned_at = fields.DatetimeField()
    location = fields.CharField(max_length=128, default="")
    #: the station phone the veteran may call, sent in the WeChat message
    contact_phone = fields.CharField(max_length=17, default="")
    held_at = fields.DatetimeField(null=True)
    staff_present = fields.CharField(max_length=255, default="")
    #: visible only to the county lead and above
    notes = fields.TextField(default="")
    outcome = fields.TextField(default="")
    lock_version = fields.IntField(default=0)
    created_by: fields.ForeignKeyRelation["StaffUser"] = fields.ForeignKeyField(
        "models.StaffUser", related_name="interviews_opened", on_delete=fields.RESTRICT
    )
    created_by_id: int
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "interview"
