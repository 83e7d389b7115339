"""The annual registration's content (rule 6.3) and the registration API's request/response models.

The content model is shared by the mini-program API and the portal's on-site entry. Its shape
(types, lengths, list bounds) is checked by pydantic; the date rules that need the reported year
and today's date (no return before departure, nothing in the future, trips must overlap the
reported year) are checked by `validate_content(data, report_year, today, prefix="")`, which
raises ValidationFailed with field paths such as "trips.0.returned_on".

Sections (also the keys of a reviewer's per-section comments): party_life, associations, trips,
rewards_punishments, contact_changes, and "general" for comments on the whole registration.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from backend.errors import ValidationFailed

#: section keys in display order, with their Chinese labels
SECTIONS: dict[str, str] = {
    "party_life": "组织生活",
    "associations": "参加社会团体情况",
    "trips": "出入境情况",
    "rewards_punishments": "奖惩情况",
    "contact_changes": "住址及联系方式变更",
    "general": "其他",
}
CONTENT_SECTIONS = tuple(key for key in SECTIONS if key != "general")

MAX_ITEMS = 50
MOBILE_PATTERN = r"^1[3-9][0-9]{9}$"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_MESSAGE = "应为日期（如 2026-01-05）"


def _iso_date(value: Any) -> Any:
    # Only a calendar date: no timestamps, no datetimes, no "2026-1-5" (a format-bound field).
    if isinstance(value, datetime):
        raise ValueError(_DATE_MESSAGE)
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError("日期不存在，请核对") from None
    raise ValueError(_DATE_MESSAGE)


def _not_blank(value: Any) -> Any:
    # Kept verbatim otherwise; a name made only of spaces is treated as missing.
    if isinstance(value, str) and not value.strip():
        raise ValueError("此项不能为空")
    return value


def _mobile(value: Any) -> Any:
    if isinstance(value, str) and not re.match(MOBILE_PATTERN, value):
        raise ValueError("请填写11位中国大陆手机号码")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
MobilePhone = Annotated[str, Field(pattern=MOBILE_PATTERN, max_length=11), BeforeValidator(_mobile)]


#: required free text: at least one visible character, otherwise kept verbatim
RequiredText = Annotated[str, Field(min_length=1), BeforeValidator(_not_blank)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PartyLife(_Strict):
    """组织生活: the party organisation the veteran belongs to and how they take part."""

    organisation: RequiredText = Field(max_length=100)
    participation: str = Field(default="", max_length=2000)


class Association(_Strict):
    """Membership of an association or society."""

    name: RequiredText = Field(max_length=100)
    role: str = Field(default="", max_length=50)
    joined_on: IsoDate | None = None


class Trip(_Strict):
    """A trip out of the mainland: Hong Kong, Macao and Taiwan are kept apart from abroad."""

    departed_on: IsoDate
    #: null while the veteran has not come back
    returned_on: IsoDate | None = None
    #: hmt: 港澳台; foreign: 国外
    destination_kind: Literal["hmt", "foreign"]
    destination: RequiredText = Field(max_length=100)
    purpose: RequiredText = Field(max_length=500)


class RewardPunishment(_Strict):
    kind: Literal["reward", "punishment"]
    date: IsoDate
    title: RequiredText = Field(max_length=200)
    issuer: str = Field(default="", max_length=100)


class ContactChanges(_Strict):
    """A new address or mobile number since the last registration; null fields did not change."""

    new_address: Annotated[str, Field(max_length=200)] | None = None
    new_phone: MobilePhone | None = None


class RegistrationContent(_Strict):
    """What the veteran reports for one year; every section may stay empty in a draft."""

    party_life: PartyLife | None = None
    associations: list[Association] = Field(default_factory=list, max_length=MAX_ITEMS)
    trips: list[Trip] = Field(default_factory=list, max_length=MAX_ITEMS)
    rewards_punishments: list[RewardPunishment] = Field(default_factory=list, max_length=MAX_ITEMS)
    contact_changes: ContactChanges | None = None
    remarks: str = Field(default="", max_length=2000)


# No date a veteran reports can be older than this; it catches 0001-01-01 and typos like 1025.
EARLIEST = date(1950, 1, 1)

# Names that place a destination in Hong Kong, Macao or Taiwan, in simplified and traditional
# script, with the cities people write instead of the region.
_HMT_NAMES = (
    "香港", "九龙", "九龍", "新界", "澳门", "澳門",
    "台湾", "台灣", "臺灣", "台北", "臺北", "新北", "台中", "臺中", "台南", "臺南", "高雄",
    "金门", "金門", "马祖", "馬祖",
)  # fmt: skip


def _destination_kind_error(trip: Trip) -> str | None:
    """港澳台 and foreign trips are reported apart; the text must agree with the kind chosen."""
    in_hmt = any(name in trip.destination for name in _HMT_NAMES)
    if trip.destination_kind == "foreign" and in_hmt:
        return "前往香港、澳门、台湾的行程请选择“港澳台”"
    if trip.destination_kind == "hmt" and not in_hmt:
        return "选择“港澳台”时，目的地应为香港、澳门或台湾的地名"
    return None


def content_errors(content: RegistrationContent, report_year: int, today: date) -> dict[str, str]:
    """The date rules that need the reported year and today: {"field.path": "中文说明"}."""
    errors: dict[str, str] = {}
    first, last = date(report_year, 1, 1), date(report_year, 12, 31)
    future = "日期不能晚于今天"
    too_early = f"日期早于{EARLIEST.year}年，请核对"
    for i, member in enumerate(content.associations):
        if member.joined_on is not None and member.joined_on > today:
            errors[f"associations.{i}.joined_on"] = future
        elif member.joined_on is not None and member.joined_on < EARLIEST:
            errors[f"associations.{i}.joined_on"] = too_early
    for i, trip in enumerate(content.trips):
        if trip.departed_on > today:
            errors[f"trips.{i}.departed_on"] = future
        elif trip.departed_on < EARLIEST:
            errors[f"trips.{i}.departed_on"] = too_early
        kind_error = _destination_kind_error(trip)
        if kind_error:
            errors[f"trips.{i}.destination_kind"] = kind_error
        if trip.returned_on is not None:
            if trip.returned_on > today:
                errors[f"trips.{i}.returned_on"] = future
            elif trip.returned_on < trip.departed_on:
                errors[f"trips.{i}.returned_on"] = "回国（境）日期不能早于出国（境）日期"
        ended_before = trip.returned_on is not None and trip.returned_on < first
        if trip.departed_on > last or ended_before:
            errors.setdefault(
                f"trips.{i}.departed_on",
                f"该行程不在{report_year}年度内，请只填报与本年度有关的行程",
            )
    for i, item in enumerate(content.rewards_punishments):
        if item.date > today:
            errors[f"rewards_punishments.{i}.date"] = future
        elif item.date < EARLIEST:
            errors[f"rewards_punishments.{i}.date"] = too_early
    return errors


def validate_content(
    data: RegistrationContent | dict[str, Any], report_year: int, today: date, prefix: str = ""
) -> RegistrationContent:
    """Parse and fully check content for one reported year; ValidationFailed lists every field."""
    from backend.routes.common import field_errors

    if isinstance(data, RegistrationContent):
        content = data
    else:
        try:
            content = RegistrationContent.model_validate(data)
        except ValidationError as exc:
            fields = {prefix + key: text for key, text in field_errors(exc).items()}
            raise ValidationFailed(details={"fields": fields}) from exc
    errors = content_errors(content, report_year, today)
    if errors:
        raise ValidationFailed(details={"fields": {prefix + k: v for k, v in errors.items()}})
    return content


def content_json(content: RegistrationContent) -> dict[str, Any]:
    """The content as stored in the draft and in each unchangeable version."""
    return content.model_dump(mode="json")


# ---- API models -------------------------------------------------------------------------------


class SubmissionCreate(_Strict):
    """Submit the saved draft, or (with content) replace the draft and submit it in one step."""

    content: RegistrationContent | None = None


class WindowPublic(BaseModel):
    report_year: int
    opens_on: date
    closes_on: date
    is_open: bool
    #: e.g. 2026年度登记开放时间为2027年1月1日至2027年3月31日
    message: str


class CommentPublic(BaseModel):
    section: str
    section_label: str
    comment: str
    version_no: int
    created_at: datetime


class RegistrationPublic(BaseModel):
    """One registration as the veteran sees it."""

    report_year: int
    #: draft, submitted, returned, approved
    status: str
    #: online or onsite (entered by staff at the service station)
    channel: str
    content: dict[str, Any]
    current_version: int
    submitted_at: datetime | None
    correction_deadline: date | None
    reviewed_at: datetime | None


class RegistrationCurrentPublic(BaseModel):
    """The state of the current report year's registration, for the mini-program's main page."""

    report_year: int
    window: WindowPublic
    must_file: bool
    #: null when nothing was saved yet
    status: str | None
    can_edit: bool
    can_submit: bool
    #: why submit is not possible now (a Chinese sentence), or null
    blocked_reason: str | None
    registration: RegistrationPublic | None
    #: for a returned registration: the reviewer's comments per section
    comments: list[CommentPublic]
    correction_deadline: date | None
    late_filing_deadline: date | None


class RegistrationSummaryPublic(BaseModel):
    report_year: int
    status: str
    channel: str
    current_version: int
    submitted_at: datetime | None
    reviewed_at: datetime | None
    correction_deadline: date | None


class RegistrationListPublic(BaseModel):
    items: list[RegistrationSummaryPublic]
