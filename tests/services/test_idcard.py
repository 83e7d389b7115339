"""GB 11643 ID numbers: cleaning what spreadsheets mangle, check digits, birth dates."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.services.idcard import (
    EXCEL_NUMBER_REASON,
    InvalidIdNumber,
    check_digit,
    parse_id_number,
    upgrade_15,
)

# Published GB 11643 example: 11010519491231002X, a woman born 31 December 1949.
VALID = "11010519491231002X"
TODAY = dt.date(2026, 3, 1)


def reason_for(raw: object) -> str:
    with pytest.raises(InvalidIdNumber) as caught:
        parse_id_number(raw, TODAY)
    return caught.value.reason


def test_valid_number_gives_birth_date_and_gender() -> None:
    result = parse_id_number(VALID, TODAY)

    assert result.number == VALID
    assert result.birth_date == dt.date(1949, 12, 31)
    assert result.gender == "female"
    assert not result.converted_from_15


def test_odd_seventeenth_digit_is_male() -> None:
    first17 = "14010519800101001"
    assert parse_id_number(first17 + check_digit(first17), TODAY).gender == "male"


@pytest.mark.parametrize(
    "mangled",
    [
        "11010519491231002x",  # lower-case x
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width digits and letter
        "１１０１０５１９４９１２３１００２ｘ",  # full-width lower-case x
        "'11010519491231002X",  # Excel's force-text apostrophe
        "＇11010519491231002X",  # full-width apostrophe
        " 11010519491231002X ",
        "\u00a011010519491231002X",  # no-break space
        "11010519491231002X\u200b",  # zero-width space
        "\u300011010519491231002X",  # ideographic space
        "\ufeff11010519491231002X",  # byte-order mark pasted from a file
        "110105 19491231 002X",  # spaces typed for readability
        "\t11010519491231002X\r\n",
    ],
)
def test_spreadsheet_mangling_is_cleaned(mangled: str) -> None:
    assert parse_id_number(mangled, TODAY).number == VALID


def test_area_code_is_never_checked_against_current_divisions() -> None:
    # 142301 was Lüliang prefecture's Lishi, a code that no longer exists; IDs keep it.
    first17 = "14230119700101001"
    number = first17 + check_digit(first17)
    assert parse_id_number(number, TODAY).number == number


@pytest.mark.parametrize(
    "excel_value",
    [
        1.40105196001010e17,  # a float cell
        140105196001010000,  # an int cell
        "1.40105E+17",  # what Excel shows and a CSV export writes
        "1.40105196001E+17",
        "140105196001010000",  # 18 digits ending in 000 after float rounding
        "140105196001010000.0",
    ],
)
def test_number_stored_by_excel_is_refused_with_how_to_fix(excel_value: object) -> None:
    reason = reason_for(excel_value)
    assert reason == EXCEL_NUMBER_REASON
    assert "文本" in reason


def test_real_number_ending_in_000_with_right_check_digit_is_accepted() -> None:
    candidates = (
        f"1401051960{month:02d}{day:02d}{seq:03d}"
        for month in range(1, 13)
        for day in range(1, 29)
        for seq in range(100, 1000, 100)
    )
    number = next(c + "0" for c in candidates if check_digit(c) == "0")
    assert number.endswith("000")
    assert parse_id_number(number, TODAY).number == number


def test_wrong_check_digit_is_refused() -> None:
    assert "校验位" in reason_for("110105194912310021")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("", "为空"),
        ("   ", "为空"),
        (None, "为空"),
        ("1101051949123100", "16位"),
        ("1101051949123100212", "19位"),
        ("11010519491231002-", "只能由数字"),
        ("1101051949X231002X", "最后一位"),
        ("11010549123100X", "15位"),
    ],
)
def test_malformed_numbers_are_refused_with_a_reason(raw: object, words: str) -> None:
    assert words in reason_for(raw)


@pytest.mark.parametrize(
    ("birth", "words"),
    [("19490230", "不是有效日期"), ("18991231", "早于1900年"), ("20260302", "晚于今天")],
)
def test_impossible_birth_dates_are_refused(birth: str, words: str) -> None:
    first17 = f"110105{birth}002"
    assert words in reason_for(first17 + check_digit(first17))


def test_legacy_15_digit_number_is_converted_to_18() -> None:
    result = parse_id_number("110105491231002", TODAY)

    assert result.number == VALID
    assert result.converted_from_15
    assert result.birth_date == dt.date(1949, 12, 31)


def test_legacy_15_digit_number_with_bad_date_is_refused() -> None:
    assert "不是有效日期" in reason_for("110105491331002")


digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
areas = st.from_regex(r"[1-8][0-9]{5}", fullmatch=True)
births = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(1999, 12, 31))
sequences = st.integers(min_value=0, max_value=999)


@given(areas, births, sequences)
def test_any_number_with_its_computed_check_digit_is_accepted(
    area: str, birth: dt.date, seq: int
) -> None:
    first17 = f"{area}{birth:%Y%m%d}{seq:03d}"
    result = parse_id_number(first17 + check_digit(first17), TODAY)
    assert result.birth_date == birth


@given(areas, births, sequences, st.integers(min_value=0, max_value=16), st.integers(1, 9))
def test_changing_any_one_digit_breaks_the_check(
    area: str, birth: dt.date, seq: int, position: int, delta: int
) -> None:
    first17 = f"{area}{birth:%Y%m%d}{seq:03d}"
    changed = first17[:position] + str((int(first17[position]) + delta) % 10)
    changed += first17[position + 1 :]
    # MOD 11-2 detects every single-digit substitution.
    assert check_digit(changed) != check_digit(first17)


@given(areas, births, sequences)
def test_15_to_18_conversion_round_trips(area: str, birth: dt.date, seq: int) -> None:
    legacy = f"{area}{birth:%y%m%d}{seq:03d}"
    upgraded = upgrade_15(legacy)

    assert len(upgraded) == 18
    assert upgraded[:6] + upgraded[8:17] == legacy
    assert upgraded[17] == check_digit(upgraded[:17])
    assert parse_id_number(legacy, TODAY).number == upgraded


@given(areas, births, sequences)
def test_full_width_form_parses_like_ascii(area: str, birth: dt.date, seq: int) -> None:
    first17 = f"{area}{birth:%Y%m%d}{seq:03d}"
    number = first17 + check_digit(first17)
    wide = "".join(chr(ord(ch) + 0xFEE0) for ch in number)
    assert parse_id_number(wide, TODAY).number == number
