"""The demo: its own SQLite file of invented data, the WeChat stand-in and the server, on loopback.

`vetsvc demo [--port 8000] [--standin-port 8001] [--data-dir data/demo] [--reset-passwords]`
migrates data/demo/demo.sqlite3, seeds it (again without harm on a second run), starts the
stand-in and the service with the dispatcher inside it, prints the addresses and the staff
accounts, and runs until Ctrl-C. Every veteran, ID number and phone number here is invented.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
import logging
import os
import secrets
import signal
import string
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from backend import context, db
from backend.settings import DEV_FIELD_KEY, DEV_LOOKUP_KEY, DEV_SECRET_KEY, Settings, SettingsError

logger = logging.getLogger(__name__)

DB_FILE = "demo.sqlite3"
DEFAULT_PORT = 8000
DEFAULT_STANDIN_PORT = 8001
DEFAULT_DATA_DIR = Path("data") / "demo"
HOST = "127.0.0.1"
SHANGHAI = ZoneInfo("Asia/Shanghai")
DEMO_REASON = "演示"
# Fixed demo secrets for the stand-in and the push URL: the demo never talks to WeChat.
DEMO_SECRET = "demo-standin-secret"  # noqa: S105 - known to the stand-in only
DEMO_PUSH_TOKEN = "demo-push-token"  # noqa: S105 - signs loopback pushes only
DEMO_AES_KEY = "DemoStandinAesKeyForPushMessages0123456789a"
DEMO_APPID = "wxdemo0000000001"
XIAODIAN, YINGZE = "140105", "140106"
_SURNAMES = "张李王刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧"
_NUMERALS = "一二三四五六七八九十"
#: veterans 1-10 are left untouched for the walk-through; the others get sample registrations
WALKTHROUGH_SLOTS = 10


class DemoRefused(SystemExit):
    """The demo was pointed at a database that is not its own."""


@dataclass(frozen=True)
class DemoStaff:
    username: str
    display_name: str
    role: str
    region_code: str
    #: the demo account that creates this one (the level above); None for the command line
    creator: str | None


DEMO_STAFF: tuple[DemoStaff, ...] = (
    DemoStaff("demo_province_lead", "演示省级负责人", "lead", "140000", None),
    DemoStaff("demo_province_clerk", "演示省级经办人", "clerk", "140000", None),
    DemoStaff("demo_taiyuan_lead", "演示太原负责人", "lead", "140100", "demo_province_lead"),
    DemoStaff("demo_taiyuan_clerk", "演示太原经办人", "clerk", "140100", "demo_province_lead"),
    DemoStaff("demo_xiaodian_lead", "演示小店负责人", "lead", XIAODIAN, "demo_taiyuan_lead"),
    DemoStaff("demo_xiaodian_clerk", "演示小店经办人", "clerk", XIAODIAN, "demo_taiyuan_lead"),
    DemoStaff("demo_yingze_lead", "演示迎泽负责人", "lead", YINGZE, "demo_taiyuan_lead"),
    DemoStaff("demo_yingze_clerk", "演示迎泽经办人", "clerk", YINGZE, "demo_taiyuan_lead"),
)


@dataclass(frozen=True)
class DemoVeteran:
    """One invented roster entry; `openid` is what the stand-in's phone logs in as."""

    no: int
    name: str
    id_number: str
    phone: str
    county_code: str
    pay_start_date: dt.date
    party_member: bool
    status: str = "active"
    status_date: dt.date | None = None

    @property
    def openid(self) -> str:
        return f"oDemoVeteran{self.no:04d}"


def _chinese_number(n: int) -> str:
    if n <= 10:
        return _NUMERALS[n - 1]
    tens, ones = divmod(n, 10)
    head = "" if tens == 1 else _NUMERALS[tens - 1]
    return head + "十" + (_NUMERALS[ones - 1] if ones else "")


def _id_number(county: str, birth: dt.date, seq: int) -> str:
    from backend.services.idcard import check_digit

    first17 = f"{county}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


# Roster statuses beyond "active", chosen so that who-must-file has every case to show.
_SPECIAL: dict[int, tuple[str, dt.date | None, dt.date | None]] = {
    # no: (status, status date, pay start override)
    25: ("suspended", dt.date(2026, 5, 1), None),
    26: ("deceased", dt.date(2024, 8, 15), None),
    27: ("transferred", dt.date(2025, 7, 1), None),
    28: ("active", None, dt.date(2026, 2, 1)),
}


def demo_veterans() -> list[DemoVeteran]:
    """Thirty invented veterans; the same list on every run, so re-imports change nothing."""
    result = []
    for no in range(1, 31):
        status, status_date, pay_override = _SPECIAL.get(no, ("active", None, None))
        county = XIAODIAN if no % 2 else YINGZE
        birth = dt.date(1966 + no % 17, 1 + no % 12, 1 + (no * 7) % 28)
        result.append(
            DemoVeteran(
                no=no,
                name=f"演示{_SURNAMES[no - 1]}{_chinese_number(no)}",
                id_number=_id_number(county, birth, 100 + no),
                phone=f"1990000{no:04d}",
                county_code=county,
                pay_start_date=pay_override or dt.date(2008 + no % 12, 1 + no % 12, 1),
                party_member=no % 3 == 0,
                status=status,
                status_date=status_date,
            )
        )
    return result


_ROSTER_HEADERS = (
    "姓名",
    "身份证号",
    "手机号",
    "安置地区划代码",
    "退役金起发日期",
    "是否党员",
    "状态",
    "状态日期",
)


def roster_csv(veterans: Sequence[DemoVeteran]) -> bytes:
    """The veterans as the CSV roster a clerk would upload."""
    from backend.services.roster_parse import STATUS_LABELS

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_ROSTER_HEADERS)
    for v in veterans:
        writer.writerow(
            [
                v.name,
                v.id_number,
                v.phone,
                v.county_code,
                v.pay_start_date.isoformat(),
                "是" if v.party_member else "否",
                STATUS_LABELS[v.status],
                v.status_date.isoformat() if v.status_date else "",
            ]
        )
    return buffer.getvalue().encode("utf-8")


def walkthrough_veteran(no: int = 1) -> DemoVeteran:
    """The demo veteran the walk-through plays (1 to WALKTHROUGH_SLOTS)."""
    if not 1 <= no <= WALKTHROUGH_SLOTS:
        raise ValueError(f"choose a veteran between 1 and {WALKTHROUGH_SLOTS}")
    return demo_veterans()[no - 1]


@dataclass
class DemoAccount:
    username: str
    role: str
    region_name: str
    #: set only when the account was created (or reset) by this run
    password: str | None = None


@dataclass
class DemoInfo:
    """What a seeded demo holds, for printing and for tests."""

    data_dir: Path
    accounts: list[DemoAccount] = field(default_factory=list)
    veterans: int = 0
    report_year: int = 0
    window: tuple[dt.date, dt.date] | None = None
    walkthrough: list[DemoVeteran] = field(default_factory=list)


def demo_settings(data_dir: Path, port: int, standin_port: int) -> Settings:
    """Settings for the demo; refuses any database other than its own SQLite file."""
    data_dir = data_dir.resolve()
    own_url = f"sqlite://{data_dir / DB_FILE}"
    requested = os.environ.get("APP_DATABASE_URL", "")
    if requested and requested != own_url:
        raise DemoRefused(
            "演示只使用自己的 SQLite 数据库，拒绝连接 APP_DATABASE_URL 指定的数据库。\n"
            f"The demo only runs on its own SQLite file ({own_url}); unset APP_DATABASE_URL."
        )
    try:
        base = Settings.from_env({k: v for k, v in os.environ.items() if _harmless(k)})
    except SettingsError as exc:
        raise DemoRefused(f"configuration error: {exc}") from exc
    return replace(
        base,
        env="development",
        data_dir=data_dir,
        database_url=own_url,
        redis_url="",
        # The demo's data is invented, so the development keys keep re-runs consistent.
        secret_key=DEV_SECRET_KEY,
        field_key=DEV_FIELD_KEY,
        lookup_key=DEV_LOOKUP_KEY,
        host=HOST,
        port=port,
        workers=1,
        cookie_secure=False,
        wechat_api_base=f"http://{HOST}:{standin_port}",
        wechat_appid=DEMO_APPID,
        wechat_secret=DEMO_SECRET,
        wechat_push_token=DEMO_PUSH_TOKEN,
        wechat_aes_key=DEMO_AES_KEY,
        wechat_miniprogram_state="developer",
    )


def _harmless(name: str) -> bool:
    # Only presentation and tuning settings pass through; everything that points elsewhere is ours.
    return name in (
        "APP_LOG_LEVEL",
        "APP_PRIVACY_VERSION",
        "APP_CORRECTION_DAYS",
        "APP_TOTP_REQUIRED",
    )


async def seed(settings: Settings, *, reset_passwords: bool = False) -> DemoInfo:
    """Migrate and fill the demo database; a second run adds nothing twice."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await db.migrate(settings.db_url)
    await db.init(settings.db_url)
    ctx = context.install(context.build(settings))
    try:
        return await _seed_all(settings, reset_passwords)
    finally:
        await ctx.wechat.close()
        await ctx.store.close()
        await db.close()


async def _seed_all(settings: Settings, reset_passwords: bool) -> DemoInfo:
    from backend.services import regions

    info = DemoInfo(data_dir=settings.data_dir, walkthrough=demo_veterans()[:WALKTHROUGH_SLOTS])
    await regions.seed_regions()
    info.accounts = [await _ensure_staff(item, reset_passwords) for item in DEMO_STAFF]
    info.veterans = await _import_roster()
    info.report_year, opens, closes = _demo_window(_today())
    info.window = (opens, closes)
    await _open_window(info.report_year, opens, closes)
    await _configure_templates()
    await _sample_registrations(info.report_year)
    logger.info("demo seeded: %d veterans, report year %d", info.veterans, info.report_year)
    return info


def _today() -> dt.date:
    return dt.datetime.now(SHANGHAI).date()


def _demo_window(today: dt.date) -> tuple[int, dt.date, dt.date]:
    """The last completed year's window, stretched so that it includes today (a year at most)."""
    year = today.year - 1
    closes = max(dt.date(year + 1, 3, 31), today + dt.timedelta(days=21))
    opens = max(min(dt.date(year + 1, 1, 1), today), closes - dt.timedelta(days=365))
    return year, opens, closes


def _new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(14))


async def _ensure_staff(item: DemoStaff, reset: bool) -> DemoAccount:
    """Create the account through the same rules as the portal (the level above creates it)."""
    from backend.models import Region, StaffUser
    from backend.services import staff

    region = await Region.get(code=item.region_code)
    account = DemoAccount(item.username, item.role, region.name)
    existing = await StaffUser.get_or_none(username=item.username)
    if existing is not None and not reset:
        return account
    account.password = _new_password()
    if existing is None:
        creator = None
        if item.creator:
            creator = await StaffUser.get(username=item.creator).prefetch_related("region")
        await staff.create_staff(
            creator, item.username, item.display_name, account.password, item.role, region.code
        )
    else:
        existing.password_hash = await staff.hash_password(account.password)
        existing.failed_logins, existing.locked_until = 0, None
        await existing.save(update_fields=["password_hash", "failed_logins", "locked_until"])
    return account


async def _import_roster() -> int:
    """Load the invented veterans through the real roster import, as a city clerk would."""
    from backend.models import StaffUser, Veteran
    from backend.services import roster

    veterans = demo_veterans()
    seeded = await Veteran.filter(name__startswith="演示").count()
    if seeded >= len(veterans):
        # Already loaded: a second preview would only leave an unused batch in the history.
        return seeded
    importer = await StaffUser.get(username="demo_taiyuan_clerk")
    batch = await roster.preview_import(importer, "演示名册.csv", roster_csv(veterans))
    if batch.status != "previewed":
        reasons = "; ".join(f"row {e['row']}: {e['reason']}" for e in batch.errors[:5])
        raise RuntimeError(f"demo roster refused: {reasons}")
    if batch.created_count or batch.updated_count:
        await roster.apply_import(importer, batch.id)
    return await Veteran.filter(name__startswith="演示").count()


async def _open_window(year: int, opens: dt.date, closes: dt.date) -> None:
    """Open the reported year's window as a demo override, set by the province as the rule says."""
    from backend.models import RegistrationWindow, StaffUser
    from backend.services import registrations

    window = await RegistrationWindow.get_or_none(report_year=year)
    if window is not None and window.opens_on <= _today() <= window.closes_on:
        return
    province = await StaffUser.get(username="demo_province_lead").prefetch_related("region")
    await registrations.set_window(province, year, opens, closes, DEMO_REASON, demo=True)


async def _configure_templates() -> None:
    from backend.services import notifications

    await notifications.ensure_default_templates()


def sample_content(veteran: DemoVeteran, year: int) -> dict[str, Any]:
    """Plausible, obviously invented registration content for one demo veteran."""
    party = {
        "organisation": "演示社区退役军人党支部",
        "participation": "按时参加“三会一课”，全年参加组织生活 12 次。",
    }
    trip = {
        "departed_on": f"{year}-07-10",
        "returned_on": f"{year}-07-16",
        "destination_kind": "hmt",
        "destination": "香港",
        "purpose": "探亲",
    }
    return {
        "party_life": party if veteran.party_member else None,
        "associations": [{"name": "演示退役军人志愿服务队", "role": "队员", "joined_on": None}],
        "trips": [trip] if veteran.no % 2 else [],
        "rewards_punishments": [],
        "contact_changes": None,
        "remarks": "",
    }


#: demo veteran no -> what happens to their sample registration
_SAMPLES = {11: "submitted", 12: "submitted", 13: "approved", 14: "approved", 15: "returned"}


async def _sample_registrations(year: int) -> None:
    """A few on-site registrations in each state, so the review pages have something to show."""
    from backend.models import AnnualRegistration, StaffUser, Veteran
    from backend.services import registrations

    if await AnnualRegistration.filter(channel="onsite").exists():
        return
    veterans = {v.no: v for v in demo_veterans()}
    for no, outcome in _SAMPLES.items():
        demo = veterans[no]
        town = "xiaodian" if demo.county_code == XIAODIAN else "yingze"
        clerk = await StaffUser.get(username=f"demo_{town}_clerk").prefetch_related("region")
        lead = await StaffUser.get(username=f"demo_{town}_lead").prefetch_related("region")
        veteran = await Veteran.get(name=demo.name)
        reg = await registrations.enter_onsite(clerk, veteran.id, year, sample_content(demo, year))
        if outcome == "approved":
            await registrations.approve(lead, reg.id, reg.lock_version)
        elif outcome == "returned":
            comments = {"trips": "请补充出境行程的往返日期证明材料（演示）。"}
            await registrations.return_for_correction(lead, reg.id, reg.lock_version, comments)


async def serve(settings: Settings, info: DemoInfo, ready: asyncio.Event | None = None) -> None:
    """Run the stand-in and the service until SIGINT/SIGTERM (or the task is cancelled)."""
    from backend.app import create_app
    from backend.services import dispatcher
    from backend.wechat.standin import StandinConfig, start_standin

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    standin_port = int(settings.wechat_api_base.rsplit(":", 1)[1])
    portal = f"http://{HOST}:{settings.port}"
    config = StandinConfig(
        appid=settings.wechat_appid,
        secret=settings.wechat_secret,
        push_token=settings.wechat_push_token,
        aes_key=settings.wechat_aes_key,
        push_url=f"{portal}/wechat/push",
    )
    standin_url, stop_standin = await start_standin(config, host=HOST, port=standin_port)
    app = create_app(settings, name=f"vetsvc_demo_{uuid.uuid4().hex[:6]}")
    # The stand-in's app already rewrote Sanic's shared methods; a second rewrite fails.
    app.config.TOUCHUP = False
    server = await app.create_server(
        host=HOST, port=settings.port, return_asyncio_server=True, access_log=False
    )
    if server is None:
        await stop_standin()
        raise RuntimeError("the server did not start")
    await server.startup()
    await server.before_start()
    await server.after_start()
    # The dispatcher runs beside the server in this loop, so the demo needs no second process.
    # (Sanic's add_task refuses named tasks on a server started with create_server.)
    stop_dispatch = asyncio.Event()
    dispatch = asyncio.create_task(dispatcher.run_forever(f"demo-{os.getpid()}", stop_dispatch))
    try:
        print_banner(info, portal, standin_url, settings)
        if ready is not None:
            ready.set()
        await stop.wait()
        print("\n正在停止演示…", flush=True)
    finally:
        stop_dispatch.set()
        await dispatch
        await server.before_stop()
        await server.close()
        await server.after_stop()
        await stop_standin()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("演示已停止。", flush=True)


def print_banner(info: DemoInfo, portal: str, standin_url: str, settings: Settings) -> None:
    """Tell the person at the terminal where everything is and how to log in."""
    lines = [
        "",
        "退役军人服务平台 演示已启动 (demo running)",
        f"  管理后台 portal:        {portal}/portal/login",
        f"  小程序接口 API:         {portal}/api/v1/",
        f"  微信模拟服务 stand-in:  {standin_url}",
        f"  数据目录 data:          {info.data_dir}",
    ]
    if info.window:
        opens, closes = info.window
        lines.append(f"  {info.report_year}年度登记 演示开放期: {opens} 至 {closes}")
    lines.append(f"  演示退役军人: {info.veterans} 人（姓名、身份证号、手机号均为虚构）")
    if settings.totp_enforced:
        lines.append("  动态验证码 TOTP:       已要求（首次登录时绑定验证器）")
    lines.append("")
    lines.append("工作人员账号 staff accounts:")
    for account in info.accounts:
        secret = account.password or "（首次运行时已打印；--reset-passwords 可重置）"
        name, role, region = account.username, account.role, account.region_name
        lines.append(f"  {name:<22} {role:<5} {region:<6} {secret}")
    lines += [
        "",
        "下一步：在另一个终端运行下面的命令，模拟小程序完成登录、绑定和年度登记，",
        f"  .venv/bin/vetsvc walkthrough --base-url {portal} --standin-url {standin_url}",
        "然后用县区账号（如 demo_xiaodian_clerk）登录管理后台审核。按 Ctrl-C 停止演示。",
        "",
    ]
    print("\n".join(lines), flush=True)


async def run(args: argparse.Namespace) -> None:
    """Seed, then serve on loopback until stopped."""
    settings = demo_settings(Path(args.data_dir), args.port, args.standin_port)
    info = await seed(settings, reset_passwords=args.reset_passwords)
    await db.init(settings.db_url)
    context.install(context.build(settings))
    await serve(settings, info)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line of `vetsvc demo`."""
    parser = argparse.ArgumentParser(prog="vetsvc demo", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--standin-port", type=int, default=DEFAULT_STANDIN_PORT)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument(
        "--reset-passwords", action="store_true", help="give the demo staff new passwords"
    )
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vetsvc demo`."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(run(args))
    except DemoRefused as exc:
        print(exc.code, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
