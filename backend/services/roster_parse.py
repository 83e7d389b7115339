"""Reading and checking roster rows (xlsx or csv), streamed, in a worker thread.

Nothing here touches the database or the event loop: the caller passes the counties it may
import into, and every clean row is written, already encrypted, to a staging file.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.crypto import FieldCipher, mask_id_number, mask_phone
from backend.services.idcard import InvalidIdNumber, parse_id_number
from backend.settings import Settings

#: the batch keeps this many error rows; error_count still counts them all
MAX_REPORTED = 2000
#: what the error list shows in the column cell of a problem with the whole file
FILE_COLUMN = "文件"
NO_DATA_REASON = "文件中没有数据行。"

ID_PURPOSE = "veteran.id_number"
PHONE_PURPOSE = "veteran.phone"

# Accepted header spellings, compared after removing spaces, asterisks and brackets.
HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字"),
    "id_number": ("身份证号", "身份证号码", "公民身份号码", "身份证"),
    "phone": ("手机号", "手机号码", "手机", "联系电话"),
    "county_code": ("安置地区划代码", "安置地代码", "安置地行政区划代码", "区划代码"),
    "pay_start_date": ("退役金起发日期", "起发日期", "退役金发放起始日期"),
    "party_member": ("是否党员", "党员"),
    "status": ("状态", "人员状态"),
    "status_date": ("状态日期", "状态变更日期"),
}
REQUIRED_COLUMNS = ("name", "id_number", "county_code", "pay_start_date", "party_member", "status")

STATUS_WORDS = {
    "在册": "active",
    "正常": "active",
    "active": "active",
    "暂停发放": "suspended",
    "暂停": "suspended",
    "suspended": "suspended",
    "已故": "deceased",
    "死亡": "deceased",
    "deceased": "deceased",
    "已迁出": "transferred",
    "迁出": "transferred",
    "transferred": "transferred",
}
STATUS_LABELS = {
    "active": "在册",
    "suspended": "暂停发放",
    "deceased": "已故",
    "transferred": "已迁出",
}
YES_WORDS = frozenset({"是", "y", "yes", "1", "true", "党员", "中共党员"})
NO_WORDS = frozenset({"否", "n", "no", "0", "false", "非党员", "群众"})

_DATE_TEXT = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")
_PHONE = re.compile(r"1[3-9]\d{9}")
_EXCEL_EPOCH = dt.date(1899, 12, 30)
_HEADER_SEARCH_ROWS = 10


@dataclass(frozen=True)
class ParseRules:
    """What the checks need from outside: scope, known counties, keys, today; picklable."""

    #: counties the importing staff member may import into, code to name
    in_scope: dict[str, str]
    #: every county code the Region table knows
    known: frozenset[str]
    #: the cipher is built from these where the parsing runs (it may be another process)
    settings: Settings
    today: dt.date


@dataclass
class ParseSummary:
    """The outcome of reading a file: rows seen, rows staged and every error."""

    total_rows: int = 0
    staged: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)


class _RowError(ValueError):
    def __init__(self, field_key: str, reason: str) -> None:
        super().__init__(reason)
        self.field_key = field_key
        self.reason = reason


def parse_to_staging(data: bytes, filename: str, rules: ParseRules, staging: Path) -> ParseSummary:
    """Check every row; write the clean ones (encrypted) to staging as JSON lines."""
    summary = ParseSummary()
    cipher = FieldCipher(rules.settings)
    try:
        rows = _open_rows(data, filename)
        with staging.open("w", encoding="utf-8") as out:
            _check_rows(rows, rules, cipher, summary, out)
    except _FileError as exc:
        summary.errors.append(
            {"row": None, "field": "file", "column": FILE_COLUMN, "reason": exc.reason}
        )
    return summary


class _FileError(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _open_rows(data: bytes, filename: str) -> Iterator[tuple[Any, ...]]:
    suffix = Path(filename.lower()).suffix
    if suffix == ".xlsx":
        return _xlsx_rows(data)
    if suffix == ".csv":
        return _csv_rows(data)
    if suffix in (".xls", ".et", ".wps"):
        raise _FileError("不支持旧版Excel文件（.xls），请在Excel中“另存为”.xlsx格式后上传。")
    raise _FileError("只能上传.xlsx或.csv格式的名册文件。")


def _xlsx_rows(data: bytes) -> Iterator[tuple[Any, ...]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise _FileError("文件无法作为.xlsx读取，请确认文件未损坏，并用Excel重新保存。") from exc
    if not book.worksheets:
        raise _FileError("文件中没有工作表。")
    sheet = book.worksheets[0]

    def rows() -> Iterator[tuple[Any, ...]]:
        try:
            yield from sheet.iter_rows(values_only=True)
        finally:
            book.close()

    return rows()


def _csv_rows(data: bytes) -> Iterator[tuple[Any, ...]]:
    encoding = _csv_encoding(data)
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
    return (tuple(record) for record in csv.reader(text))


def _csv_encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM) first; otherwise GB18030, which covers Excel's GBK."""
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    try:
        data.decode("gb18030")
    except UnicodeDecodeError:
        raise _FileError(
            "无法识别文件编码，请在Excel中另存为“CSV UTF-8”或.xlsx格式后上传。"
        ) from None
    return "gb18030"


def _header_key(value: Any) -> str:
    text = unicodedata.normalize("NFKC", str(value or ""))
    return re.sub(r"[\s*()（）:：]", "", text)


def _find_header(
    rows: Iterator[tuple[Any, ...]],
) -> tuple[int, dict[str, int], dict[str, str]]:
    """The header row (within the first rows, below any title), its columns and labels."""
    aliases = {alias: key for key, names in HEADERS.items() for alias in names}
    for number, row in enumerate(rows, start=1):
        columns: dict[str, int] = {}
        labels: dict[str, str] = {}
        for index, cell in enumerate(row):
            key = aliases.get(_header_key(cell))
            if key and key not in columns:
                columns[key] = index
                labels[key] = str(cell).strip()
        if "name" in columns and "id_number" in columns:
            missing = [HEADERS[key][0] for key in REQUIRED_COLUMNS if key not in columns]
            if missing:
                raise _FileError(f"第{number}行表头缺少以下列：{'、'.join(missing)}。")
            return number, columns, labels
        if number >= _HEADER_SEARCH_ROWS:
            break
    raise _FileError("没有找到表头。第一行应为列名：" + "、".join(h[0] for h in HEADERS.values()))


def _check_rows(
    rows: Iterator[tuple[Any, ...]],
    rules: ParseRules,
    cipher: FieldCipher,
    summary: ParseSummary,
    out: Any,
) -> None:
    header_row, columns, labels = _find_header(rows)
    seen: dict[str, int] = {}
    flagged: set[int] = set()
    for number, row in enumerate(rows, start=header_row + 1):
        cells = {key: row[index] if index < len(row) else None for key, index in columns.items()}
        if all(_blank(value) for value in cells.values()):
            continue
        summary.total_rows += 1
        problems: list[_RowError] = []
        staged = _check_row(cells, rules, problems)
        if staged is not None:
            first = seen.get(staged["_id"])
            if first is None:
                seen[staged["_id"]] = number
            else:
                problems.append(_RowError("id_number", f"身份证号与第{first}行重复。"))
                if first not in flagged:
                    flagged.add(first)
                    summary.errors.append(
                        _error(first, "id_number", labels, f"身份证号与第{number}行重复。")
                    )
        for problem in problems:
            summary.errors.append(_error(number, problem.field_key, labels, problem.reason))
        if staged is not None and not problems and not summary.errors:
            # Once a row is bad the file is rejected: stop encrypting, keep checking.
            out.write(json.dumps(_stage(staged, number, cipher), ensure_ascii=False) + "\n")
            summary.staged += 1
    if summary.total_rows == 0:
        # A header alone (say, the blank template) would preview "0 people" with an apply button.
        raise _FileError(NO_DATA_REASON)


def _error(row: int, key: str, labels: dict[str, str], reason: str) -> dict[str, Any]:
    return {"row": row, "field": key, "column": labels.get(key, HEADERS[key][0]), "reason": reason}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not _clean_text(value))


def _clean_text(value: str) -> str:
    text = unicodedata.normalize("NFKC", value)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc"))
    return " ".join(text.split())


def _check_row(
    cells: dict[str, Any], rules: ParseRules, problems: list[_RowError]
) -> dict[str, Any] | None:
    """Every field of one row; problems collects each bad field, the result is None if any."""
    values: dict[str, Any] = {}
    checks = (
        ("name", _name),
        ("_id", lambda v: _id_number(v, rules.today)),
        ("phone", _phone),
        ("county_code", lambda v: _county(v, rules)),
        ("pay_start_date", lambda v: _date(v, "pay_start_date", "退役金起发日期", rules.today)),
        ("party_member", _party),
        ("status", _status),
    )
    for key, check in checks:
        source = "id_number" if key == "_id" else key
        try:
            values[key] = check(cells.get(source))
        except _RowError as exc:
            problems.append(exc)
    try:
        values["status_date"] = _status_date(cells.get("status_date"), values, rules.today)
    except _RowError as exc:
        problems.append(exc)
    if problems:
        return None
    if values["pay_start_date"] < values["_id"].birth_date:
        problems.append(_RowError("pay_start_date", "退役金起发日期早于出生日期。"))
        return None
    return values


def _name(value: Any) -> str:
    text = _clean_text(str(value)) if value is not None else ""
    if not text:
        raise _RowError("name", "姓名未填写。")
    if len(text) > 64:
        raise _RowError("name", "姓名过长（最多64个字）。")
    return text


def _id_number(value: Any, today: dt.date) -> Any:
    try:
        return parse_id_number(value, today)
    except InvalidIdNumber as exc:
        raise _RowError("id_number", exc.reason) from None


def _phone(value: Any) -> str | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _clean_text(str(value)) if value is not None else ""
    text = re.sub(r"[\s\-()（）]", "", text)
    if not text:
        return None
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("0086"):
        text = text[4:]
    elif text.startswith("86") and len(text) == 13:
        text = text[2:]
    if not _PHONE.fullmatch(text):
        raise _RowError("phone", "手机号应为11位大陆手机号码（1开头）。")
    return text


def _county(value: Any, rules: ParseRules) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _clean_text(str(value)).replace(" ", "") if value is not None else ""
    if not text:
        raise _RowError("county_code", "安置地区划代码未填写。")
    if not re.fullmatch(r"\d{6}", text):
        raise _RowError("county_code", "安置地区划代码应为6位数字。")
    if text not in rules.known:
        raise _RowError("county_code", f"安置地区划代码{text}不是已登记的县（市、区）代码。")
    if text not in rules.in_scope:
        raise _RowError(
            "county_code", f"安置地（{text}）不在您的管辖范围内，只能导入本辖区的人员。"
        )
    return text


def _date(value: Any, key: str, label: str, today: dt.date) -> dt.date:
    """Excel date cells, serial numbers, 2023-01-05, 2023/1/5, 2023年1月5日, 20230105."""
    if isinstance(value, dt.datetime):
        result = value.date()
    elif isinstance(value, dt.date):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = _date_from_number(value, key, label)
    else:
        result = _date_from_text(_clean_text(str(value)) if value is not None else "", key, label)
    if result.year < 1900:
        raise _RowError(key, f"{label}早于1900年，请核对。")
    if result > today:
        raise _RowError(key, f"{label}晚于今天，请核对。")
    return result


def _date_from_number(value: float, key: str, label: str) -> dt.date:
    if not float(value).is_integer():
        raise _RowError(key, f"{label}格式不正确。")
    number = int(value)
    if 19000101 <= number <= 29991231:
        return _date_from_text(str(number), key, label)
    if 1 <= number < 2958466:
        # A date cell Excel shows unformatted: days since 1899-12-30.
        return _EXCEL_EPOCH + dt.timedelta(days=number)
    raise _RowError(key, f"{label}格式不正确。")


def _date_from_text(text: str, key: str, label: str) -> dt.date:
    if not text:
        raise _RowError(key, f"{label}未填写。")
    text = text.split(" ")[0] if re.match(r"\d{4}-\d{2}-\d{2} \d", text) else text
    match = _DATE_TEXT.fullmatch(text)
    if match:
        parts = match.groups()
    elif re.fullmatch(r"\d{8}", text):
        parts = (text[:4], text[4:6], text[6:])
    else:
        raise _RowError(key, f"{label}格式不正确，请写成2023-01-05这样的日期。")
    try:
        return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        raise _RowError(key, f"{label}不是有效日期。") from None


def _party(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _clean_text(str(value)).lower() if value is not None else ""
    if text in YES_WORDS:
        return True
    if text in NO_WORDS:
        return False
    if not text:
        raise _RowError("party_member", "是否党员未填写（填“是”或“否”）。")
    raise _RowError("party_member", "是否党员只能填“是”或“否”。")


def _status(value: Any) -> str:
    text = _clean_text(str(value)).lower() if value is not None else ""
    if not text:
        raise _RowError("status", "状态未填写。")
    status = STATUS_WORDS.get(text)
    if status is None:
        raise _RowError("status", "状态只能填：在册、暂停发放、已故、已迁出。")
    return status


def _status_date(value: Any, values: dict[str, Any], today: dt.date) -> dt.date | None:
    if _blank(value):
        status = values.get("status")
        if status is None or status == "active":
            return None
        raise _RowError("status_date", f"状态为“{STATUS_LABELS[status]}”时须填写状态日期。")
    return _date(value, "status_date", "状态日期", today)


def _stage(values: dict[str, Any], number: int, cipher: FieldCipher) -> dict[str, Any]:
    """The row as it will be stored: ID and phone encrypted, hashed and masked."""
    number_18: str = values["_id"].number
    phone: str | None = values["phone"]
    return {
        "row": number,
        "name": values["name"],
        "id_cipher": cipher.encrypt(number_18, ID_PURPOSE),
        "id_hash": cipher.lookup_hash(number_18, ID_PURPOSE),
        "id_masked": mask_id_number(number_18),
        "birth_date": values["_id"].birth_date.isoformat(),
        "phone_cipher": cipher.encrypt(phone, PHONE_PURPOSE) if phone else None,
        "phone_hash": cipher.lookup_hash(phone, PHONE_PURPOSE) if phone else None,
        "phone_masked": mask_phone(phone) if phone else None,
        "county_code": values["county_code"],
        "pay_start_date": values["pay_start_date"].isoformat(),
        "party_member": values["party_member"],
        "status": values["status"],
        "status_date": values["status_date"].isoformat() if values["status_date"] else None,
    }
