"""The portal's review flow driven once in headless Chromium: log in, return, resubmit, approve."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.models import AnnualRegistration, BenefitConfirmation, ReviewComment
from backend.services import registrations
from backend.settings import Settings
from tests.factories import (
    PORTAL_PASSWORD,
    REPORT_YEAR,
    make_region_tree,
    make_staff,
    make_submitted_registration,
    make_veteran,
    registration_content,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="no chromium binary (install Debian's chromium package to run the browser test)",
    ),
]


async def test_clerk_returns_then_approves_a_registration_in_the_browser(
    server: tuple[str, Settings],
) -> None:
    from playwright.async_api import async_playwright, expect

    base, _ = server
    await make_region_tree()
    await make_staff("140105", username="clerk1", password=PORTAL_PASSWORD)
    veteran = await make_veteran(name="浏览器测试员")
    reg = await make_submitted_registration(veteran)
    ARTIFACTS.mkdir(exist_ok=True)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(locale="zh-CN")
            await page.goto(f"{base}/portal/registrations")
            await expect(page).to_have_url(f"{base}/portal/login?next=%2Fportal%2Fregistrations")
            await page.fill("input[name=username]", "clerk1")
            await page.fill("input[name=password]", PORTAL_PASSWORD)
            await page.click("button[type=submit]")
            await expect(page.locator("h1")).to_have_text("年度登记审核")

            await page.select_option("select[name=year]", str(REPORT_YEAR))
            await page.click("form.filters button[type=submit]")
            await page.click(f"a[href='/portal/registrations/{reg.id}']")
            await expect(page.locator("#registration-status")).to_have_text("待审核")

            await page.fill("textarea[name=comment_trips]", "请补充返程日期和同行人员🙂")
            await page.click("#return-form button[type=submit]")
            await expect(page.locator(".flash-success")).to_contain_text("已退回补正")
            await expect(page.locator("#registration-status")).to_have_text("退回补正")
            await expect(page.locator("#section-trips")).to_contain_text("针对第1版")

            # The veteran corrects and resubmits from the mini-program (the service call).
            await registrations.submit(veteran, REPORT_YEAR, registration_content(remarks="已补充"))
            await page.reload()
            await expect(page.locator("#registration-status")).to_have_text("待审核")
            await page.click("#approve-form button[type=submit]")
            await expect(page.locator(".flash-success")).to_contain_text("已审核通过")
            await expect(page.locator("#registration-status")).to_have_text("审核通过")
            await page.screenshot(path=str(ARTIFACTS / "review_flow.png"), full_page=True)
        finally:
            await browser.close()

    saved = await AnnualRegistration.get(id=reg.id)
    assert (saved.status, saved.current_version) == ("approved", 2)
    assert await ReviewComment.filter(registration_id=reg.id, version__version_no=1).count() == 1
    assert await BenefitConfirmation.filter(registration_id=reg.id).count() == 1
