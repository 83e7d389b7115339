"""The walk-through: plays the mini-program over HTTP against the running demo, printing each step.

`vetsvc walkthrough [--base-url URL] [--standin-url URL] [--veteran N] [--approve-as USER:PASS]`
logs a demo veteran in through the WeChat stand-in, accepts the privacy notice, binds with the
roster phone, accepts the notification templates, saves a draft and submits the registration.
Then it waits until a clerk approves it in the portal (or approves it itself with --approve-as)
and until the approval notification shows as delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

from backend.demo import DEFAULT_PORT, DEFAULT_STANDIN_PORT, sample_content, walkthrough_veteran

APPROVED_EVENT = "registration.approved"
# Values a reader should not copy from the screen: shown shortened.
_SECRET_KEYS = frozenset({"token"})


class WalkFailed(RuntimeError):
    """A step answered something the mini-program would not expect."""


@dataclass
class WalkResult:
    openid: str
    report_year: int
    status: str
    registration_id: int | None = None
    delivered_msgid: str | None = None


def _shown(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (f"{v[:6]}…" if k in _SECRET_KEYS and isinstance(v, str) else _shown(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_shown(item) for item in value]
    return value


class Walker:
    """One phone: the service's API, the stand-in's phone side, and the printed log."""

    def __init__(self, api: httpx.AsyncClient, standin: httpx.AsyncClient, out: TextIO) -> None:
        self.api, self.standin, self.out = api, standin, out
        self.token = ""

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        expect: tuple[int, ...] = (200, 201),
        on_standin: bool = False,
    ) -> Any:
        """Send one request, print it and its answer, and return the answer's JSON."""
        client = self.standin if on_standin else self.api
        headers = {"Authorization": f"Bearer {self.token}"} if self.token and not on_standin else {}
        where = "微信模拟" if on_standin else "服务端"
        self.say(f"\n→ [{where}] {method} {path}")
        if body is not None:
            self.say(_pretty(_shown(body)))
        response = await client.request(method, path, json=body, headers=headers)
        data = response.json() if response.content else None
        self.say(f"← {response.status_code}")
        if data is not None:
            self.say(_pretty(_shown(data)))
        if response.status_code not in expect:
            raise WalkFailed(f"{method} {path} answered {response.status_code}")
        return data


def _pretty(data: Any) -> str:
    return "  " + json.dumps(data, ensure_ascii=False, indent=2).replace("\n", "\n  ")


async def play(walker: Walker, veteran_no: int) -> WalkResult:
    """Login, privacy notice, binding, templates, draft and submission, as the phone would."""
    veteran = walkthrough_veteran(veteran_no)
    walker.say(f"模拟退役军人：{veteran.name}（演示数据，openid {veteran.openid}）")

    walker.say("\n== 1. 微信登录 wx.login → 换取本系统令牌 ==")
    minted = await walker.call(
        "POST", "/__standin__/login-code", {"openid": veteran.openid}, on_standin=True
    )
    session = await walker.call("POST", "/api/v1/sessions", {"code": minted["code"]})
    walker.token = session["token"]

    if not session["privacy_accepted"]:
        walker.say("\n== 2. 阅读并同意隐私保护说明 ==")
        version = session["privacy_version"]
        await walker.call("POST", "/api/v1/privacy-consents", {"version": version})

    if not session["bound"]:
        walker.say("\n== 3. 身份绑定：姓名、身份证号、微信验证的手机号 ==")
        phone = await walker.call(
            "POST",
            "/__standin__/phone-code",
            {"openid": veteran.openid, "phone": veteran.phone},
            on_standin=True,
        )
        body = {"name": veteran.name, "id_number": veteran.id_number, "phone_code": phone["code"]}
        bound = await walker.call("POST", "/api/v1/bindings", body)
        if bound["status"] != "bound":
            raise WalkFailed("the binding is waiting for a clerk; pick another demo veteran")

    walker.say("\n== 4. 订阅消息：在手机上同意接收审核结果通知 ==")
    choices = {template_id: "accept" for template_id in await _template_ids()}
    await walker.call(
        "POST",
        "/__standin__/subscribe",
        {"openid": veteran.openid, "templates": choices},
        on_standin=True,
    )
    await walker.call("POST", "/api/v1/subscriptions", {"results": choices})

    walker.say("\n== 5. 年度登记：查看状态、保存草稿、提交 ==")
    current = await walker.call("GET", "/api/v1/registrations/current")
    year = current["report_year"]
    if current["status"] in (None, "draft", "returned"):
        content = sample_content(veteran, year)
        content["remarks"] = "通过小程序演示提交 🙂 <原样保存>"
        await walker.call("PUT", f"/api/v1/registrations/{year}/draft", content)
        await walker.call("POST", f"/api/v1/registrations/{year}/submission", {})
        current = await walker.call("GET", "/api/v1/registrations/current")
    else:
        walker.say(f"（{year}年度登记已是“{current['status']}”状态，不再重复提交）")
    return WalkResult(veteran.openid, year, current["status"])


async def _template_ids() -> list[str]:
    # The mini-program ships with the template ids it asks for; the demo configured these.
    from backend.services.notifications import DEFAULT_TEMPLATES

    return [template_id for template_id, _, _ in DEFAULT_TEMPLATES.values()][:3]


async def approve_in_portal(
    walker: Walker, portal: httpx.AsyncClient, credentials: str, veteran_no: int, year: int
) -> int:
    """Log into the portal as a clerk and approve the veteran's submitted registration."""
    username, _, password = credentials.partition(":")
    name = walkthrough_veteran(veteran_no).name
    walker.say(f"\n== 6. 工作人员 {username} 登录管理后台并审核通过 ==")
    page = await portal.get("/portal/login")
    form = {"csrf_token": _csrf(page.text), "username": username, "password": password}
    logged_in = await portal.post("/portal/login", data={**form, "next": "/portal/"})
    if logged_in.status_code != 303 and "退出" not in logged_in.text:
        raise WalkFailed(f"portal login as {username} failed ({logged_in.status_code})")

    query: dict[str, str | int] = {"year": year, "status": "submitted"}
    listing = await portal.get("/portal/registrations", params=query)
    match = re.search(rf'<td class="mono">(\d+)</td>\s*<td>{re.escape(name)}</td>', listing.text)
    if match is None:
        raise WalkFailed(f"{name}'s submitted registration is not in the portal list")
    reg_id = int(match.group(1))
    detail = await portal.get(f"/portal/registrations/{reg_id}")
    approve_form = detail.text[detail.text.find('id="approve-form"') :]
    lock = re.search(r'name="lock_version" value="(\d+)"', approve_form)
    if lock is None:
        raise WalkFailed(f"registration {reg_id} offers no approval")
    answer = await portal.post(
        f"/portal/registrations/{reg_id}/approve",
        data={"csrf_token": _csrf(approve_form), "lock_version": lock.group(1)},
    )
    walker.say(f"POST /portal/registrations/{reg_id}/approve ← {answer.status_code}")
    if answer.status_code >= 400:
        raise WalkFailed(f"approval answered {answer.status_code}")
    return reg_id


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if match is None:
        raise WalkFailed("no CSRF token on the page")
    return match.group(1)


async def wait_for_delivery(
    walker: Walker,
    veteran_no: int,
    wait_seconds: float,
    portal: httpx.AsyncClient | None = None,
) -> str:
    """Wait for the approval in the inbox, its WeChat message at the stand-in and, when logged
    into the portal, the message shown there as delivered."""
    walker.say("\n== 7. 等待审核结果通知送达（站内消息 + 微信订阅消息） ==")
    veteran = walkthrough_veteran(veteran_no)
    openid = veteran.openid
    deadline = time.monotonic() + wait_seconds
    auth = {"Authorization": f"Bearer {walker.token}"}
    while time.monotonic() < deadline:
        inbox = (await walker.api.get("/api/v1/inbox", headers=auth)).json()
        approved = [m for m in inbox.get("items", []) if m["event"] == APPROVED_EVENT]
        sent = (await walker.standin.get("/__standin__/sent")).json()["sent"]
        mine = [s for s in sent if s["touser"] == openid]
        if (
            approved
            and mine
            and (portal is None or await _portal_shows_delivered(portal, veteran.name))
        ):
            await walker.call("GET", "/api/v1/inbox")
            walker.say(f"\n微信模拟服务已向 {openid} 送达订阅消息 msgid={mine[-1]['msgid']}：")
            walker.say(_pretty(mine[-1]["data"]))
            if portal is not None:
                walker.say("管理后台“消息”页显示该通知：已送达")
            return str(mine[-1]["msgid"])
        await asyncio.sleep(0.5)
    raise WalkFailed(f"no delivered approval notification within {wait_seconds:.0f} s")


async def _portal_shows_delivered(portal: httpx.AsyncClient, name: str) -> bool:
    page = await portal.get(
        "/portal/notifications", params={"status": "delivered", "event": APPROVED_EVENT}
    )
    row = rf'<td>{re.escape(name)}</td>\s*<td>[^<]*</td>\s*<td><span class="[^"]*">已送达</span>'
    return page.status_code == 200 and re.search(row, page.text) is not None


async def run(
    base_url: str,
    standin_url: str,
    *,
    veteran_no: int = 1,
    approve_as: str | None = None,
    wait: bool = True,
    wait_seconds: float = 600.0,
    out: TextIO = sys.stdout,
) -> WalkResult:
    """The whole walk-through; raises WalkFailed at the first unexpected answer."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=15) as api,
        httpx.AsyncClient(base_url=standin_url, timeout=15) as standin,
        httpx.AsyncClient(base_url=base_url, timeout=15, follow_redirects=True) as portal,
    ):
        walker = Walker(api, standin, out)
        result = await play(walker, veteran_no)
        if approve_as and result.status == "submitted":
            result.registration_id = await approve_in_portal(
                walker, portal, approve_as, veteran_no, result.report_year
            )
        elif result.status == "submitted":
            walker.say(
                f"\n已提交。请用县区工作人员账号登录 {base_url}/portal/login ，"
                f"在“年度登记审核”中审核 {walkthrough_veteran(veteran_no).name} 的登记。"
            )
        if result.status == "approved":
            # Approved in an earlier run: its message went out then, so only the inbox shows it.
            await walker.call("GET", "/api/v1/inbox")
            walker.say(
                "\n该登记此前已审核通过，通知已在站内消息中。可用 --veteran 选择其他演示人员。"
            )
        elif approve_as or wait:
            result.delivered_msgid = await wait_for_delivery(
                walker, veteran_no, wait_seconds, portal if result.registration_id else None
            )
            walker.say("\n演示完成：登记已审核通过，微信通知已送达。")
        return result


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of `vetsvc walkthrough`."""
    parser = argparse.ArgumentParser(prog="vetsvc walkthrough", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=f"http://127.0.0.1:{DEFAULT_PORT}")
    parser.add_argument("--standin-url", default=f"http://127.0.0.1:{DEFAULT_STANDIN_PORT}")
    parser.add_argument("--veteran", type=int, default=1, help="demo veteran 1-10")
    parser.add_argument("--approve-as", metavar="USER:PASS", help="approve it in the portal too")
    parser.add_argument("--no-wait", action="store_true", help="stop after submitting")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for it")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vetsvc walkthrough`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(
            run(
                args.base_url,
                args.standin_url,
                veteran_no=args.veteran,
                approve_as=args.approve_as,
                wait=not args.no_wait,
                wait_seconds=args.timeout,
            )
        )
    except WalkFailed as exc:
        print(f"\n演示中断：{exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"\n连接失败（演示是否已用 `vetsvc demo` 启动？）：{exc!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
