"""Small helpers that drive the WeChat stand-in's phone side and fault controls over HTTP."""

from __future__ import annotations

from typing import Any

import httpx


async def login(control: httpx.AsyncClient, openid: str | None = None) -> tuple[str, str]:
    """Play wx.login on the phone: (code, openid)."""
    body = {"openid": openid} if openid else {}
    answer = (await control.post("/__standin__/login-code", json=body)).json()
    return answer["code"], answer["openid"]


async def fault(control: httpx.AsyncClient, path: str, **how: Any) -> None:
    """Make the next call(s) of a WeChat path fail on purpose."""
    response = await control.post("/__standin__/faults", json={"path": path, **how})
    assert response.status_code == 200


async def calls(control: httpx.AsyncClient, path: str) -> int:
    return int((await control.get("/__standin__/calls")).json()["calls"].get(path, 0))
