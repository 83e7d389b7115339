"""The demo command and the walk-through: a newcomer's first run, end to end over loopback HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend import demo, walkthrough
from backend.services.idcard import parse_id_number
from tests.conftest import TEST_DB, free_port

ROOT = Path(__file__).resolve().parents[1]
on_sqlite_only = pytest.mark.skipif(
    TEST_DB == "mariadb", reason="the demo refuses every database but its own SQLite file"
)


@dataclass
class RunningDemo:
    process: asyncio.subprocess.Process
    base_url: str
    standin_url: str
    banner: str
    passwords: dict[str, str]


def _demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(APP_LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra)
    return env


async def _start_demo(data_dir: Path, log: Path) -> RunningDemo:
    port, standin_port = free_port(), free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.cli",
        "demo",
        "--port",
        str(port),
        "--standin-port",
        str(standin_port),
        "--data-dir",
        str(data_dir),
        cwd=ROOT,
        env=_demo_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=log.open("ab"),
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("下一步"):
        raw = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        if not raw:
            pytest.fail(f"the demo exited early:\n{''.join(lines)}\n{log.read_text()[-3000:]}")
        lines.append(raw.decode())
    passwords = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 4 and parts[0].startswith("demo_") and parts[3].isalnum():
            passwords[parts[0]] = parts[3]
    base = f"http://127.0.0.1:{port}"
    return RunningDemo(process, base, f"http://127.0.0.1:{standin_port}", "".join(lines), passwords)


async def _stop(running: RunningDemo) -> int:
    running.process.send_signal(signal.SIGINT)
    return await asyncio.wait_for(running.process.wait(), timeout=30)


def test_demo_veterans_are_invented_with_valid_id_numbers() -> None:
    veterans = demo.demo_veterans()

    assert len(veterans) == 30
    assert all(v.name.startswith("演示") for v in veterans)
    assert all(v.phone.startswith("1990000") for v in veterans)
    assert all(parse_id_number(v.id_number).number == v.id_number for v in veterans)
    assert len({v.id_number for v in veterans}) == len({v.openid for v in veterans}) == 30
    assert {v.status for v in veterans} == {"active", "suspended", "deceased", "transferred"}


def test_demo_window_of_last_year_includes_today_and_spans_at_most_a_year() -> None:
    import datetime as dt

    for today in (dt.date(2026, 12, 4), dt.date(2027, 2, 10), dt.date(2027, 6, 30)):
        year, opens, closes = demo._demo_window(today)

        assert year == today.year - 1
        assert opens <= today <= closes
        assert (closes - opens).days <= 366


@on_sqlite_only
async def test_demo_refuses_any_database_but_its_own(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backend.cli",
        "demo",
        "--data-dir",
        str(tmp_path),
        cwd=ROOT,
        env=_demo_env(APP_DATABASE_URL="mysql://root:@127.0.0.1:3306/production"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 2
    assert "演示只使用自己的 SQLite 数据库" in err.decode()
    assert not (tmp_path / demo.DB_FILE).exists()


@pytest.mark.e2e
@on_sqlite_only
async def test_walkthrough_registration_is_approved_and_its_notification_delivered(
    tmp_path: Path,
) -> None:
    demo_dir = tmp_path / "demo-data"
    running = await _start_demo(demo_dir, tmp_path / "demo.log")
    try:
        clerk = f"demo_xiaodian_clerk:{running.passwords['demo_xiaodian_clerk']}"
        out = io.StringIO()
        result = await walkthrough.run(
            running.base_url, running.standin_url, approve_as=clerk, wait_seconds=30, out=out
        )
    finally:
        code = await _stop(running)

    assert code == 0
    assert len(running.passwords) == len(demo.DEMO_STAFF)
    assert "POST /api/v1/bindings" in out.getvalue()
    assert "通过小程序演示提交 🙂 <原样保存>" in out.getvalue()
    assert result.status == "submitted"
    assert result.delivered_msgid and int(result.delivered_msgid) > 2**53
    with sqlite3.connect(demo_dir / demo.DB_FILE) as conn:
        (status,) = conn.execute(
            "SELECT status FROM outbox_message WHERE object_id = ? AND event = ?",
            (result.registration_id, "registration.approved"),
        ).fetchone()
        (confirmed,) = conn.execute(
            "SELECT COUNT(*) FROM benefit_confirmation WHERE registration_id = ?",
            (result.registration_id,),
        ).fetchone()
    assert status == "delivered"
    assert confirmed == 1


@pytest.mark.e2e
@on_sqlite_only
async def test_demo_run_again_on_the_same_folder_adds_nothing_twice(
    tmp_path: Path,
) -> None:
    demo_dir = tmp_path / "demo-data"
    first = await _start_demo(demo_dir, tmp_path / "demo.log")
    assert await _stop(first) == 0
    counts_sql = (
        "SELECT (SELECT COUNT(*) FROM veteran), (SELECT COUNT(*) FROM staff_user),"
        " (SELECT COUNT(*) FROM region), (SELECT COUNT(*) FROM annual_registration),"
        " (SELECT COUNT(*) FROM roster_import_batch)"
    )
    with sqlite3.connect(demo_dir / demo.DB_FILE) as conn:
        before = conn.execute(counts_sql).fetchone()

    second = await _start_demo(demo_dir, tmp_path / "demo.log")
    assert await _stop(second) == 0

    with sqlite3.connect(demo_dir / demo.DB_FILE) as conn:
        after = conn.execute(counts_sql).fetchone()
        (override,) = conn.execute(
            "SELECT is_demo_override FROM registration_window WHERE reason = ?", (demo.DEMO_REASON,)
        ).fetchone()
    assert after == before
    assert before[0] == 30
    assert override == 1
    assert second.passwords == {}
    assert "首次运行时已打印" in second.banner
