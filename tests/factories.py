"""Test data in one place: regions, staff and veterans built the way the service stores them.

A shared file: add factories, keep the signatures of the ones already here.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from argon2 import PasswordHasher

from backend import context
from backend.crypto import mask_id_number, mask_phone
from backend.models import Region, StaffUser, Veteran
from backend.services.idcard import check_digit
from backend.services.regions import seed_regions

#: 小店区, 太原市 — the default county of factory veterans and staff
COUNTY = "140105"
CITY = "140100"
PROVINCE = "140000"
OTHER_COUNTY = "140212"  # 新荣区, 大同市: outside Taiyuan's scope

_seq = itertools.count(1)


def fake_id_number(seq: int | None = None, birth: dt.date = dt.date(1980, 5, 17)) -> str:
    """A made-up 18-digit ID number with a valid check digit, unique per sequence number."""
    n = next(_seq) if seq is None else seq
    first17 = f"140105{birth:%Y%m%d}{n % 1000:03d}"
    return first17 + check_digit(first17)


def fake_phone(seq: int | None = None) -> str:
    """A made-up mainland mobile number."""
    n = next(_seq) if seq is None else seq
    return f"139{n % 100_000_000:08d}"


async def make_region_tree() -> None:
    """Shanxi, its cities and the seeded counties."""
    await seed_regions()


async def make_veteran(**overrides: Any) -> Veteran:
    """A roster entry; pass id_number and phone in clear (phone=None for no phone on file)."""
    cipher = context.current().cipher
    n = next(_seq)
    # Defaults come from their own birth dates and phone prefix, so they never equal the
    # numbers a test picks with fake_id_number(seq) / fake_phone(seq).
    birth = dt.date(1975, 1, 1) + dt.timedelta(days=n % 1900)
    id_number = overrides.pop("id_number", None) or fake_id_number(n, birth)
    phone = overrides.pop("phone", f"136{n % 100_000_000:08d}")
    values: dict[str, Any] = {
        "name": f"测试{n}号",
        "id_cipher": cipher.encrypt(id_number, "veteran.id_number"),
        "id_hash": cipher.lookup_hash(id_number, "veteran.id_number"),
        "id_masked": mask_id_number(id_number),
        "phone_cipher": cipher.encrypt(phone, "veteran.phone") if phone else None,
        "phone_hash": cipher.lookup_hash(phone, "veteran.phone") if phone else None,
        "phone_masked": mask_phone(phone) if phone else "",
        "birth_date": dt.date(int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14])),
        "county_code": COUNTY,
        "pay_start_date": dt.date(2020, 1, 1),
        "status": "active",
    }
    values.update(overrides)
    return await Veteran.create(**values)


async def make_staff(
    region_code: str = COUNTY,
    *,
    username: str | None = None,
    role: str = "clerk",
    password: str | None = None,
) -> StaffUser:
    """A staff member of a region (seed the regions first); the region comes fetched."""
    name = username or f"staff{next(_seq)}"
    password_hash = PasswordHasher().hash(password) if password else "-"
    staff = await StaffUser.create(
        username=name,
        display_name=name,
        password_hash=password_hash,
        role=role,
        region_id=region_code,
    )
    staff.region = await Region.get(code=region_code)
    return staff


PORTAL_PASSWORD = "Portal-pass-2026"


async def portal_login(client: Any, username: str, password: str = PORTAL_PASSWORD) -> str:
    """Log a staff member into the portal over HTTP; returns the session's CSRF token.

    `client` is the httpx.AsyncClient of the `client` fixture; it keeps the session cookie.
    """
    import re

    page = await client.get("/portal/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, "login page has no CSRF field"
    response = await client.post(
        "/portal/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
    )
    assert response.status_code == 303, response.text[:500]
    home = await client.get("/portal/")
    found = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert found is not None, "portal home page has no CSRF field"
    return found.group(1)


#: a reported year whose default window (Jan–Mar 2026) lies in the past of the test run
REPORT_YEAR = 2025
IN_WINDOW = dt.date(2026, 2, 10)


def registration_content(**overrides: Any) -> dict[str, Any]:
    """A complete registration content with one trip to Hong Kong in REPORT_YEAR."""
    content: dict[str, Any] = {
        "trips": [
            {
                "departed_on": "2025-07-01",
                "returned_on": "2025-07-10",
                "destination_kind": "hmt",
                "destination": "香港",
                "purpose": "探亲",
            }
        ],
        "remarks": "",
    }
    content.update(overrides)
    return content


async def make_submitted_registration(
    veteran: Veteran, year: int = REPORT_YEAR, content: dict[str, Any] | None = None
) -> Any:
    """The veteran's registration for the year, submitted online inside the default window."""
    from backend.services import registrations

    return await registrations.submit(
        veteran,
        year,
        content if content is not None else registration_content(),
        today=dt.date(year + 1, 2, 10),
    )
