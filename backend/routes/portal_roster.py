"""Portal pages for roster import: upload, preview (or every bad row), apply, batch history.

The upload is checked before any parsing: one file, not larger than the configured limit,
named .xlsx or .csv, and its bytes must agree with the name (an .xlsx is a zip archive; a
.csv is text without NUL bytes and not some other binary format renamed). The rules for the
rows themselves live in backend.services.roster.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw

from backend.app import client_ip
from backend.errors import Conflict, InvalidTransition, PayloadTooLarge, ValidationFailed
from backend.models.staff import StaffUser
from backend.routes.portal_common import (
    flash,
    redirect,
    render,
    staff_required,
)
from backend.services import roster
from backend.services.regions import counties_within

logger = logging.getLogger(__name__)

bp = Blueprint("portal_roster", url_prefix="/portal")

BATCH_STATUSES = {
    "previewed": "待确认导入",
    "applied": "已导入",
    "rejected": "有错误，未导入",
    "superseded": "已失效",
}
# Magic numbers of formats people rename to .csv by mistake (zip/xlsx, old Excel, PDF, images).
_BINARY_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF", b"\x89PNG", b"\xff\xd8\xff")


def check_upload(filename: str, data: bytes, limit: int) -> None:
    """Refuse a file whose size, name or content is not an xlsx or csv roster."""
    if len(data) > limit:
        raise PayloadTooLarge(
            f"名册文件过大（上限 {limit // (1024 * 1024)} MB），请分成几个文件上传。"
        )
    if not data:
        raise ValidationFailed("上传的文件是空的。")
    suffix = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if suffix == "xlsx":
        if not data.startswith(b"PK\x03\x04"):
            raise ValidationFailed("文件内容不是 .xlsx 格式，请在 Excel 中“另存为”.xlsx 后上传。")
        return
    if suffix == "csv":
        head = data[:8192]
        if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
            raise ValidationFailed("文件内容不是 CSV 文本，请在 Excel 中另存为“CSV UTF-8”后上传。")
        return
    raise ValidationFailed("只能上传 .xlsx 或 .csv 格式的名册文件。")


@bp.get("/roster", name="roster")
@staff_required()
async def show_roster_imports(request: Request, staff: StaffUser) -> HTTPResponse:
    """The upload form and the latest import batches of the user's region."""
    batches = await roster.list_batches(staff)
    return render(
        request,
        "roster/index.html",
        batches=batches,
        batch_statuses=BATCH_STATUSES,
        headers=roster.TEMPLATE_HEADERS,
        counties=await counties_within(staff.region),
        limit_mb=request.app.ctx.settings.max_upload_bytes // (1024 * 1024),
    )


@bp.get("/roster/template.csv", name="roster_template")
@staff_required()
async def download_template(request: Request, staff: StaffUser) -> HTTPResponse:
    """An empty roster with the expected columns; UTF-8 with BOM so Excel opens it right."""
    body = ("\ufeff" + ",".join(roster.TEMPLATE_HEADERS) + "\r\n").encode()
    return raw(
        body,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="roster-template.csv"'},
    )


@bp.post("/roster/upload", name="roster_upload")
@staff_required()
async def upload_roster(request: Request, staff: StaffUser) -> HTTPResponse:
    """Check the upload, then preview it; the preview page shows counts or every bad row."""
    files = request.files.getlist("file") if request.files else None
    if not files or len(files) != 1:
        raise ValidationFailed("请选择一个名册文件。")
    upload = files[0]
    filename = (upload.name or "").strip()[-255:]
    check_upload(filename, upload.body, request.app.ctx.settings.max_upload_bytes)

    batch = await roster.preview_import(
        staff, filename, upload.body, ip=client_ip(request), request_id=request.ctx.request_id
    )
    if batch.status == "rejected" and batch.errors and batch.errors[0]["row"] is None:
        # A problem with the whole file (no header, no data rows) is said as it is.
        flash(request, f"{batch.errors[0]['reason']}本次未导入任何数据。", "error")
    elif batch.status == "rejected":
        flash(request, f"名册中有 {batch.error_count} 处错误，本次未导入任何数据。", "error")
    return redirect(request, f"/portal/roster/batches/{batch.id}")


@bp.get("/roster/batches/<batch_id:int>", name="roster_batch")
@staff_required()
async def show_batch(request: Request, staff: StaffUser, batch_id: int) -> HTTPResponse:
    """The preview of one batch: counts, changed and new people, or every bad row."""
    batch = await roster.get_batch(staff, batch_id)
    return render(
        request,
        "roster/batch.html",
        batch=batch,
        batch_statuses=BATCH_STATUSES,
        field_labels=roster.FIELD_LABELS,
        changed=roster.changed_entries(batch),
        new=roster.new_entries(batch),
        counties=await counties_within(staff.region),
    )


@bp.post("/roster/batches/<batch_id:int>/apply", name="roster_apply")
@staff_required()
async def apply_batch(request: Request, staff: StaffUser, batch_id: int) -> HTTPResponse:
    """Apply a previewed batch, all or nothing; a second click changes nothing.

    A preview the roster has moved past (or one that cannot be applied) leads back to the
    upload page with the reason, since the only way on is to upload the file again.
    """
    try:
        batch = await roster.apply_import(
            staff, batch_id, ip=client_ip(request), request_id=request.ctx.request_id
        )
    except (Conflict, InvalidTransition) as exc:
        flash(request, exc.message, "error")
        return redirect(request, "/portal/roster")
    flash(
        request,
        f"导入完成：新增 {batch.created_count} 人，更新 {batch.updated_count} 人，"
        f"未变 {batch.unchanged_count} 人。",
    )
    return redirect(request, f"/portal/roster/batches/{batch.id}")
