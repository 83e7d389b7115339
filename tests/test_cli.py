"""The `vetsvc` command against the test database, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from backend.models import AuditLog, StaffUser
from backend.settings import Settings
from tests.factories import make_region_tree, make_staff

ROOT = Path(__file__).resolve().parents[1]


async def _vetsvc(settings: Settings, *args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        APP_DATABASE_URL=settings.db_url,
        APP_DATA_DIR=str(settings.data_dir),
        APP_LOG_LEVEL="INFO",
        VETSVC_STAFF_PASSWORD="Bootstrap-pass-2026",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.cli", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, output.decode()


async def test_create_staff_bootstraps_the_first_province_account(db_ready: Settings) -> None:
    await make_region_tree()

    code, output = await _vetsvc(
        db_ready, "create-staff", "--username", "province_admin", "--region", "140000"
    )

    assert code == 0, output
    created = await StaffUser.get(username="province_admin")
    assert (created.role, created.region_id) == ("lead", "140000")  # type: ignore[attr-defined]
    assert "Bootstrap-pass-2026" not in output


async def test_reset_totp_clears_a_province_account_from_the_shell(db_ready: Settings) -> None:
    await make_region_tree()
    lead = await make_staff("140000", role="lead")
    await StaffUser.filter(id=lead.id).update(totp_secret="v1:sealed", totp_last_step=7)

    code, output = await _vetsvc(
        db_ready, "reset-totp", "--username", lead.username, "--reason", "手机遗失"
    )

    assert code == 0, output
    assert (await StaffUser.get(id=lead.id)).totp_secret is None
    entry = await AuditLog.get(action="staff.totp_reset", object_id=str(lead.id))
    assert (entry.actor_type, entry.detail["reason"]) == ("system", "手机遗失")


async def test_reset_totp_names_an_unknown_account(db_ready: Settings) -> None:
    code, output = await _vetsvc(db_ready, "reset-totp", "--username", "nobody", "--reason", "x")

    assert code == 1
    assert "no staff account named nobody" in output
