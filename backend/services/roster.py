"""Roster import: check an uploaded xlsx or csv roster, preview what changes, then apply it.

Service API (the portal's import pages call only these):

- ``await preview_import(staff, filename, data) -> RosterImportBatch``
  Parses and checks every row off the event loop. A file with any bad row gives a batch
  with status ``rejected`` and ``errors`` = ``[{"row", "field", "column", "reason"}]``
  (row as Excel numbers it, reason in Chinese), ``error_count`` the full count; nothing
  else changes. A clean file gives status ``previewed`` with ``created_count`` (new),
  ``updated_count`` (changed) and ``unchanged_count``. ``changes`` lists the changed entries
  (row, name, masked ID, the fields that change) and then the new ones (row, name, masked
  ID, county code, ``"new": True``), each kind capped at MAX_LISTED; read them apart with
  changed_entries() and new_entries(). A file without any data row is rejected with a
  file-level reason. Raises PayloadTooLarge over settings.max_upload_bytes.
- ``await apply_import(staff, batch_id) -> RosterImportBatch``
  Applies a previewed batch in one transaction. A second click returns the applied batch
  without applying again; a preview the roster has moved past raises Conflict (the batch
  becomes ``superseded``); a rejected batch raises InvalidTransition; another region's
  batch raises NotFound.
- ``await get_batch(staff, batch_id)`` and ``await list_batches(staff)`` for the pages;
  FIELD_LABELS gives the Chinese name of each field key; TEMPLATE_HEADERS the columns.

Rules decided here: matching is by the keyed hash of the 18-digit ID number; a blank phone
keeps the stored phone (rosters often lack phones, and binding verifies the phone anyway);
a status other than active needs its date; an ID already on another region's roster is
refused, because taking over a veteran is a transfer, not an import.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import multiprocessing
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from backend import context
from backend.errors import Conflict, InvalidTransition, NotFound, PayloadTooLarge
from backend.models.regions import Region
from backend.models.roster import RosterImportBatch
from backend.models.staff import StaffUser
from backend.models.veterans import Veteran
from backend.services import audit
from backend.services.regions import counties_within, covers
from backend.services.roster_parse import (
    MAX_REPORTED,
    ParseRules,
    ParseSummary,
    parse_to_staging,
)

logger = logging.getLogger(__name__)

FIELD_LABELS = {
    "name": "姓名",
    "id_number": "身份证号",
    "phone": "手机号",
    "county_code": "安置地区划代码",
    "pay_start_date": "退役金起发日期",
    "party_member": "是否党员",
    "status": "状态",
    "status_date": "状态日期",
}
TEMPLATE_HEADERS = tuple(FIELD_LABELS.values())

# Fields an import may change on an existing entry, in the order the preview lists them.
_COMPARED = ("name", "phone", "county_code", "pay_start_date", "party_member", "status")
_EXISTING = (
    "id",
    "id_hash",
    "name",
    "phone_hash",
    "county_code",
    "pay_start_date",
    "party_member",
    "status",
    "status_date",
)
_CHUNK = 500
#: files at least this large are parsed in a separate process
PROCESS_THRESHOLD = 1_000_000
_pool: ProcessPoolExecutor | None = None
#: the preview lists at most this many changed and this many new entries
MAX_LISTED = 1000


class _StalePreview(Exception):
    """The roster entries a preview matched have changed since."""


class _AlreadyClaimed(Exception):
    """Another request applied (or is applying) this batch."""


def staging_path(batch_id: int) -> Path:
    """Where a previewed batch's checked rows wait; outside every served folder."""
    return context.current().settings.data_dir / "imports" / f"batch-{batch_id}.jsonl"


async def preview_import(
    staff: StaffUser, filename: str, data: bytes, *, ip: str = "", request_id: str = ""
) -> RosterImportBatch:
    """Check the file and record a batch: rejected with every bad row, or previewed."""
    ctx = context.current()
    if len(data) > ctx.settings.max_upload_bytes:
        raise PayloadTooLarge("名册文件过大，请分成几个文件上传。")
    region = await _staff_region(staff)
    in_scope = await counties_within(region)
    codes = await Region.filter(level="county").values_list("code", flat=True)
    known = frozenset(str(code) for code in codes)

    folder = ctx.settings.data_dir / "imports"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    tmp = folder / f"tmp-{uuid.uuid4().hex}.jsonl"
    rules = ParseRules(in_scope=in_scope, known=known, settings=ctx.settings, today=_today())
    try:
        summary = await _parse(data, filename, rules, tmp)
        if not summary.errors:
            diff = await _diff(tmp, region)
            summary.errors.extend(diff.errors)
        else:
            diff = _Diff()
        batch = await _record_batch(staff, region, filename, data, summary, diff, ip, request_id)
        if batch.status == "previewed":
            await asyncio.to_thread(os.replace, tmp, staging_path(batch.id))
    finally:
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
    logger.info(
        "roster batch %s %s: %d rows, %d errors",
        batch.id,
        batch.status,
        batch.total_rows,
        batch.error_count,
    )
    return batch


async def _parse(data: bytes, filename: str, rules: ParseRules, staging: Path) -> ParseSummary:
    """Parse in a worker thread, or for a large file in a worker process.

    A thread would hold the GIL for most of a large parse and stall this worker's other
    requests by a hundred milliseconds at a time; a process costs a start-up once.
    """
    if len(data) < PROCESS_THRESHOLD:
        return await asyncio.to_thread(parse_to_staging, data, filename, rules, staging)
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_pool, parse_to_staging, data, filename, rules, staging)
    except BrokenProcessPool:
        # The worker died (killed, out of memory): start a fresh one next time.
        _pool = None
        raise


async def apply_import(
    staff: StaffUser, batch_id: int, *, ip: str = "", request_id: str = ""
) -> RosterImportBatch:
    """Apply a previewed batch exactly once, all or nothing."""
    region = await _staff_region(staff)
    batch = await get_batch(staff, batch_id, region=region)
    if batch.status == "applied":
        return batch
    if batch.status != "previewed":
        raise InvalidTransition("该批次未通过校验或已失效，不能导入。请重新上传名册。")

    path = staging_path(batch.id)
    if not await asyncio.to_thread(path.exists):
        # Staged rows live under data_dir; a host that does not share it cannot apply.
        logger.warning("roster batch %s has no staged rows at %s", batch.id, path)
        await RosterImportBatch.filter(id=batch.id, status="previewed").update(status="superseded")
        raise Conflict("预览数据已失效，本次未导入。请重新上传名册并预览。")
    try:
        async with in_transaction():
            claimed = await RosterImportBatch.filter(id=batch.id, status="previewed").update(
                status="applied", applied_at=dt.datetime.now(dt.UTC)
            )
            if not claimed:
                raise _AlreadyClaimed
            digest = await _write(path, batch.id)
            if digest != batch.roster_digest:
                raise _StalePreview
            await audit.record(
                "staff",
                staff.id,
                "roster.imported",
                "roster_import_batch",
                batch.id,
                _counts(batch),
                ip,
                request_id,
            )
    except _AlreadyClaimed:
        return await RosterImportBatch.get(id=batch.id)
    except _StalePreview:
        await RosterImportBatch.filter(id=batch.id, status="previewed").update(status="superseded")
        logger.info("roster batch %s superseded: roster changed since preview", batch.id)
        raise Conflict("预览之后名册已有变动，本次未导入。请重新上传名册并预览。") from None

    await asyncio.to_thread(path.unlink, missing_ok=True)
    logger.info("roster batch %s applied", batch.id)
    return await RosterImportBatch.get(id=batch.id)


async def get_batch(
    staff: StaffUser, batch_id: int, *, region: Region | None = None
) -> RosterImportBatch:
    """One batch in the staff member's region; another region's batch is 'not found'."""
    region = region or await _staff_region(staff)
    batch = await RosterImportBatch.get_or_none(id=batch_id)
    if batch is None or not covers(region, batch.region_code):
        raise NotFound("没有找到该导入批次。")
    return batch


async def list_batches(staff: StaffUser, limit: int = 50) -> list[RosterImportBatch]:
    """The latest batches of the staff member's region and below, newest first."""
    region = await _staff_region(staff)
    return (
        await RosterImportBatch.filter(region_code__startswith=region.scope_prefix)
        .order_by("-id")
        .limit(limit)
    )


def changed_entries(batch: RosterImportBatch) -> list[dict[str, Any]]:
    """The entries of a preview that already exist and change, as listed (capped)."""
    return [entry for entry in batch.changes if not entry.get("new")]


def new_entries(batch: RosterImportBatch) -> list[dict[str, Any]]:
    """The entries of a preview that are not on the roster yet, as listed (capped)."""
    return [entry for entry in batch.changes if entry.get("new")]


async def _staff_region(staff: StaffUser) -> Region:
    region = await Region.get_or_none(code=staff.region_id)  # type: ignore[attr-defined]
    if region is None:
        raise NotFound("没有找到您所属的行政区划。")
    return region


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).astimezone(_SHANGHAI).date()


_SHANGHAI = dt.timezone(dt.timedelta(hours=8))


class _Diff:
    """What a clean file would do to the roster, found by matching ID hashes."""

    def __init__(self) -> None:
        self.created = 0
        self.updated = 0
        self.unchanged = 0
        self.changes: list[dict[str, Any]] = []
        self.new: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._digest = hashlib.sha256()

    def see(self, row: dict[str, Any], existing: dict[str, Any] | None) -> list[str]:
        """Count one staged row against its existing entry; returns the changed fields."""
        self._digest.update(_fingerprint(row["id_hash"], existing))
        if existing is None:
            self.created += 1
            if len(self.new) < MAX_LISTED:
                self.new.append(
                    {
                        "row": row["row"],
                        "name": row["name"],
                        "id_masked": row["id_masked"],
                        "county_code": row["county_code"],
                        "new": True,
                    }
                )
            return []
        changed = _changed_fields(row, existing)
        if not changed:
            self.unchanged += 1
            return []
        self.updated += 1
        if len(self.changes) < MAX_LISTED:
            self.changes.append(
                {
                    "row": row["row"],
                    "name": row["name"],
                    "id_masked": row["id_masked"],
                    "fields": changed,
                }
            )
        return changed

    @property
    def digest(self) -> str:
        return self._digest.hexdigest()


def _fingerprint(id_hash: str, existing: dict[str, Any] | None) -> bytes:
    if existing is None:
        return f"{id_hash}:-\n".encode()
    values = [str(existing[key]) for key in _EXISTING]
    return (id_hash + ":" + "|".join(values) + "\n").encode()


def _changed_fields(row: dict[str, Any], existing: dict[str, Any]) -> list[str]:
    changed = []
    for key in _COMPARED:
        if key == "phone":
            if row["phone_hash"] is not None and row["phone_hash"] != existing["phone_hash"]:
                changed.append("phone")
        elif key in ("pay_start_date",):
            if row[key] != _iso(existing[key]):
                changed.append(key)
        elif row[key] != existing[key]:
            changed.append(key)
    if row["status_date"] != _iso(existing["status_date"]):
        changed.append("status_date")
    return changed


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _read_chunks(path: Path) -> Iterator[list[dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        chunk: list[dict[str, Any]] = []
        for line in handle:
            chunk.append(json.loads(line))
            if len(chunk) >= _CHUNK:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


async def _chunks(path: Path) -> Any:
    """Staged rows in chunks, each read in a worker thread so the loop stays free."""
    reader = _read_chunks(path)
    while True:
        chunk = await asyncio.to_thread(next, reader, None)
        if chunk is None:
            return
        yield chunk


async def _existing(chunk: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    hashes = [row["id_hash"] for row in chunk]
    rows = await Veteran.filter(id_hash__in=hashes).values(*_EXISTING)
    return {row["id_hash"]: row for row in rows}


async def _diff(path: Path, region: Region) -> _Diff:
    diff = _Diff()
    async for chunk in _chunks(path):
        existing = await _existing(chunk)
        for row in chunk:
            match = existing.get(row["id_hash"])
            if match is not None and not covers(region, match["county_code"]):
                diff.errors.append(
                    {
                        "row": row["row"],
                        "field": "id_number",
                        "column": FIELD_LABELS["id_number"],
                        "reason": "此人已在其他地区的名册中，不能在本辖区导入；"
                        "如已迁入本地，请联系上级部门办理转移。",
                    }
                )
            diff.see(row, match)
    return diff


async def _write(path: Path, batch_id: int) -> str:
    """Insert and update the staged rows in chunks; returns the digest of what was matched."""
    diff = _Diff()
    now = dt.datetime.now(dt.UTC)
    update_fields = [
        "name",
        "phone_cipher",
        "phone_hash",
        "phone_masked",
        "county_code",
        "pay_start_date",
        "party_member",
        "status",
        "status_date",
        "import_batch_id",
        "updated_at",
    ]
    async for chunk in _chunks(path):
        existing = await _existing(chunk)
        new: list[Veteran] = []
        changed: list[Veteran] = []
        for row in chunk:
            match = existing.get(row["id_hash"])
            fields = diff.see(row, match)
            if match is None:
                new.append(Veteran(**_values(row), import_batch_id=batch_id))
            elif fields:
                values = _values(row)
                for key in ("id_cipher", "id_hash", "id_masked", "birth_date"):
                    values.pop(key)
                if row["phone_hash"] is None:
                    for key in ("phone_cipher", "phone_hash", "phone_masked"):
                        values.pop(key)
                vet = Veteran(id=match["id"], **values)
                vet.import_batch_id = batch_id  # type: ignore[attr-defined]
                vet.updated_at = now
                changed.append(vet)
        if new:
            await Veteran.bulk_create(new, batch_size=_CHUNK)
        # Rows that keep their phone are updated apart, so a blank cell never clears one.
        keep_phone = [vet for vet in changed if getattr(vet, "phone_hash", None) is None]
        with_phone = [vet for vet in changed if getattr(vet, "phone_hash", None) is not None]
        if with_phone:
            await Veteran.bulk_update(with_phone, update_fields, batch_size=200)
        if keep_phone:
            kept = [f for f in update_fields if not f.startswith("phone_")]
            await Veteran.bulk_update(keep_phone, kept, batch_size=200)
    return diff.digest


def _values(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "id_cipher": row["id_cipher"],
        "id_hash": row["id_hash"],
        "id_masked": row["id_masked"],
        "birth_date": dt.date.fromisoformat(row["birth_date"]),
        "phone_cipher": row["phone_cipher"],
        "phone_hash": row["phone_hash"],
        "phone_masked": row["phone_masked"] or "",
        "county_code": row["county_code"],
        "pay_start_date": dt.date.fromisoformat(row["pay_start_date"]),
        "party_member": row["party_member"],
        "status": row["status"],
        "status_date": (dt.date.fromisoformat(row["status_date"]) if row["status_date"] else None),
    }


def _counts(batch: RosterImportBatch) -> dict[str, Any]:
    return {
        "filename": batch.filename,
        "rows": batch.total_rows,
        "created": batch.created_count,
        "updated": batch.updated_count,
        "unchanged": batch.unchanged_count,
    }


async def _record_batch(
    staff: StaffUser,
    region: Region,
    filename: str,
    data: bytes,
    summary: ParseSummary,
    diff: _Diff,
    ip: str,
    request_id: str,
) -> RosterImportBatch:
    errors = sorted(summary.errors, key=lambda e: (e["row"] or 0, e["field"]))
    rejected = bool(errors)
    async with in_transaction():
        batch = await RosterImportBatch.create(
            staff=staff,
            region_code=region.code,
            filename=filename[:255],
            file_sha256=hashlib.sha256(data).hexdigest(),
            status="rejected" if rejected else "previewed",
            total_rows=summary.total_rows,
            created_count=0 if rejected else diff.created,
            updated_count=0 if rejected else diff.updated,
            unchanged_count=0 if rejected else diff.unchanged,
            error_count=len(errors),
            errors=errors[:MAX_REPORTED],
            changes=[] if rejected else diff.changes + diff.new,
            roster_digest="" if rejected else diff.digest,
        )
        await audit.record(
            "staff",
            staff.id,
            "roster.rejected" if rejected else "roster.previewed",
            "roster_import_batch",
            batch.id,
            {**_counts(batch), "errors": batch.error_count},
            ip,
            request_id,
        )
    return batch
