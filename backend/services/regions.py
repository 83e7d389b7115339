"""Shanxi's administrative divisions (GB/T 2260) as seed data, and region scope checks."""

from __future__ import annotations

import logging

from backend.errors import NotFound
from backend.models.regions import Region, scope_prefix

logger = logging.getLogger(__name__)

PROVINCE = ("140000", "山西省")

CITIES: tuple[tuple[str, str], ...] = (
    ("140100", "太原市"),
    ("140200", "大同市"),
    ("140300", "阳泉市"),
    ("140400", "长治市"),
    ("140500", "晋城市"),
    ("140600", "朔州市"),
    ("140700", "晋中市"),
    ("140800", "运城市"),
    ("140900", "忻州市"),
    ("141000", "临汾市"),
    ("141100", "吕梁市"),
)

# Counties and districts by city: every one for the three cities the demo uses.
COUNTIES: dict[str, tuple[tuple[str, str], ...]] = {
    "140100": (
        ("140105", "小店区"),
        ("140106", "迎泽区"),
        ("140107", "杏花岭区"),
        ("140108", "尖草坪区"),
        ("140109", "万柏林区"),
        ("140110", "晋源区"),
        ("140121", "清徐县"),
        ("140122", "阳曲县"),
        ("140123", "娄烦县"),
        ("140181", "古交市"),
    ),
    "140200": (
        ("140212", "新荣区"),
        ("140213", "平城区"),
        ("140214", "云冈区"),
        ("140215", "云州区"),
        ("140221", "阳高县"),
        ("140222", "天镇县"),
        ("140223", "广灵县"),
        ("140224", "灵丘县"),
        ("140225", "浑源县"),
        ("140226", "左云县"),
    ),
    "140800": (
        ("140802", "盐湖区"),
        ("140821", "临猗县"),
        ("140822", "万荣县"),
        ("140823", "闻喜县"),
        ("140824", "稷山县"),
        ("140825", "新绛县"),
        ("140826", "绛县"),
        ("140827", "垣曲县"),
        ("140828", "夏县"),
        ("140829", "平陆县"),
        ("140830", "芮城县"),
        ("140881", "永济市"),
        ("140882", "河津市"),
    ),
}


def seed_rows() -> list[tuple[str, str, str, str | None]]:
    """Every seeded region as (code, name, level, parent code), parents first."""
    rows: list[tuple[str, str, str, str | None]] = [(*PROVINCE, "province", None)]
    rows += [(code, name, "city", PROVINCE[0]) for code, name in CITIES]
    for city, counties in COUNTIES.items():
        rows += [(code, name, "county", city) for code, name in counties]
    return rows


async def seed_regions() -> int:
    """Insert the regions that are missing; returns how many were added (0 on a re-run)."""
    existing = set(await Region.all().values_list("code", flat=True))
    added = 0
    for code, name, level, parent in seed_rows():
        if code in existing:
            continue
        await Region.create(code=code, name=name, level=level, parent_id=parent)
        added += 1
    if added:
        logger.info("seeded %d regions", added)
    return added


async def region_scope(code: str) -> str:
    """The code prefix that covers the region with this code and everything under it."""
    region = await Region.get_or_none(code=code)
    if region is None:
        raise NotFound("没有找到该行政区划。")
    return scope_prefix(region.code, region.level)


def covers(staff_region: Region, code: str) -> bool:
    """True when the code lies in the staff member's region or below (no database look-up)."""
    return code.startswith(staff_region.scope_prefix)


async def is_within(staff_region: Region, county_code: str) -> bool:
    """True when the code is a known county inside the staff member's region."""
    if not covers(staff_region, county_code):
        return False
    return await Region.filter(code=county_code, level="county").exists()


async def counties_within(staff_region: Region) -> dict[str, str]:
    """Known counties in the staff member's region or below, code to name."""
    rows = await Region.filter(
        level="county", code__startswith=staff_region.scope_prefix
    ).values_list("code", "name")
    return {code: name for code, name in rows}
