"""Citizen ID numbers (GB 11643): clean what spreadsheets mangle, then validate.

Decisions worth knowing:

- The area code (first six digits) is never checked against current division
  codes: an ID keeps the code of the office that issued it, and many of those
  codes have since been merged or renamed.
- 15-digit numbers (issued before 1999) are converted to 18 digits: "19" goes
  before the two-digit year and the check digit is computed. Every holder of a
  15-digit number was born in the 1900s, so the conversion is exact; callers
  store only the 18-digit form, so one person never has two keys.
- A number Excel stored as a number has lost its last digits (Excel keeps 15
  significant digits). Such a cell is refused with a sentence telling the
  clerk how to fix the column. An 18-digit string ending in 000 is only
  blamed on Excel when its check digit is wrong, because a real ID can end
  in 000.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NoReturn

Gender = Literal["male", "female"]

# ISO 7064 MOD 11-2 weights of the first 17 digits and the check characters.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

# Characters a spreadsheet or a copy from a web page leaves around a number.
_QUOTES = "'‘’`\"“”"
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?E\+?\d+$")

EXCEL_NUMBER_REASON = (
    "身份证号被Excel当作数字保存，末尾几位已丢失。"
    "请把这一列的单元格格式设置为“文本”，再重新录入或粘贴身份证号后上传。"
)


class InvalidIdNumber(ValueError):
    """The value is not a usable ID number; `reason` is a Chinese sentence for the clerk."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IdNumber:
    """A valid 18-digit ID number and what it tells about its holder."""

    number: str
    birth_date: dt.date
    gender: Gender
    #: the input was a legacy 15-digit number
    converted_from_15: bool = False


def check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError("need exactly 17 ASCII digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def upgrade_15(number15: str) -> str:
    """Convert a legacy 15-digit number to its 18-digit form."""
    if len(number15) != 15 or not number15.isascii() or not number15.isdigit():
        raise ValueError("need exactly 15 ASCII digits")
    first17 = number15[:6] + "19" + number15[6:]
    return first17 + check_digit(first17)


def clean(raw: str) -> str:
    """Undo what spreadsheets do to an ID typed as text; does not validate."""
    # NFKC turns full-width digits and letters (０-９, ｘ) and U+3000 into ASCII.
    text = unicodedata.normalize("NFKC", raw)
    # Drop every whitespace and invisible format character (U+200B, U+FEFF, ...).
    text = "".join(
        ch for ch in text if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc")
    )
    # Excel's "force text" apostrophe, and quotes pasted from documents.
    text = text.strip(_QUOTES)
    return text.upper()


def parse_id_number(raw: object, today: dt.date | None = None) -> IdNumber:
    """Clean and validate an ID number from a form or a spreadsheet cell."""
    if isinstance(raw, bool) or raw is None:
        raise InvalidIdNumber("身份证号为空。")
    if isinstance(raw, int | float | Decimal):
        # The cell is numeric: Excel kept 15 significant digits at most.
        raise InvalidIdNumber(EXCEL_NUMBER_REASON)
    if not isinstance(raw, str):
        raise InvalidIdNumber("身份证号格式不正确。")

    text = clean(raw)
    if not text:
        raise InvalidIdNumber("身份证号为空。")
    if _SCIENTIFIC.match(text):
        raise InvalidIdNumber(EXCEL_NUMBER_REASON)
    if text.endswith(".0") and text[:-2].isdigit():
        raise InvalidIdNumber(EXCEL_NUMBER_REASON)
    if not re.fullmatch(r"\d{17}[\dX]|\d{15}", text):
        _refuse_shape(text)

    converted = len(text) == 15
    number = upgrade_15(text) if converted else text
    if not converted and check_digit(number[:17]) != number[17]:
        if number.endswith("000"):
            raise InvalidIdNumber(EXCEL_NUMBER_REASON)
        raise InvalidIdNumber("身份证号校验位不正确，请核对是否有数字录错。")

    birth = _birth_date(number, today or dt.date.today())
    gender: Gender = "male" if int(number[16]) % 2 else "female"
    return IdNumber(number, birth, gender, converted)


def _refuse_shape(text: str) -> NoReturn:
    if not re.fullmatch(r"[\dX]+", text):
        raise InvalidIdNumber("身份证号只能由数字和末位的X组成，请删除其他字符。")
    if "X" in text[:-1]:
        raise InvalidIdNumber("身份证号中的X只能出现在最后一位。")
    if len(text) == 15 and text.endswith("X"):
        raise InvalidIdNumber("15位身份证号不能含有X。")
    raise InvalidIdNumber(f"身份证号应为18位（旧版为15位），这里是{len(text)}位。")


def _birth_date(number: str, today: dt.date) -> dt.date:
    digits = number[6:14]
    try:
        birth = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise InvalidIdNumber(f"身份证号中的出生日期（{digits}）不是有效日期。") from None
    if birth.year < 1900:
        raise InvalidIdNumber(f"身份证号中的出生日期（{digits}）早于1900年。")
    if birth > today:
        raise InvalidIdNumber(f"身份证号中的出生日期（{digits}）晚于今天。")
    return birth
