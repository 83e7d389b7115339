"""Request and response models of login, privacy consent, binding and /me."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# wx.login and getPhoneNumber codes are short opaque tokens of letters, digits, - and _.
CODE_PATTERN = r"^[0-9A-Za-z_-]+$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SessionCreate(_Request):
    """The code from wx.login()."""

    code: str = Field(min_length=1, max_length=128, pattern=CODE_PATTERN)


class SessionPublic(BaseModel):
    """Our own bearer token and what the mini-program must do next."""

    token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_at: datetime
    #: the account accepted the privacy notice version now in force
    privacy_accepted: bool
    #: the version the account must accept (POST /api/v1/privacy-consents)
    privacy_version: str
    bound: bool


class PrivacyConsentCreate(_Request):
    """The version of the privacy notice the veteran read and accepted."""

    version: str = Field(min_length=1, max_length=32)


class PrivacyConsentPublic(BaseModel):
    privacy_version: str
    accepted_at: datetime


class BindingCreate(_Request):
    """Name and ID number as on the ID card, and the code of the getPhoneNumber button."""

    name: str = Field(min_length=1, max_length=64)
    id_number: str = Field(min_length=1, max_length=32)
    phone_code: str = Field(min_length=1, max_length=128, pattern=CODE_PATTERN)


class BindingPublic(BaseModel):
    #: bound: done; pending: a clerk at the service station must confirm the person
    status: Literal["bound", "pending"]
    message: str


class VeteranPublic(BaseModel):
    """The roster entry as the veteran may see it: numbers masked."""

    id: int
    name: str
    id_masked: str
    phone_masked: str
    county_code: str
    county_name: str
    #: active, suspended, deceased or transferred
    status: str
    status_label: str


class RegistrationGlancePublic(BaseModel):
    """The current report year's registration at a glance (details: /registrations/current)."""

    report_year: int
    must_file: bool
    #: null before anything was saved; else draft, submitted, returned or approved
    status: str | None
    current_version: int
    window_open: bool
    opens_on: date
    closes_on: date
    correction_deadline: date | None


class MePublic(BaseModel):
    """Who is logged in, how far binding got and this year's registration at a glance."""

    #: unbound, pending (waiting for a clerk) or bound
    binding: Literal["unbound", "pending", "bound"]
    privacy_accepted: bool
    #: the version this account accepted, if any
    privacy_version_accepted: str | None
    #: the version now in force
    privacy_version: str
    veteran: VeteranPublic | None
    #: the registration for the current report year, when the veteran is bound
    registration: RegistrationGlancePublic | None
