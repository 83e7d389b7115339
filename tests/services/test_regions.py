"""Shanxi seed data: every city has its counties, codes are well formed, seeding is idempotent."""

from __future__ import annotations

from backend.models import Region
from backend.services.regions import CITIES, COUNTIES, PROVINCE, seed_regions, seed_rows
from backend.settings import Settings


def test_every_city_has_at_least_one_county() -> None:
    assert set(COUNTIES) == {code for code, _ in CITIES}
    assert all(COUNTIES[code] for code, _ in CITIES)


def test_county_codes_lie_under_their_city_and_are_unique() -> None:
    codes = [code for code, _, _, _ in seed_rows()]
    assert len(codes) == len(set(codes))
    for city, counties in COUNTIES.items():
        for code, name in counties:
            assert code[:4] == city[:4] and code[4:] != "00", (code, name)
            # Development zones (xx7x) are statistical areas, not divisions.
            assert code[4] != "7", (code, name)


def test_reformed_divisions_have_their_current_codes() -> None:
    names = {code: name for counties in COUNTIES.values() for code, name in counties}
    assert names["140403"] == "潞州区"
    assert names["140404"] == "上党区"
    assert names["140405"] == "屯留区"
    assert names["140406"] == "潞城区"
    assert names["140703"] == "太谷区"
    assert names["140681"] == "怀仁市"
    # The codes these replaced are gone.
    assert not {"140402", "140421", "140424", "140481", "140624", "140726"} & set(names)
    # Shanxi has 117 county-level divisions.
    assert len(names) == 117


async def test_seed_regions_is_idempotent(db_ready: Settings) -> None:
    first = await seed_regions()
    again = await seed_regions()

    assert first == len(seed_rows()) == 1 + len(CITIES) + 117
    assert again == 0
    assert await Region.all().count() == first
    assert await Region.filter(level="county", parent_id="140400").count() == 12
    assert (await Region.get(code="140703")).parent_id == "140700"  # type: ignore[attr-defined]
    assert (await Region.get(code=PROVINCE[0])).level == "province"


async def test_seed_regions_adds_only_what_an_older_seed_lacked(db_ready: Settings) -> None:
    await seed_regions()
    await Region.filter(parent_id="141100").delete()

    added = await seed_regions()

    assert added == len(COUNTIES["141100"])
    assert await Region.filter(level="county").count() == 117
