"""Annual registration (rule 6.3): windows, who files, drafts, submission, review, lists."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from tortoise import connections

from backend.errors import (
    AppError,
    Conflict,
    Forbidden,
    InvalidTransition,
    NotFound,
    RegistrationClosed,
    RegistrationNotRequired,
    SameClerk,
    ValidationFailed,
)
from backend.models import (
    AnnualRegistration,
    AuditLog,
    BenefitConfirmation,
    InboxMessage,
    RegistrationVersion,
    ReviewComment,
    StaffUser,
    TransitionLog,
    Veteran,
)
from backend.services import registrations as regs
from backend.settings import Settings
from tests.conftest import TEST_DB
from tests.factories import CITY, COUNTY, OTHER_COUNTY, PROVINCE, make_region_tree, make_staff
from tests.factories import make_veteran as _make_veteran

YEAR = 2025
IN_WINDOW = date(2026, 2, 10)
AFTER_WINDOW = date(2026, 4, 1)

TRIP = {
    "departed_on": "2025-07-01",
    "returned_on": "2025-07-10",
    "destination_kind": "hmt",
    "destination": "香港",
    "purpose": "探亲",
}


@pytest.fixture
async def world(db_ready: Settings) -> dict[str, Any]:
    await make_region_tree()
    return {
        "clerk": await make_staff(COUNTY),
        "clerk2": await make_staff(COUNTY),
        "lead": await make_staff(COUNTY, role="lead"),
        "city": await make_staff(CITY),
        "province": await make_staff(PROVINCE),
        "other": await make_staff(OTHER_COUNTY),
    }


async def make_veteran(**overrides: Any) -> Veteran:
    return await _make_veteran(**overrides)


async def submitted(veteran: Veteran, content: dict[str, Any] | None = None) -> AnnualRegistration:
    return await regs.submit(veteran, YEAR, content or {"trips": [TRIP]}, today=IN_WINDOW)


# ---- windows ----------------------------------------------------------------------------------


def test_default_window_is_january_to_march_of_the_following_year() -> None:
    window = regs.default_window(2026)
    assert (window.opens_on, window.closes_on) == (date(2027, 1, 1), date(2027, 3, 31))
    assert window.message == "2026年度登记开放时间为2027年1月1日至2027年3月31日"
    assert window.contains(date(2027, 1, 1)) and window.contains(date(2027, 3, 31))
    assert not window.contains(date(2026, 12, 31)) and not window.contains(date(2027, 4, 1))


async def test_submit_after_march_is_refused_and_the_message_states_the_window(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    with pytest.raises(RegistrationClosed) as caught:
        await regs.submit(veteran, YEAR, {}, today=AFTER_WINDOW)
    assert caught.value.code == "REGISTRATION_CLOSED"
    assert "2025年度登记开放时间为2026年1月1日至2026年3月31日" in caught.value.message
    assert caught.value.details["opens_on"] == "2026-01-01"
    assert caught.value.details["closes_on"] == "2026-03-31"
    assert not await RegistrationVersion.all().exists()


async def test_window_edges_are_inclusive(world: dict[str, Any]) -> None:
    first, last = await make_veteran(), await make_veteran()
    assert (await regs.submit(first, YEAR, {}, today=date(2026, 1, 1))).status == "submitted"
    assert (await regs.submit(last, YEAR, {}, today=date(2026, 3, 31))).status == "submitted"
    with pytest.raises(RegistrationClosed):
        await regs.submit(await make_veteran(), YEAR, {}, today=date(2025, 12, 31))


async def test_province_moves_the_window_and_county_staff_cannot(world: dict[str, Any]) -> None:
    with pytest.raises(Forbidden):
        await regs.set_window(world["clerk"], YEAR, date(2026, 1, 1), date(2026, 5, 31))
    window = await regs.set_window(
        world["province"], YEAR, date(2026, 1, 1), date(2026, 5, 31), "延长受理"
    )
    assert window.is_override
    assert (await regs.window_for(YEAR)).closes_on == date(2026, 5, 31)
    veteran = await make_veteran()
    reg = await regs.submit(veteran, YEAR, {}, today=date(2026, 5, 20))
    assert reg.status == "submitted"
    assert await AuditLog.filter(action="registration.window_set").count() == 1


async def test_window_with_end_before_start_is_refused(world: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await regs.set_window(world["province"], YEAR, date(2026, 3, 1), date(2026, 2, 1))
    assert "closes_on" in caught.value.details["fields"]


async def test_current_report_year_is_the_open_window_else_last_year(
    world: dict[str, Any],
) -> None:
    assert (await regs.current_window(date(2026, 2, 1))).report_year == 2025
    assert (await regs.current_window(date(2026, 8, 1))).report_year == 2025
    # A demo override of 2025 reaching into August keeps 2025 current and open.
    await regs.set_window(world["province"], 2025, date(2026, 1, 1), date(2026, 8, 31), demo=True)
    window = await regs.current_window(date(2026, 8, 1))
    assert window.report_year == 2025 and window.contains(date(2026, 8, 1))
    assert window.is_demo_override


# ---- who must file --------------------------------------------------------------------------


async def test_who_must_file_follows_status_dates_and_pay_start(db_ready: Settings) -> None:
    active = await make_veteran()
    left_during = await make_veteran(status="deceased", status_date=date(2025, 6, 1))
    left_before = await make_veteran(status="transferred", status_date=date(2024, 12, 31))
    no_date = await make_veteran(status="suspended", status_date=None)
    pay_later = await make_veteran(pay_start_date=date(2026, 1, 1))
    pay_last_day = await make_veteran(pay_start_date=date(2025, 12, 31))
    assert regs.must_file(active, YEAR)
    assert regs.must_file(left_during, YEAR)
    assert not regs.must_file(left_before, YEAR)
    assert not regs.must_file(no_date, YEAR)
    assert not regs.must_file(pay_later, YEAR)
    assert regs.must_file(pay_last_day, YEAR)


async def test_entry_not_required_to_file_is_refused(world: dict[str, Any]) -> None:
    veteran = await make_veteran(status="transferred", status_date=date(2024, 5, 1))
    with pytest.raises(RegistrationNotRequired) as caught:
        await regs.submit(veteran, YEAR, {}, today=IN_WINDOW)
    assert caught.value.code == "REGISTRATION_NOT_REQUIRED"
    assert not await AnnualRegistration.exists()


# ---- drafts and submission ------------------------------------------------------------------


async def test_submit_keeps_an_unchangeable_version_and_records_the_transition(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    draft = await regs.save_draft(veteran, YEAR, {"trips": [TRIP]}, today=IN_WINDOW)
    assert draft.status == "draft" and draft.current_version == 0
    reg = await regs.submit(veteran, YEAR, today=IN_WINDOW)
    assert reg.status == "submitted" and reg.current_version == 1 and reg.channel == "online"
    version = await RegistrationVersion.get(registration_id=reg.id)
    assert version.version_no == 1
    assert version.data["trips"][0]["destination"] == "香港"
    log = await TransitionLog.get(workflow="registration", object_id=reg.id)
    assert (log.from_state, log.to_state, log.actor_type) == ("draft", "submitted", "veteran")
    assert await AuditLog.filter(action="registration.submitted", object_id=str(reg.id)).exists()


async def test_free_text_is_stored_verbatim(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    text = "参加\"老兵协会\" <b>&amp;</b> 😀🎖️ '引号'"
    content = {
        "associations": [{"name": text, "role": "会员 <script>", "joined_on": "2020-05-01"}],
        "remarks": text,
    }
    reg = await regs.submit(veteran, YEAR, content, today=IN_WINDOW)
    version = await RegistrationVersion.get(registration_id=reg.id)
    assert version.data["associations"][0]["name"] == text
    assert version.data["associations"][0]["role"] == "会员 <script>"
    assert (await AnnualRegistration.get(id=reg.id)).draft["remarks"] == text


async def test_trip_entirely_outside_the_year_is_refused_and_nothing_is_saved(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    await regs.save_draft(veteran, YEAR, {"remarks": "原稿"}, today=IN_WINDOW)
    outside = {**TRIP, "departed_on": "2024-03-01", "returned_on": "2024-03-05"}
    with pytest.raises(ValidationFailed) as caught:
        await regs.save_draft(veteran, YEAR, {"trips": [outside]}, today=IN_WINDOW)
    assert "trips.0.departed_on" in caught.value.details["fields"]
    assert (await AnnualRegistration.get(veteran_id=veteran.id)).draft["remarks"] == "原稿"


async def test_trips_overlapping_the_year_count_and_open_returns_are_allowed(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    across_new_year = {**TRIP, "departed_on": "2024-12-20", "returned_on": "2025-01-03"}
    still_abroad = {
        **TRIP,
        "departed_on": "2025-12-01",
        "returned_on": None,
        "destination_kind": "foreign",
        "destination": "新加坡",
    }
    reg = await regs.submit(
        veteran, YEAR, {"trips": [across_new_year, still_abroad]}, today=IN_WINDOW
    )
    data = (await RegistrationVersion.get(registration_id=reg.id)).data
    assert [t["destination_kind"] for t in data["trips"]] == ["hmt", "foreign"]
    assert data["trips"][1]["returned_on"] is None


async def test_return_before_departure_and_future_dates_are_refused(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    backwards = {**TRIP, "departed_on": "2025-07-10", "returned_on": "2025-07-01"}
    future = {"kind": "reward", "date": "2026-02-11", "title": "优秀志愿者"}
    with pytest.raises(ValidationFailed) as caught:
        await regs.submit(
            veteran, YEAR, {"trips": [backwards], "rewards_punishments": [future]}, today=IN_WINDOW
        )
    fields = caught.value.details["fields"]
    assert set(fields) == {"content.trips.0.returned_on", "content.rewards_punishments.0.date"}
    assert not await RegistrationVersion.exists()


async def test_dates_before_1950_are_refused_as_typos(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    open_since_year_one = {**TRIP, "departed_on": "0001-01-01", "returned_on": None}

    with pytest.raises(ValidationFailed) as caught:
        await regs.save_draft(veteran, YEAR, {"trips": [open_since_year_one]}, today=IN_WINDOW)

    assert "trips.0.departed_on" in caught.value.details["fields"]


@pytest.mark.parametrize(
    ("kind", "destination", "refused"),
    [
        ("hmt", "日本东京", True),
        ("foreign", "香港", True),
        ("foreign", "臺北", True),
        ("hmt", "澳门", False),
        ("hmt", "台北市", False),
        ("foreign", "新加坡", False),
    ],
)
async def test_hong_kong_macao_taiwan_trips_are_kept_apart_from_foreign_ones(
    world: dict[str, Any], kind: str, destination: str, refused: bool
) -> None:
    veteran = await make_veteran()
    trip = {**TRIP, "destination_kind": kind, "destination": destination}

    if refused:
        with pytest.raises(ValidationFailed) as caught:
            await regs.save_draft(veteran, YEAR, {"trips": [trip]}, today=IN_WINDOW)
        assert "trips.0.destination_kind" in caught.value.details["fields"]
    else:
        await regs.save_draft(veteran, YEAR, {"trips": [trip]}, today=IN_WINDOW)


async def test_draft_outside_the_window_is_refused_and_saves_nothing(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()

    with pytest.raises(RegistrationClosed):
        await regs.save_draft(veteran, YEAR, {"remarks": "晚了"}, today=AFTER_WINDOW)
    with pytest.raises(RegistrationClosed):
        # The year is not over yet: its window opens next January.
        await regs.save_draft(veteran, IN_WINDOW.year, {"remarks": "早了"}, today=IN_WINDOW)

    assert not await AnnualRegistration.filter(veteran_id=veteran.id).exists()


async def test_new_phone_must_be_a_mainland_mobile(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    with pytest.raises(ValidationFailed) as caught:
        await regs.save_draft(
            veteran, YEAR, {"contact_changes": {"new_phone": "1380013800"}}, today=IN_WINDOW
        )
    assert "contact_changes.new_phone" in caught.value.details["fields"]
    ok = {"contact_changes": {"new_phone": "13800138000", "new_address": "迎泽区某街1号"}}
    saved = await regs.save_draft(veteran, YEAR, ok, today=IN_WINDOW)
    assert saved.draft["contact_changes"]["new_phone"] == "13800138000"


async def test_party_member_must_report_organisation_life(world: dict[str, Any]) -> None:
    veteran = await make_veteran(party_member=True)
    with pytest.raises(ValidationFailed) as caught:
        await regs.submit(veteran, YEAR, {}, today=IN_WINDOW)
    assert "content.party_life" in caught.value.details["fields"]
    life = {"party_life": {"organisation": "某社区党支部", "participation": "按时参加组织生活"}}
    assert (await regs.submit(veteran, YEAR, life, today=IN_WINDOW)).status == "submitted"


async def test_submitted_registration_cannot_be_changed_as_a_draft(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    await submitted(veteran)
    with pytest.raises(InvalidTransition):
        await regs.save_draft(veteran, YEAR, {"remarks": "改一下"}, today=IN_WINDOW)


async def test_repeated_submit_of_the_same_content_answers_with_the_first(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    first = await submitted(veteran)
    again = await submitted(veteran)
    assert again.id == first.id and again.current_version == 1
    with pytest.raises(InvalidTransition):
        await regs.submit(veteran, YEAR, {"remarks": "不同的内容"}, today=IN_WINDOW)


async def test_double_tap_on_submit_creates_one_registration_and_one_version(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    results = await asyncio.gather(
        submitted(veteran), submitted(veteran), submitted(veteran), return_exceptions=True
    )
    for result in results:
        assert isinstance(result, AnnualRegistration | Conflict), result
    assert any(isinstance(result, AnnualRegistration) for result in results)
    assert await AnnualRegistration.filter(veteran_id=veteran.id).count() == 1
    assert await RegistrationVersion.all().count() == 1
    assert await TransitionLog.filter(to_state="submitted").count() == 1


# ---- review ---------------------------------------------------------------------------------


async def test_approval_confirms_the_years_benefits_and_notifies_the_veteran(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    reg = await submitted(veteran)
    clerk: StaffUser = world["clerk"]
    approved = await regs.approve(clerk, reg.id, reg.lock_version, ip="127.0.0.1")
    assert approved.status == "approved"
    row = await AnnualRegistration.get(id=reg.id)
    assert row.status == "approved" and row.reviewed_by_id == clerk.id  # type: ignore[attr-defined]
    confirmation = await BenefitConfirmation.get(registration_id=reg.id)
    assert confirmation.report_year == YEAR
    assert confirmation.confirmed_by_id == clerk.id  # type: ignore[attr-defined]
    assert confirmation.confirmed_at is not None
    inbox = await InboxMessage.get(veteran_id=veteran.id)
    assert inbox.event == "registration.approved"
    audit = await AuditLog.get(action="registration.approved")
    assert audit.actor_id == clerk.id and audit.ip == "127.0.0.1"


async def test_return_ties_comments_to_the_version_and_defaults_the_deadline(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    reg = await submitted(veteran)
    comments = {"trips": "请补充返回日期", "general": "请核对 <全部> 内容 😀", "associations": "  "}
    returned = await regs.return_for_correction(
        world["clerk"], reg.id, reg.lock_version, comments, today=IN_WINDOW
    )
    assert returned.status == "returned"
    assert returned.correction_deadline == IN_WINDOW + timedelta(days=15)
    version = await RegistrationVersion.get(registration_id=reg.id, version_no=1)
    rows = await ReviewComment.filter(registration_id=reg.id).order_by("section")
    assert [(r.section, r.version_id) for r in rows] == [  # type: ignore[attr-defined]
        ("general", version.id),
        ("trips", version.id),
    ]
    assert rows[0].comment == "请核对 <全部> 内容 😀"
    inbox = await InboxMessage.get(veteran_id=veteran.id)
    assert inbox.event == "registration.returned"


async def test_return_needs_a_comment_in_a_known_section(world: dict[str, Any]) -> None:
    reg = await submitted(await make_veteran())
    for comments in ({}, {"general": "   "}, {"salary": "?"}):
        with pytest.raises(ValidationFailed):
            await regs.return_for_correction(world["clerk"], reg.id, reg.lock_version, comments)
    assert (await AnnualRegistration.get(id=reg.id)).status == "submitted"


async def test_returned_registration_is_resubmitted_after_the_window_until_its_deadline(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    reg = await submitted(veteran)
    deadline = date(2026, 4, 20)
    await regs.return_for_correction(
        world["clerk"], reg.id, reg.lock_version, {"trips": "补充"}, deadline, today=IN_WINDOW
    )
    fixed = {"trips": [{**TRIP, "purpose": "探亲（已补充）"}]}
    await regs.save_draft(veteran, YEAR, fixed, today=date(2026, 4, 10))
    with pytest.raises(RegistrationClosed) as caught:
        await regs.submit(veteran, YEAR, today=date(2026, 4, 21))
    assert "2026年4月20日" in caught.value.message
    again = await regs.submit(veteran, YEAR, today=deadline)
    assert again.status == "submitted" and again.current_version == 2
    assert again.correction_deadline is None
    versions = await RegistrationVersion.filter(registration_id=reg.id).order_by("version_no")
    assert [v.data["trips"][0]["purpose"] for v in versions] == ["探亲", "探亲（已补充）"]


async def test_two_clerks_acting_at_once_get_one_outcome_and_a_conflict(
    world: dict[str, Any],
) -> None:
    reg = await submitted(await make_veteran())
    results = await asyncio.gather(
        regs.approve(world["clerk"], reg.id, reg.lock_version),
        regs.return_for_correction(world["clerk2"], reg.id, reg.lock_version, {"general": "改"}),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, AnnualRegistration)]
    losses = [r for r in results if isinstance(r, AppError)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].code == "CONFLICT"
    row = await AnnualRegistration.get(id=reg.id)
    assert row.status == wins[0].status
    assert await TransitionLog.filter(object_id=reg.id, from_state="submitted").count() == 1
    assert await InboxMessage.all().count() == 1


async def test_stale_lock_version_is_a_conflict(world: dict[str, Any]) -> None:
    reg = await submitted(await make_veteran())
    with pytest.raises(Conflict):
        await regs.approve(world["clerk"], reg.id, reg.lock_version - 1)
    approved = await regs.approve(world["clerk"], reg.id, reg.lock_version)
    with pytest.raises(InvalidTransition):
        await regs.approve(world["clerk2"], reg.id, approved.lock_version)


async def test_clerk_of_another_region_sees_not_found(world: dict[str, Any]) -> None:
    reg = await submitted(await make_veteran())
    with pytest.raises(NotFound):
        await regs.approve(world["other"], reg.id, reg.lock_version)
    with pytest.raises(NotFound):
        await regs.registration_detail(world["other"], reg.id)
    assert (await regs.registration_detail(world["city"], reg.id)).registration.id == reg.id


async def test_onsite_entry_is_recorded_and_its_clerk_cannot_approve_it(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    clerk: StaffUser = world["clerk"]
    reg = await regs.enter_onsite(clerk, veteran.id, YEAR, {"trips": [TRIP]}, today=IN_WINDOW)
    assert reg.channel == "onsite" and reg.entered_by_id == clerk.id  # type: ignore[attr-defined]
    version = await RegistrationVersion.get(registration_id=reg.id)
    assert version.entered_by_id == clerk.id  # type: ignore[attr-defined]
    assert await AuditLog.filter(action="registration.entered_onsite", actor_id=clerk.id).exists()
    with pytest.raises(SameClerk) as caught:
        await regs.approve(clerk, reg.id, reg.lock_version)
    assert caught.value.code == "SAME_CLERK"
    assert not (await regs.registration_detail(clerk, reg.id)).can_approve
    assert (await regs.approve(world["clerk2"], reg.id, reg.lock_version)).status == "approved"


async def test_onsite_entry_clerk_may_return_it_for_correction(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    reg = await regs.enter_onsite(world["clerk"], veteran.id, YEAR, {}, today=IN_WINDOW)
    returned = await regs.return_for_correction(
        world["clerk"], reg.id, reg.lock_version, {"general": "请补充"}, today=IN_WINDOW
    )
    assert returned.status == "returned"


async def test_refused_first_submission_leaves_no_registration_row(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    outside = {**TRIP, "departed_on": "2024-03-01", "returned_on": "2024-03-05"}

    with pytest.raises(ValidationFailed):
        await regs.enter_onsite(
            world["clerk"], veteran.id, YEAR, {"trips": [outside]}, today=IN_WINDOW
        )
    with pytest.raises(ValidationFailed):
        await regs.submit(veteran, YEAR, {"trips": [outside]}, today=IN_WINDOW)
    with pytest.raises(RegistrationClosed):
        await regs.submit(veteran, YEAR, {"trips": [TRIP]}, today=AFTER_WINDOW)

    assert not await AnnualRegistration.filter(veteran_id=veteran.id).exists()


async def test_onsite_entry_outside_scope_is_not_found(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    with pytest.raises(NotFound):
        await regs.enter_onsite(world["other"], veteran.id, YEAR, {}, today=IN_WINDOW)


async def test_late_filing_permit_lets_one_veteran_file_after_the_window(
    world: dict[str, Any],
) -> None:
    allowed, other = await make_veteran(), await make_veteran()
    with pytest.raises(ValidationFailed):
        await regs.grant_late_filing(
            world["clerk"], allowed.id, YEAR, date(2026, 4, 30), "  ", today=AFTER_WINDOW
        )
    permit = await regs.grant_late_filing(
        world["clerk"], allowed.id, YEAR, date(2026, 4, 30), "住院期间无法办理", today=AFTER_WINDOW
    )
    assert permit.granted_by_id == world["clerk"].id  # type: ignore[attr-defined]
    assert (await regs.submit(allowed, YEAR, {}, today=date(2026, 4, 30))).status == "submitted"
    with pytest.raises(RegistrationClosed):
        await regs.submit(other, YEAR, {}, today=date(2026, 4, 30))
    assert await AuditLog.filter(action="registration.late_filing_granted").exists()


# ---- lists and detail ----------------------------------------------------------------------


async def test_list_pages_by_county_then_id_within_scope(world: dict[str, Any]) -> None:
    made = []
    for county in ("140106", "140105", "140106", "140105", OTHER_COUNTY):
        made.append(await submitted(await make_veteran(county_code=county)))
    seen: list[int] = []
    after = None
    while True:
        page = await regs.list_registrations("1401", YEAR, after_id=after, limit=2)
        seen += [reg.id for reg in page.items]
        if page.next_after_id is None:
            break
        after = page.next_after_id
    expected = sorted(
        (reg for reg in made if reg.county_code.startswith("1401")),
        key=lambda reg: (reg.county_code, reg.id),
    )
    assert seen == [reg.id for reg in expected]
    only = await regs.list_registrations("1401", YEAR, status="submitted", county_code="140106")
    assert {reg.county_code for reg in only.items} == {"140106"}
    assert len(only.items) == 2
    assert only.items[0].veteran.name
    assert (await regs.list_registrations("1401", YEAR, county_code=OTHER_COUNTY)).items == []
    assert (await regs.list_registrations("1401", YEAR, status="approved")).items == []


async def test_not_filed_lists_who_must_file_and_has_not_submitted(world: dict[str, Any]) -> None:
    filed = await make_veteran()
    await submitted(filed)
    draft_only = await make_veteran()
    await regs.save_draft(draft_only, YEAR, {}, today=IN_WINDOW)
    nothing = await make_veteran(county_code="140106")
    await make_veteran(status="deceased", status_date=date(2024, 1, 1))
    await make_veteran(county_code=OTHER_COUNTY)
    report = await regs.not_filed("1401", YEAR)
    assert report.counts == {"140105": 1, "140106": 1}
    assert report.total == 2
    assert {v.id for v in report.items} == {draft_only.id, nothing.id}
    county = await regs.not_filed("1401", YEAR, "140106")
    assert [v.id for v in county.items] == [nothing.id]


async def test_overdue_reviews_are_those_waiting_past_the_review_period(
    world: dict[str, Any],
) -> None:
    now = datetime.now(UTC)
    old = []
    for county, days in (("140106", 40), ("140105", 31), ("140105", 45)):
        reg = await submitted(await make_veteran(county_code=county))
        await AnnualRegistration.filter(id=reg.id).update(submitted_at=now - timedelta(days=days))
        old.append(reg)
    fresh = await submitted(await make_veteran())
    seen: list[int] = []
    after = None
    while True:
        page = await regs.overdue_reviews("1401", now, after_id=after, limit=1)
        seen += [reg.id for reg in page.items]
        if page.next_after_id is None:
            break
        after = page.next_after_id
    # By county, then the longest waiting first.
    assert seen == [old[2].id, old[1].id, old[0].id]
    assert fresh.id not in seen
    assert (await regs.overdue_reviews("1402", now)).items == []


async def test_detail_shows_what_changed_since_last_year(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    last_year = {"trips": [{**TRIP, "departed_on": "2024-07-01", "returned_on": "2024-07-10"}]}
    await regs.submit(veteran, YEAR - 1, last_year, today=date(2025, 2, 1))
    this_year = {
        "trips": [TRIP],
        "associations": [{"name": "退役军人志愿服务队", "role": "队员", "joined_on": None}],
    }
    reg = await regs.submit(veteran, YEAR, this_year, today=IN_WINDOW)
    detail = await regs.registration_detail(world["clerk"], reg.id)
    by_section = {d.section: d for d in detail.diff}
    assert by_section["trips"].state == "changed"
    assert by_section["trips"].added == [TRIP | {"returned_on": "2025-07-10"}]
    assert len(by_section["trips"].removed) == 1
    assert by_section["associations"].state == "changed"
    assert by_section["rewards_punishments"].state == "same"
    assert [v.version_no for v in detail.versions] == [1]
    assert detail.previous_version is not None
    assert [t.to_state for t in detail.transitions] == ["submitted"]


async def test_status_summary_for_me_is_cheap_and_plain(world: dict[str, Any]) -> None:
    veteran = await make_veteran()
    summary = await regs.status_summary(veteran, today=IN_WINDOW)
    assert summary["report_year"] == YEAR and summary["status"] is None
    assert summary["window_open"] and summary["must_file"]
    await submitted(veteran)
    summary = await regs.status_summary(veteran, today=IN_WINDOW)
    assert summary["status"] == "submitted" and summary["current_version"] == 1
    assert summary["closes_on"] == "2026-03-31"


async def test_current_status_shows_comments_of_a_returned_registration(
    world: dict[str, Any],
) -> None:
    veteran = await make_veteran()
    reg = await submitted(veteran)
    await regs.return_for_correction(
        world["clerk"], reg.id, reg.lock_version, {"trips": "补充目的"}, today=IN_WINDOW
    )
    state = await regs.current_status(veteran, today=IN_WINDOW)
    assert state.can_edit and state.can_submit
    assert [(c.section, c.comment) for c in state.comments] == [("trips", "补充目的")]
    late = await regs.current_status(veteran, today=IN_WINDOW + timedelta(days=16))
    assert not late.can_submit and late.blocked_reason


async def test_listing_indexes_exist_in_the_database(db_ready: Settings) -> None:
    conn = connections.get("default")
    if TEST_DB == "mariadb":
        _, rows = await conn.execute_query("SHOW INDEX FROM annual_registration")
        columns: dict[str, list[str]] = {}
        for row in rows:
            columns.setdefault(row["Key_name"], []).append(row["Column_name"])
        found = [tuple(cols) for cols in columns.values()]
    else:
        _, rows = await conn.execute_query("PRAGMA index_list('annual_registration')")
        found = []
        for row in rows:
            _, info = await conn.execute_query(f"PRAGMA index_info('{row['name']}')")
            found.append(tuple(item["name"] for item in info))
    for wanted in (
        ("report_year", "status", "county_code", "id"),
        ("report_year", "county_code", "id"),
        ("status", "county_code", "submitted_at", "id"),
    ):
        assert wanted in found, found
