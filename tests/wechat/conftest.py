"""Fixtures for the WeChat adapter: a client wired to the stand-in and the stand-in's controls."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from backend.settings import Settings
from backend.store import DatabaseStore
from backend.wechat.client import WechatClient

MakeClient = Callable[..., Awaitable[WechatClient]]


@pytest.fixture
async def control(standin: str) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP access to the stand-in: its phone-side controls and its API paths."""
    async with httpx.AsyncClient(base_url=standin, timeout=10) as http:
        yield http


@pytest.fixture
async def make_client(db_ready: Settings, standin: str) -> AsyncIterator[MakeClient]:
    """Build WechatClients on the stand-in; all share one database store unless given one."""
    made: list[WechatClient] = []
    shared = DatabaseStore(prefix="t:")

    async def make(store: Any = None, **overrides: Any) -> WechatClient:
        settings = replace(db_ready, **({"wechat_api_base": standin} | overrides))
        client = WechatClient(settings, store or shared)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def wechat(make_client: MakeClient) -> WechatClient:
    return await make_client()
