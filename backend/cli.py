"""The `vetsvc` command: migrate, serve, dispatch, staff bootstrap, the demo, the walk-through."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Sequence
from functools import partial

from backend import db, logs
from backend.settings import Settings, SettingsError

logger = logging.getLogger(__name__)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        sys.exit(f"configuration error: {exc}")


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(db.migrate(settings.db_url))
    logger.info("migrations applied to %s database", settings.db_url.split("://", 1)[0])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from backend.app import create_app

    settings = _settings()
    if not args.no_migrate:
        cmd_migrate(args)
    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    workers = args.workers or settings.workers
    app.prepare(
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=workers,
        single_process=workers == 1,
        access_log=False,
        motd=False,
    )
    if workers == 1:
        Sanic.serve_single(primary=app)
    else:
        Sanic.serve(primary=app, app_loader=loader)
    return 0


def cmd_dispatch(args: argparse.Namespace) -> int:
    from backend import context
    from backend.services import dispatcher

    settings = _settings()
    worker_id = args.worker_id or f"{os.uname().nodename}-{os.getpid()}"

    async def run() -> None:
        await db.init(settings.db_url)
        ctx = context.install(context.build(settings))
        try:
            if args.once:
                count = await dispatcher.run_once(worker_id)
                logger.info("dispatcher %s: one pass handled %d messages", worker_id, count)
            else:
                await dispatcher.run_forever(worker_id, asyncio.Event())
        finally:
            await ctx.wechat.close()
            await ctx.store.close()
            await db.close()

    asyncio.run(run())
    return 0


def cmd_seed_regions(args: argparse.Namespace) -> int:
    from backend.services import regions

    settings = _settings()

    async def run() -> int:
        await db.init(settings.db_url)
        try:
            return await regions.seed_regions()
        finally:
            await db.close()

    count = asyncio.run(run())
    logger.info("regions seeded: %d", count)
    return 0


def cmd_create_staff(args: argparse.Namespace) -> int:
    """Bootstrap an account (the first province account); later ones are made in the portal."""
    from backend import context
    from backend.services import staff

    settings = _settings()
    password = os.environ.get("VETSVC_STAFF_PASSWORD") or getpass.getpass("password: ")

    async def run() -> None:
        await db.init(settings.db_url)
        ctx = context.install(context.build(settings))
        try:
            await staff.create_staff(
                None,
                username=args.username,
                display_name=args.display_name or args.username,
                password=password,
                role=args.role,
                region_code=args.region,
            )
        finally:
            await ctx.wechat.close()
            await ctx.store.close()
            await db.close()

    asyncio.run(run())
    logger.info("staff account %s created in region %s", args.username, args.region)
    return 0


def cmd_reset_totp(args: argparse.Namespace) -> int:
    """Clear an account's TOTP from the server's shell: the way back for province accounts."""
    from backend import context
    from backend.models import StaffUser
    from backend.services import staff

    settings = _settings()

    async def run() -> bool:
        await db.init(settings.db_url)
        ctx = context.install(context.build(settings))
        try:
            target = await StaffUser.get_or_none(username=args.username)
            if target is None:
                return False
            await staff.reset_totp(None, target.id, args.reason)
            return True
        finally:
            await ctx.wechat.close()
            await ctx.store.close()
            await db.close()

    if not asyncio.run(run()):
        sys.exit(f"no staff account named {args.username}")
    logger.info("TOTP of staff account %s reset from the command line", args.username)
    return 0


def cmd_demo(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from backend import demo

    return demo.main(list(rest))


def cmd_walkthrough(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from backend import walkthrough

    return walkthrough.main(list(rest))


def cmd_standin(args: argparse.Namespace, rest: Sequence[str]) -> int:
    from backend.wechat import standin

    return standin.main(list(rest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vetsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply pending database migrations")

    serve = sub.add_parser("serve", help="migrate, then serve the API and the portal")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--no-migrate", action="store_true", help="skip the migration step")

    dispatch = sub.add_parser("dispatch", help="send queued WeChat subscribe messages")
    dispatch.add_argument("--worker-id")
    dispatch.add_argument("--once", action="store_true", help="one pass, then exit")

    sub.add_parser("seed-regions", help="load Shanxi's division codes")

    staff = sub.add_parser("create-staff", help="bootstrap a staff account (password prompted)")
    staff.add_argument("--username", required=True)
    staff.add_argument("--display-name")
    staff.add_argument("--region", required=True, help="GB/T 2260 code, e.g. 140000")
    staff.add_argument("--role", default="lead", choices=["clerk", "lead"])

    reset = sub.add_parser("reset-totp", help="clear a staff account's TOTP (lost phone)")
    reset.add_argument("--username", required=True)
    reset.add_argument("--reason", required=True)

    sub.add_parser("demo", help="seed and start the demo with the WeChat stand-in", add_help=False)
    sub.add_parser("walkthrough", help="play the mini-program against the demo", add_help=False)
    sub.add_parser("standin", help="run the WeChat stand-in alone", add_help=False)
    return parser


PASSTHROUGH = {"demo": cmd_demo, "walkthrough": cmd_walkthrough, "standin": cmd_standin}
COMMANDS = {
    "migrate": cmd_migrate,
    "serve": cmd_serve,
    "dispatch": cmd_dispatch,
    "seed-regions": cmd_seed_regions,
    "create-staff": cmd_create_staff,
    "reset-totp": cmd_reset_totp,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logs.configure(os.environ.get("APP_LOG_LEVEL", "INFO"))
    if argv and argv[0] in PASSTHROUGH:
        return PASSTHROUGH[argv[0]](argparse.Namespace(), argv[1:])
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
