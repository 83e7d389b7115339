"""Shared fixtures: a real migrated database (SQLite or MariaDB) and real loopback servers.

APP_TEST_DB=sqlite (default) or mariadb picks the database. The schema is built once per run by
the project's own migrations, then each test gets a clean copy (SQLite: a copied file; MariaDB:
emptied tables), so no test sees another's rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from sanic import Sanic
from tortoise import Tortoise, connections

from backend import context, db
from backend.app import create_app
from backend.settings import Settings

TEST_DB = os.environ.get("APP_TEST_DB", "sqlite")
MARIADB_URL = os.environ.get("APP_TEST_MARIADB_URL", "mysql://root:@127.0.0.1:3306/")

Sanic.test_mode = True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mariadb_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 3306), timeout=1):
            return True
    except OSError:
        return False


async def _mariadb_admin(sql: str) -> None:
    import aiomysql

    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        async with conn.cursor() as cur:
            with warnings.catch_warnings():
                # "IF EXISTS" on a missing database is a server note, not a problem.
                warnings.simplefilter("ignore")
                await cur.execute(sql)
        await conn.commit()
    finally:
        conn.close()


@pytest.fixture(scope="session")
def schema_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Migrate once per run; yields the SQLite template file or the MariaDB URL."""
    if TEST_DB == "mariadb":
        if not _mariadb_answers():
            pytest.skip("MariaDB is not answering on 127.0.0.1:3306")
        name = f"vetsvc_test_{os.getpid()}"
        url = f"{MARIADB_URL}{name}"
        asyncio.run(_mariadb_admin(f"DROP DATABASE IF EXISTS {name}"))
        charset = "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        asyncio.run(_mariadb_admin(f"CREATE DATABASE {name} {charset}"))
        asyncio.run(db.migrate(url))
        yield url
        asyncio.run(_mariadb_admin(f"DROP DATABASE IF EXISTS {name}"))
        return
    template = tmp_path_factory.mktemp("schema") / "template.sqlite3"
    asyncio.run(db.migrate(f"sqlite://{template}"))
    yield str(template)


@pytest.fixture
def settings(tmp_path: Path, schema_source: str) -> Settings:
    if TEST_DB == "mariadb":
        url = schema_source
    else:
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(schema_source, path)
        url = f"sqlite://{path}"
    return Settings(
        env="test",
        data_dir=tmp_path / "data",
        database_url=url,
        cookie_secure=False,
        wechat_appid="wxstandin00000001",
        wechat_secret="standin-secret",
        wechat_push_token="standin-push-token",
        wechat_aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        wechat_api_base="http://127.0.0.1:9",
        log_level="WARNING",
    )


async def _empty_tables() -> None:
    conn = connections.get("default")
    _, rows = await conn.execute_query("SHOW TABLES")
    tables = [next(iter(row.values())) for row in rows]
    statements = ["SET FOREIGN_KEY_CHECKS=0"]
    statements += [f"DELETE FROM `{t}`" for t in tables if t != "tortoise_migrations"]
    statements.append("SET FOREIGN_KEY_CHECKS=1")
    for statement in statements:
        await conn.execute_script(statement)


@pytest.fixture
async def db_ready(settings: Settings) -> AsyncIterator[Settings]:
    """A clean, migrated database with Tortoise initialised and the context installed."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await db.init(settings.db_url)
    if TEST_DB == "mariadb":
        await _empty_tables()
    ctx = context.install(context.build(settings))
    yield settings
    await ctx.wechat.close()
    await ctx.store.close()
    await Tortoise.close_connections()


@pytest.fixture
async def standin(settings: Settings) -> AsyncIterator[str]:
    """The WeChat stand-in on a loopback port; yields its base URL."""
    from backend.wechat.standin import StandinConfig, start_standin

    config = StandinConfig(
        appid=settings.wechat_appid,
        secret=settings.wechat_secret,
        push_token=settings.wechat_push_token,
        aes_key=settings.wechat_aes_key,
        push_url="",
    )
    base_url, stop = await start_standin(config)
    yield base_url
    await stop()


@pytest.fixture
async def server(db_ready: Settings, standin: str) -> AsyncIterator[tuple[str, Settings]]:
    """The real service on a loopback port, talking to the stand-in; yields (base URL, settings)."""
    port = free_port()
    live = replace(db_ready, wechat_api_base=standin, port=port)
    app = create_app(live, name=f"vetsvc_{uuid.uuid4().hex[:8]}")
    srv = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert srv is not None
    await srv.startup()
    await srv.before_start()
    await srv.after_start()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=standin) as control:
        await control.post("/__standin__/config", json={"push_url": f"{base}/wechat/push"})
    yield base, live
    await srv.before_stop()
    await srv.close()
    await srv.after_stop()


@pytest.fixture
async def client(server: tuple[str, Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server[0], timeout=10) as http:
        yield http
