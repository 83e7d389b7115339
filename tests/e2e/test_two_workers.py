"""The main flow over real HTTP with the service on two worker processes sharing MariaDB.

The server (`vetsvc serve --workers 2`), a separate dispatcher (`vetsvc dispatch`) and the
WeChat stand-in run as their own processes on loopback ports, so nothing can lean on one
process's memory: the access token, rate limits, sessions and the outbox all live in shared
stores. The mini-program side is played by the walk-through, the clerk's approval goes through
the portal's HTML forms, and the test ends when WeChat's delivery event has marked the message
delivered.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from backend import demo, walkthrough
from backend.settings import Settings
from tests.conftest import MARIADB_URL, TEST_DB, _mariadb_admin, _mariadb_answers, free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        TEST_DB != "mariadb", reason="the two-worker run belongs to the MariaDB pass"
    ),
]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        PYTHONUNBUFFERED="1",
        APP_ENV="development",
        APP_LOG_LEVEL="INFO",
        APP_DATA_DIR=str(settings.data_dir),
        APP_DATABASE_URL=settings.database_url,
        APP_COOKIE_SECURE="false",
        APP_WECHAT_API_BASE=settings.wechat_api_base,
        APP_WECHAT_APPID=settings.wechat_appid,
        APP_WECHAT_SECRET=settings.wechat_secret,
        APP_WECHAT_PUSH_TOKEN=settings.wechat_push_token,
        APP_WECHAT_AES_KEY=settings.wechat_aes_key,
        APP_WECHAT_MINIPROGRAM_STATE="developer",
    )
    return env


async def _spawn(log: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.cli", *args,
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def _wait_until_up(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    async with httpx.AsyncClient(timeout=2) as http:
        for _ in range(150):
            if process.returncode is not None:
                pytest.fail(f"{url} exited early:\n{log.read_text()[-4000:]}")
            try:
                if (await http.get(url)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    pytest.fail(f"{url} did not come up:\n{log.read_text()[-4000:]}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[str, str, dict[str, str]]]:
    if not _mariadb_answers():
        pytest.skip("MariaDB is not answering on 127.0.0.1:3306")
    name = f"vetsvc_e2e_{os.getpid()}"
    await _mariadb_admin(f"DROP DATABASE IF EXISTS {name}")
    await _mariadb_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    port, standin_port = free_port(), free_port()
    settings = replace(
        demo.demo_settings(tmp_path / "data", port, standin_port),
        database_url=f"{MARIADB_URL}{name}",
    )
    info = await demo.seed(settings)
    passwords = {account.username: account.password for account in info.accounts}
    env = _env(settings)
    log = tmp_path / "stack.log"
    base, standin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{standin_port}"
    processes = [
        await _spawn(log, env, "standin", "--port", str(standin_port),
                     "--push-url", f"{base}/wechat/push"),
        await _spawn(log, env, "serve", "--port", str(port), "--workers", "2"),
        await _spawn(log, env, "dispatch", "--worker-id", "e2e-dispatcher"),
    ]  # fmt: skip
    try:
        await _wait_until_up(f"{standin}/__standin__/sent", processes[0], log)
        await _wait_until_up(f"{base}/healthz", processes[1], log)
        # Sanic's worker manager forks the two serving processes (plus none when single).
        assert len(_children(processes[1].pid)) >= 2, log.read_text()[-4000:]
        yield base, standin, passwords
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
        await _mariadb_admin(f"DROP DATABASE IF EXISTS {name}")


async def test_register_review_and_notify_across_two_workers_on_mariadb(
    stack: tuple[str, str, dict[str, str]],
) -> None:
    base, standin, passwords = stack
    veteran = demo.walkthrough_veteran(2)
    clerk = next(
        staff.username
        for staff in demo.DEMO_STAFF
        if staff.region_code == veteran.county_code and staff.role == "clerk"
    )
    out = io.StringIO()

    result = await walkthrough.run(
        base,
        standin,
        veteran_no=2,
        approve_as=f"{clerk}:{passwords[clerk]}",
        wait_seconds=90,
        out=out,
    )

    assert result.status == "submitted", out.getvalue()[-3000:]
    assert result.registration_id is not None
    assert result.delivered_msgid, out.getvalue()[-3000:]
    async with httpx.AsyncClient(base_url=standin) as http:
        sent = (await http.get("/__standin__/sent")).json()
    deliveries = [item for item in str(sent).split("msgid") if result.delivered_msgid in item]
    assert len(deliveries) == 1, "the approval message went out exactly once"
