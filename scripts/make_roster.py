"""Generate a roster of invented veterans (xlsx or csv) for the demo, tests and the benchmark.

Names are obviously fake (测试甲一…), ID numbers have valid check digits, phones are in
the 170 range. --bad N mixes in N deliberately broken rows of assorted kinds.

    python scripts/make_roster.py 100000 roster.xlsx
    python scripts/make_roster.py 30 roster.csv --encoding gbk --bad 5
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

# Run as a script from anywhere: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.services.idcard import check_digit
from backend.services.regions import COUNTIES

HEADERS = (
    "姓名",
    "身份证号",
    "手机号",
    "安置地区划代码",
    "退役金起发日期",
    "是否党员",
    "状态",
    "状态日期",
)
_STEMS = "甲乙丙丁戊己庚辛壬癸"
_DIGITS = "一二三四五六七八九十"
_STATUSES = (("在册", 90), ("暂停发放", 4), ("已故", 3), ("已迁出", 3))
DEFAULT_COUNTIES = tuple(code for counties in COUNTIES.values() for code, _ in counties)


def fake_name(index: int) -> str:
    """测试 plus two or more syllables, unique per index."""
    digits = []
    value = index
    while True:
        digits.append(_DIGITS[value % 10])
        value //= 10
        if not value:
            break
    return "测试" + _STEMS[index % 10] + "".join(reversed(digits))


def fake_id(area: str, birth: dt.date, sequence: int) -> str:
    """A valid 18-digit ID number for the given area, birth date and sequence (0-999)."""
    first17 = f"{area}{birth:%Y%m%d}{sequence % 1000:03d}"
    return first17 + check_digit(first17)


def make_rows(
    count: int,
    counties: Sequence[str] = DEFAULT_COUNTIES,
    *,
    seed: int = 1,
    bad: int = 0,
) -> Iterator[list[object]]:
    """Rows of text cells (as a clerk would type them), with `bad` broken rows spread in."""
    rng = random.Random(seed)
    bad_at = set(rng.sample(range(count), min(bad, count))) if bad else set()
    statuses = [s for s, _ in _STATUSES]
    weights = [w for _, w in _STATUSES]
    for index in range(count):
        place = index % len(counties)
        county = counties[place]
        # Per county, (birth date, sequence) never repeats below 511,000 rows:
        # 7919 is prime, so k * 7919 mod 12775 only repeats with k's sequence every 511,000.
        k = index // len(counties)
        birth = dt.date(1960, 1, 1) + dt.timedelta(days=(k * 7919 + place * 389) % 12775)
        id_number = fake_id(county, birth, k % 1000)
        status = rng.choices(statuses, weights)[0]
        row: list[object] = [
            fake_name(index),
            id_number,
            f"170{index:08d}"[-11:],
            county,
            f"{2015 + index % 10}-{1 + index % 12:02d}-01",
            "是" if index % 3 == 0 else "否",
            status,
            "" if status == "在册" else "2024-06-30",
        ]
        if index in bad_at:
            _break(row, rng)
        yield row


def _break(row: list[object], rng: random.Random) -> None:
    kind = rng.randrange(6)
    if kind == 0:
        text = str(row[1])
        row[1] = text[:17] + ("0" if text[17] != "0" else "1")  # wrong check digit
    elif kind == 1:
        row[1] = f"{float(str(row[1])[:17] + '0'):.5E}"  # what Excel shows for a number
    elif kind == 2:
        row[3] = "999999"  # unknown county
    elif kind == 3:
        row[2] = "1380013800"  # ten digits
    elif kind == 4:
        row[0] = ""
    else:
        row[4] = "2023-02-30"


def write_xlsx(path: Path, rows: Iterator[list[object]]) -> None:
    """Write with openpyxl's streaming writer; ID and phone cells are text, as they must be."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("名册")
    sheet.append(list(HEADERS))
    for row in rows:
        sheet.append(row)
    book.save(path)


def write_csv(path: Path, rows: Iterator[list[object]], encoding: str = "utf-8-sig") -> None:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("output", type=Path, help="ends in .xlsx or .csv")
    parser.add_argument("--bad", type=int, default=0, help="number of broken rows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--counties", default="", help="comma-separated county codes")
    parser.add_argument("--encoding", default="utf-8-sig", help="csv only: utf-8-sig or gbk")
    args = parser.parse_args(argv)

    counties = tuple(args.counties.split(",")) if args.counties else DEFAULT_COUNTIES
    rows = make_rows(args.count, counties, seed=args.seed, bad=args.bad)
    if args.output.suffix == ".xlsx":
        write_xlsx(args.output, rows)
    elif args.output.suffix == ".csv":
        write_csv(args.output, rows, args.encoding)
    else:
        parser.error("output must end in .xlsx or .csv")
    print(f"wrote {args.count} rows to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
