"""Roster import: every row checked, a preview of what changes, then all-or-nothing apply."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

import pytest
from openpyxl import Workbook

from backend import context
from backend.errors import Conflict, InvalidTransition, NotFound, PayloadTooLarge
from backend.models import AuditLog, RosterImportBatch, StaffUser, Veteran, WechatAccount
from backend.services import roster
from backend.services.idcard import EXCEL_NUMBER_REASON
from backend.services.regions import seed_regions
from backend.services.roster import apply_import, get_batch, preview_import, staging_path
from backend.settings import Settings
from scripts.make_roster import HEADERS, fake_id, make_rows

XIAODIAN, YINGZE, YANHU = "140105", "140106", "140802"
ID_A = fake_id(XIAODIAN, dt.date(1970, 5, 6), 11)
ID_B = fake_id(XIAODIAN, dt.date(1975, 8, 9), 12)


def row(
    name: str = "测试甲一",
    id_number: object = ID_A,
    phone: object = "13800138000",
    county: object = XIAODIAN,
    pay_start: object = "2020-01-01",
    party: object = "是",
    status: object = "在册",
    status_date: object = "",
) -> list[object]:
    return [name, id_number, phone, county, pay_start, party, status, status_date]


def xlsx(rows: Sequence[Sequence[object]], headers: Sequence[str] = HEADERS) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(headers))
    for values in rows:
        sheet.append(list(values))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bytes(rows: Sequence[Sequence[object]], encoding: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


async def make_staff(region: str, username: str = "clerk") -> StaffUser:
    return await StaffUser.create(
        username=username, display_name=username, password_hash="-", region_id=region
    )


@pytest.fixture
async def clerk(db_ready: Settings) -> StaffUser:
    """A clerk of 小店区 (140105), with Shanxi's regions seeded."""
    await seed_regions()
    return await make_staff(XIAODIAN)


def errors_by_row(batch: RosterImportBatch) -> dict[int | None, list[dict[str, Any]]]:
    found: dict[int | None, list[dict[str, Any]]] = {}
    for error in batch.errors:
        found.setdefault(error["row"], []).append(error)
    return found


async def test_clean_file_is_previewed_and_changes_nothing_yet(clerk: StaffUser) -> None:
    data = xlsx([row(), row("测试乙二", ID_B, "13900139000")])

    batch = await preview_import(clerk, "名册.xlsx", data)

    assert batch.status == "previewed"
    assert (batch.total_rows, batch.created_count, batch.updated_count) == (2, 2, 0)
    assert batch.errors == []
    assert await Veteran.all().count() == 0
    assert staging_path(batch.id).exists()


async def test_staged_rows_hold_no_plain_id_or_phone(clerk: StaffUser) -> None:
    batch = await preview_import(clerk, "名册.xlsx", xlsx([row()]))

    staged = staging_path(batch.id).read_text(encoding="utf-8")
    assert ID_A not in staged
    assert "13800138000" not in staged


async def test_apply_creates_encrypted_unbound_entries(clerk: StaffUser) -> None:
    batch = await preview_import(clerk, "名册.xlsx", xlsx([row(party="否")]))

    applied = await apply_import(clerk, batch.id)

    assert applied.status == "applied"
    assert applied.applied_at is not None
    vet = await Veteran.get(county_code=XIAODIAN)
    cipher = context.current().cipher
    assert cipher.decrypt(vet.id_cipher, "veteran.id_number") == ID_A
    assert vet.id_hash == cipher.lookup_hash(ID_A, "veteran.id_number")
    assert vet.phone_hash == cipher.lookup_hash("13800138000", "veteran.phone")
    assert vet.phone_cipher is not None and "13800138000" not in vet.phone_cipher
    assert vet.id_masked == ID_A[:4] + "*" * 10 + ID_A[-4:]
    assert vet.phone_masked == "138****8000"
    assert vet.birth_date == dt.date(1970, 5, 6)
    assert (vet.name, vet.party_member, vet.status) == ("测试甲一", False, "active")
    assert vet.pay_start_date == dt.date(2020, 1, 1)
    assert not await WechatAccount.filter(veteran_id=vet.id).exists()
    audit = await AuditLog.get(action="roster.imported")
    assert (audit.actor_type, audit.actor_id, audit.object_id) == ("staff", clerk.id, str(batch.id))
    assert not staging_path(batch.id).exists()


async def test_file_with_a_bad_row_is_rejected_and_changes_nothing(clerk: StaffUser) -> None:
    good = row()
    bad = row("测试乙二", ID_B[:17] + ("1" if ID_B[17] != "1" else "2"))
    data = xlsx([good, bad])

    batch = await preview_import(clerk, "名册.xlsx", data)

    assert batch.status == "rejected"
    assert batch.error_count == 1
    # Row 1 is the header, so the second data row is row 3 as Excel numbers it.
    assert batch.errors == [
        {
            "row": 3,
            "field": "id_number",
            "column": "身份证号",
            "reason": "身份证号校验位不正确，请核对是否有数字录错。",
        }
    ]
    assert await Veteran.all().count() == 0
    assert not staging_path(batch.id).exists()
    assert await AuditLog.filter(action="roster.rejected").count() == 1
    with pytest.raises(InvalidTransition):
        await apply_import(clerk, batch.id)
    assert await Veteran.all().count() == 0


async def test_every_bad_row_is_listed_with_its_reason(clerk: StaffUser) -> None:
    rows = [
        row(),
        row("", ID_B),
        row("测试丙三", fake_id(XIAODIAN, dt.date(1980, 1, 1), 3), phone="1380013800"),
        row("测试丁四", fake_id(XIAODIAN, dt.date(1980, 1, 1), 4), county="999999"),
        row("测试戊五", fake_id(XIAODIAN, dt.date(1980, 1, 1), 5), pay_start="2023-02-30"),
        row("测试己六", fake_id(XIAODIAN, dt.date(1980, 1, 1), 6), party="也许"),
        row("测试庚七", fake_id(XIAODIAN, dt.date(1980, 1, 1), 7), status="退休"),
        row("测试辛八", fake_id(XIAODIAN, dt.date(1980, 1, 1), 8), status="已故"),
        row("测试壬九", "", county=""),
    ]

    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows))

    found = errors_by_row(batch)
    assert batch.status == "rejected"
    assert sorted(found) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert found[3][0]["field"] == "name"
    assert found[4][0]["field"] == "phone"
    assert "不是已登记的县" in found[5][0]["reason"]
    assert "不是有效日期" in found[6][0]["reason"]
    assert found[7][0]["field"] == "party_member"
    assert "在册、暂停发放、已故、已迁出" in found[8][0]["reason"]
    assert "须填写状态日期" in found[9][0]["reason"]
    assert {e["field"] for e in found[10]} == {"id_number", "county_code"}
    assert batch.error_count == 9


async def test_mangled_ids_are_cleaned_the_way_a_clerk_expects(clerk: StaffUser) -> None:
    wide = "".join(chr(ord(ch) + 0xFEE0) for ch in ID_B)
    rows = [row(id_number="'" + ID_A.lower() + "\u200b"), row("测试乙二", "\u3000" + wide)]

    batch = await apply_import(clerk, (await preview_import(clerk, "a.xlsx", xlsx(rows))).id)

    cipher = context.current().cipher
    hashes = {cipher.lookup_hash(n, "veteran.id_number") for n in (ID_A, ID_B)}
    assert batch.status == "applied"
    assert set(await Veteran.all().values_list("id_hash", flat=True)) == hashes


async def test_id_that_excel_stored_as_a_number_is_refused_with_the_fix(
    clerk: StaffUser,
) -> None:
    rows = [row(id_number=int(ID_A[:15] + "000")), row("测试乙二", f"{float(ID_B):.5E}")]

    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows))

    assert [e["reason"] for e in batch.errors] == [EXCEL_NUMBER_REASON] * 2
    assert "设置为“文本”" in EXCEL_NUMBER_REASON


async def test_legacy_15_digit_id_is_stored_as_18_digits(clerk: StaffUser) -> None:
    legacy = "140105700506123"

    batch = await preview_import(clerk, "名册.xlsx", xlsx([row(id_number=legacy)]))
    await apply_import(clerk, batch.id)

    vet = await Veteran.get()
    number = context.current().cipher.decrypt(vet.id_cipher, "veteran.id_number")
    assert len(number) == 18 and number.startswith("14010519700506123")


async def test_duplicate_id_in_the_file_reports_both_rows(clerk: StaffUser) -> None:
    rows = [row(), row("测试乙二", ID_B), row("测试丙三", ID_A.lower())]

    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows))

    assert batch.status == "rejected"
    assert [(e["row"], e["reason"]) for e in batch.errors] == [
        (2, "身份证号与第4行重复。"),
        (4, "身份证号与第2行重复。"),
    ]


async def test_clerk_cannot_import_a_county_outside_their_region(clerk: StaffUser) -> None:
    batch = await preview_import(
        clerk, "名册.xlsx", xlsx([row(), row("测试乙二", ID_B, county=YINGZE)])
    )

    assert batch.status == "rejected"
    assert batch.errors[0]["row"] == 3
    assert "不在您的管辖范围内" in batch.errors[0]["reason"]
    assert await Veteran.all().count() == 0


async def test_city_clerk_imports_into_any_county_of_the_city(clerk: StaffUser) -> None:
    city = await make_staff("140100", "taiyuan")
    rows = [row(), row("测试乙二", ID_B, county=YINGZE), row("测试丙三", "", county=YANHU)]

    batch = await preview_import(city, "名册.xlsx", xlsx(rows[:2]))
    outside = await preview_import(city, "名册.xlsx", xlsx(rows[2:]))

    assert batch.status == "previewed"
    assert any("管辖范围" in e["reason"] for e in outside.errors)


async def test_id_on_another_regions_roster_is_refused(clerk: StaffUser) -> None:
    yingze = await make_staff(YINGZE, "yingze")
    theirs = await preview_import(yingze, "a.xlsx", xlsx([row(county=YINGZE)]))
    await apply_import(yingze, theirs.id)

    batch = await preview_import(clerk, "b.xlsx", xlsx([row()]))

    assert batch.status == "rejected"
    assert "其他地区的名册" in batch.errors[0]["reason"]
    assert (await Veteran.get()).county_code == YINGZE


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig", "utf-8"])
async def test_csv_is_read_in_gbk_and_utf8(clerk: StaffUser, encoding: str) -> None:
    data = csv_bytes(
        [row(), row("测试乙二", ID_B, status="暂停发放", status_date="2024/3/1")], encoding
    )

    batch = await apply_import(clerk, (await preview_import(clerk, "名册.csv", data)).id)

    assert batch.status == "applied"
    names = set(await Veteran.all().values_list("name", flat=True))
    assert names == {"测试甲一", "测试乙二"}
    suspended = await Veteran.get(name="测试乙二")
    assert (suspended.status, suspended.status_date) == ("suspended", dt.date(2024, 3, 1))


@pytest.mark.parametrize(
    "cell",
    [
        dt.datetime(2023, 1, 5),
        dt.date(2023, 1, 5),
        "2023-01-05",
        "2023/1/5",
        "2023年1月5日",
        "20230105",
        20230105,
        44931,  # the serial number of an unformatted Excel date cell
        "2023.1.5",
    ],
)
async def test_pay_start_date_is_read_in_the_usual_formats(clerk: StaffUser, cell: object) -> None:
    batch = await preview_import(clerk, "名册.xlsx", xlsx([row(pay_start=cell)]))
    await apply_import(clerk, batch.id)

    assert (await Veteran.get()).pay_start_date == dt.date(2023, 1, 5)


@pytest.mark.parametrize(
    "phone", ["+86 138-0013-8000", "138 0013 8000", 13800138000, "8613800138000"]
)
async def test_phone_is_cleaned_of_spaces_dashes_and_country_code(
    clerk: StaffUser, phone: object
) -> None:
    batch = await preview_import(clerk, "名册.xlsx", xlsx([row(phone=phone)]))
    await apply_import(clerk, batch.id)

    cipher = context.current().cipher
    assert (await Veteran.get()).phone_hash == cipher.lookup_hash("13800138000", "veteran.phone")


async def test_title_row_above_header_and_blank_rows_are_skipped(clerk: StaffUser) -> None:
    data = xlsx(
        [HEADERS, row(), [None] * 8, row("测试乙二", ID_B, county="1401 05 ")],
        headers=["小店区退役军人名册"],
    )

    batch = await preview_import(clerk, "名册.xlsx", data)

    assert (batch.status, batch.total_rows) == ("previewed", 2)


@pytest.mark.parametrize(
    ("filename", "data", "words"),
    [
        ("名册.xls", b"\xd0\xcf\x11\xe0", "另存为"),
        ("名册.pdf", b"%PDF", ".xlsx或.csv"),
        ("名册.xlsx", b"not a zip", "无法作为.xlsx读取"),
        ("名册.csv", b"", "没有找到表头"),
    ],
)
async def test_unreadable_files_are_rejected_with_a_reason(
    clerk: StaffUser, filename: str, data: bytes, words: str
) -> None:
    batch = await preview_import(clerk, filename, data)

    assert batch.status == "rejected"
    assert batch.errors[0]["row"] is None
    assert words in batch.errors[0]["reason"]


@pytest.mark.parametrize("suffix", ["xlsx", "csv"])
async def test_header_only_file_is_rejected_as_having_no_data(
    clerk: StaffUser, suffix: str
) -> None:
    data = xlsx([[None] * 8]) if suffix == "xlsx" else csv_bytes([], "utf-8-sig")

    batch = await preview_import(clerk, f"名册.{suffix}", data)

    assert batch.status == "rejected"
    assert batch.errors == [
        {"row": None, "field": "file", "column": "文件", "reason": "文件中没有数据行。"}
    ]
    assert not staging_path(batch.id).exists()
    with pytest.raises(InvalidTransition):
        await apply_import(clerk, batch.id)


async def test_new_entries_are_listed_up_to_the_cap(
    clerk: StaffUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roster, "MAX_LISTED", 3)
    rows = list(make_rows(5, [XIAODIAN]))

    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows))

    new = roster.new_entries(batch)
    assert batch.created_count == 5
    assert [entry["row"] for entry in new] == [2, 3, 4]
    assert all(entry["county_code"] == XIAODIAN for entry in new)
    assert all("*" * 10 in entry["id_masked"] for entry in new)
    assert roster.changed_entries(batch) == []


async def test_missing_required_column_is_named(clerk: StaffUser) -> None:
    headers = ["姓名", "身份证号", "手机号", "安置地区划代码", "是否党员", "状态"]

    batch = await preview_import(clerk, "名册.xlsx", xlsx([], headers=headers))

    assert batch.errors[0]["reason"] == "第1行表头缺少以下列：退役金起发日期。"


async def test_oversized_file_is_refused(clerk: StaffUser) -> None:
    limit = context.current().settings.max_upload_bytes

    with pytest.raises(PayloadTooLarge):
        await preview_import(clerk, "名册.csv", b"x" * (limit + 1))
    assert await RosterImportBatch.all().count() == 0


async def test_reimport_updates_existing_entries_after_preview(clerk: StaffUser) -> None:
    first = await preview_import(clerk, "v1.xlsx", xlsx([row(), row("测试乙二", ID_B)]))
    await apply_import(clerk, first.id)
    updated = [
        row(phone="13700137000", status="暂停发放", status_date="2025-06-01"),
        row("测试乙二", ID_B),
        row("测试丙三", fake_id(XIAODIAN, dt.date(1981, 2, 3), 1), phone=""),
    ]

    preview = await preview_import(clerk, "v2.xlsx", xlsx(updated))

    assert (preview.created_count, preview.updated_count, preview.unchanged_count) == (1, 1, 1)
    assert roster.changed_entries(preview) == [
        {
            "row": 2,
            "name": "测试甲一",
            "id_masked": ID_A[:4] + "*" * 10 + ID_A[-4:],
            "fields": ["phone", "status", "status_date"],
        }
    ]
    new_id = fake_id(XIAODIAN, dt.date(1981, 2, 3), 1)
    assert roster.new_entries(preview) == [
        {
            "row": 4,
            "name": "测试丙三",
            "id_masked": new_id[:4] + "*" * 10 + new_id[-4:],
            "county_code": XIAODIAN,
            "new": True,
        }
    ]
    assert (await Veteran.get(name="测试甲一")).status == "active"

    await apply_import(clerk, preview.id)

    changed = await Veteran.get(name="测试甲一")
    cipher = context.current().cipher
    assert changed.status == "suspended"
    assert changed.phone_hash == cipher.lookup_hash("13700137000", "veteran.phone")
    assert changed.import_batch_id == preview.id  # type: ignore[attr-defined]
    assert await Veteran.all().count() == 3


async def test_blank_phone_on_reimport_keeps_the_stored_phone(clerk: StaffUser) -> None:
    await apply_import(clerk, (await preview_import(clerk, "v1.xlsx", xlsx([row()]))).id)

    again = await preview_import(clerk, "v2.xlsx", xlsx([row(phone="", party="否")]))
    await apply_import(clerk, again.id)

    vet = await Veteran.get()
    assert again.changes[0]["fields"] == ["party_member"]
    assert vet.phone_masked == "138****8000"
    assert vet.party_member is False


async def test_two_clicks_on_apply_import_once(clerk: StaffUser) -> None:
    rows = list(make_rows(40, [XIAODIAN]))
    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows))

    first, second = await asyncio.gather(
        apply_import(clerk, batch.id), apply_import(clerk, batch.id)
    )

    assert first.status == second.status == "applied"
    assert await Veteran.all().count() == 40
    assert await AuditLog.filter(action="roster.imported").count() == 1


async def test_stale_preview_is_refused_and_nothing_is_half_imported(clerk: StaffUser) -> None:
    rows = list(make_rows(1200, [XIAODIAN]))
    early = await preview_import(clerk, "早.xlsx", xlsx(rows))
    # Meanwhile a colleague imports a file that changes the last entry.
    last = list(rows[-1])
    last[6], last[7] = "已故", "2025-01-01"
    later = await preview_import(clerk, "晚.xlsx", xlsx([last]))
    await apply_import(clerk, later.id)

    with pytest.raises(Conflict):
        await apply_import(clerk, early.id)

    assert await Veteran.all().count() == 1
    assert (await RosterImportBatch.get(id=early.id)).status == "superseded"


async def test_another_regions_batch_is_not_found(clerk: StaffUser) -> None:
    batch = await preview_import(clerk, "名册.xlsx", xlsx([row()]))
    yingze = await make_staff(YINGZE, "yingze")

    with pytest.raises(NotFound):
        await get_batch(yingze, batch.id)
    with pytest.raises(NotFound):
        await apply_import(yingze, batch.id)
    assert (await RosterImportBatch.get(id=batch.id)).status == "previewed"


async def test_large_file_is_applied_in_chunks(clerk: StaffUser) -> None:
    rows = list(make_rows(1500, ["140105"]))

    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows))
    await apply_import(clerk, batch.id)

    assert batch.created_count == 1500
    assert await Veteran.filter(import_batch_id=batch.id).count() == 1500


async def test_large_upload_is_parsed_in_a_worker_process(
    clerk: StaffUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(roster, "PROCESS_THRESHOLD", 0)
    rows = [row(), row("测试乙二", ID_B, county=YINGZE)]

    rejected = await preview_import(clerk, "名册.xlsx", xlsx(rows))
    batch = await preview_import(clerk, "名册.xlsx", xlsx(rows[:1]))
    await apply_import(clerk, batch.id)

    assert rejected.errors[0]["row"] == 3
    assert (await Veteran.get()).name == "测试甲一"


async def test_preview_whose_staged_rows_are_gone_is_refused(clerk: StaffUser) -> None:
    batch = await preview_import(clerk, "名册.xlsx", xlsx([row()]))
    staging_path(batch.id).unlink()

    with pytest.raises(Conflict):
        await apply_import(clerk, batch.id)

    assert await Veteran.all().count() == 0
    assert (await RosterImportBatch.get(id=batch.id)).status == "superseded"
