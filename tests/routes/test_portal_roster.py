"""Roster import pages over real HTTP: upload checks, preview, bad rows, apply, scope."""

from __future__ import annotations

import re

import httpx
import pytest

from backend.errors import PayloadTooLarge, ValidationFailed
from backend.models import AuditLog, RosterImportBatch, Veteran
from backend.routes.portal_roster import check_upload
from tests.factories import (
    OTHER_COUNTY,
    PORTAL_PASSWORD,
    fake_id_number,
    make_region_tree,
    make_staff,
    portal_login,
)

HEADER = "姓名,身份证号,手机号,安置地区划代码,退役金起发日期,是否党员,状态,状态日期\r\n"


def _csv(*rows: str) -> bytes:
    return (HEADER + "".join(row + "\r\n" for row in rows)).encode()


def _row(seq: int, county: str = "140105", name: str | None = None) -> str:
    name = name or f"导入{seq}号"
    return f"{name},{fake_id_number(seq)},1391234{seq:04d},{county},2020-01-01,是,在册,"


async def _clerk(client: httpx.AsyncClient, region: str = "140105") -> str:
    await make_region_tree()
    await make_staff(region, username="clerk1", password=PORTAL_PASSWORD)
    return await portal_login(client, "clerk1")


async def _upload(
    client: httpx.AsyncClient, token: str, data: bytes, name: str = "roster.csv"
) -> httpx.Response:
    return await client.post(
        "/portal/roster/upload",
        data={"csrf_token": token},
        files={"file": (name, data, "application/octet-stream")},
        headers={"referer": "/portal/roster"},
    )


def _batch_id(response: httpx.Response) -> int:
    found = re.fullmatch(r"/portal/roster/batches/(\d+)", response.headers["location"])
    assert found is not None, response.headers["location"]
    return int(found.group(1))


async def test_clean_csv_is_previewed_then_applied(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)

    uploaded = await _upload(client, token, _csv(_row(1), _row(2)))
    batch_id = _batch_id(uploaded)
    preview = await client.get(f"/portal/roster/batches/{batch_id}")

    assert uploaded.status_code == 303
    assert preview.status_code == 200
    assert "确认导入" in preview.text
    assert await Veteran.all().count() == 0  # nothing until the clerk confirms

    applied = await client.post(
        f"/portal/roster/batches/{batch_id}/apply", data={"csrf_token": token}
    )

    assert applied.status_code == 303
    assert await Veteran.all().count() == 2
    assert (await RosterImportBatch.get(id=batch_id)).status == "applied"
    assert await AuditLog.filter(action="roster.imported", object_id=str(batch_id)).exists()
    shown = await client.get(f"/portal/roster/batches/{batch_id}")
    assert "导入完成：新增 2 人" in shown.text


async def test_file_with_a_bad_row_lists_it_and_imports_nothing(
    client: httpx.AsyncClient,
) -> None:
    token = await _clerk(client)
    bad = f"坏行,{fake_id_number(3)[:-1]}0,13912340003,140105,2020-01-01,是,在册,"

    uploaded = await _upload(client, token, _csv(_row(1), bad))
    page = await client.get(f"/portal/roster/batches/{_batch_id(uploaded)}")

    assert page.status_code == 200
    assert "本次未导入任何数据" in page.text
    assert "<td>3</td>" in page.text  # Excel's row number of the bad row
    assert "确认导入" not in page.text
    assert await Veteran.all().count() == 0


async def test_binary_file_renamed_to_csv_is_refused(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)

    response = await _upload(client, token, b"%PDF-1.7\n\x00\x01binary", name="roster.csv")
    page = await client.get("/portal/roster")

    assert response.status_code == 303
    assert "文件内容不是 CSV 文本" in page.text
    assert await RosterImportBatch.all().count() == 0


async def test_text_renamed_to_xlsx_is_refused(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)

    await _upload(client, token, _csv(_row(1)), name="roster.xlsx")
    page = await client.get("/portal/roster")

    assert "文件内容不是 .xlsx 格式" in page.text
    assert await RosterImportBatch.all().count() == 0


async def test_other_file_types_are_refused(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)

    await _upload(client, token, b"<html></html>", name="roster.html")
    page = await client.get("/portal/roster")

    assert "只能上传 .xlsx 或 .csv 格式" in page.text


def test_upload_over_the_size_limit_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        check_upload("roster.csv", b"x" * 101, limit=100)
    with pytest.raises(ValidationFailed):
        check_upload("roster.csv", b"", limit=100)


async def test_upload_without_csrf_token_is_refused(client: httpx.AsyncClient) -> None:
    await _clerk(client)

    response = await client.post(
        "/portal/roster/upload", files={"file": ("roster.csv", _csv(_row(1)), "text/csv")}
    )

    assert response.status_code == 403
    assert await RosterImportBatch.all().count() == 0


async def test_row_for_another_county_is_refused(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)

    uploaded = await _upload(client, token, _csv(_row(1, county=OTHER_COUNTY)))
    batch = await RosterImportBatch.get(id=_batch_id(uploaded))

    assert batch.status == "rejected"
    assert await Veteran.all().count() == 0


async def test_batch_of_another_county_answers_not_found(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    other = await make_staff(OTHER_COUNTY, username="other", password=PORTAL_PASSWORD)
    batch = await RosterImportBatch.create(
        staff=other,
        region_code=OTHER_COUNTY,
        filename="外县.csv",
        file_sha256="0" * 64,
        status="previewed",
    )
    await make_staff("140105", username="clerk1", password=PORTAL_PASSWORD)
    token = await portal_login(client, "clerk1")

    page = await client.get(f"/portal/roster/batches/{batch.id}")
    apply = await client.post(
        f"/portal/roster/batches/{batch.id}/apply", data={"csrf_token": token}
    )
    history = await client.get("/portal/roster")

    assert page.status_code == 404
    assert apply.status_code == 404
    assert "外县.csv" not in history.text
    assert (await RosterImportBatch.get(id=batch.id)).status == "previewed"


async def test_template_lists_the_expected_columns(client: httpx.AsyncClient) -> None:
    await _clerk(client)

    response = await client.get("/portal/roster/template.csv")

    assert response.status_code == 200
    assert response.content.decode("utf-8-sig").startswith("姓名,身份证号")


async def test_header_only_file_is_rejected_with_a_file_level_reason(
    client: httpx.AsyncClient,
) -> None:
    token = await _clerk(client)

    uploaded = await _upload(client, token, _csv())
    page = await client.get(f"/portal/roster/batches/{_batch_id(uploaded)}")

    assert "文件中没有数据行。本次未导入任何数据。" in page.text
    assert "<td>—</td><td>文件</td><td>文件中没有数据行。</td>" in page.text
    assert ">file<" not in page.text
    assert "确认导入" not in page.text
    assert (await RosterImportBatch.get(id=_batch_id(uploaded))).status == "rejected"


async def test_preview_lists_new_people_with_masked_id_and_county(
    client: httpx.AsyncClient,
) -> None:
    token = await _clerk(client)

    uploaded = await _upload(client, token, _csv(_row(1), _row(2, name="新来的")))
    page = await client.get(f"/portal/roster/batches/{_batch_id(uploaded)}")

    assert "将要新增的人员" in page.text
    assert "新来的" in page.text
    assert fake_id_number(2)[:4] + "*" * 10 + fake_id_number(2)[-4:] in page.text
    assert fake_id_number(2) not in page.text
    assert "<td>小店区</td>" in page.text


async def test_stale_preview_leads_back_to_the_upload_page(client: httpx.AsyncClient) -> None:
    token = await _clerk(client)
    early = _batch_id(await _upload(client, token, _csv(_row(1))))
    later = _batch_id(await _upload(client, token, _csv(_row(1, name="改过名"))))
    await client.post(f"/portal/roster/batches/{later}/apply", data={"csrf_token": token})

    # No referer: the browser's own error page would offer only the way home.
    stale = await client.post(f"/portal/roster/batches/{early}/apply", data={"csrf_token": token})
    page = await client.get(stale.headers["location"])

    assert stale.status_code == 303
    assert stale.headers["location"] == "/portal/roster"
    assert "预览之后名册已有变动" in page.text
    assert "上传并预览" in page.text
    assert (await RosterImportBatch.get(id=early)).status == "superseded"
    assert (await Veteran.get()).name == "改过名"
