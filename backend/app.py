"""The application factory: builds the Sanic app and does nothing at import time."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError, OperationalError, TransactionManagementError

from backend import context, db, logs
from backend.errors import AppError, Conflict, NotFound
from backend.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, name: str = "vetsvc") -> Sanic:
    """Build the service: mini-program API, WeChat push URL and the staff portal."""
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    app = Sanic(name, configure_logging=False)
    app.config.REQUEST_MAX_SIZE = settings.max_upload_bytes
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.PROXIES_COUNT = 1 if settings.is_production else 0
    app.ctx.settings = settings

    _register_blueprints(app)
    _register_lifecycle(app, settings)
    app.on_request(_assign_request_id)
    app.on_response(_echo_request_id)
    app.error_handler.add(AppError, _app_error)
    app.error_handler.add(SanicException, _sanic_error)
    app.error_handler.add(IntegrityError, _integrity_error)
    app.error_handler.add(OverflowError, _id_out_of_range)
    app.error_handler.add(Exception, _unexpected_error)
    return app


def _register_blueprints(app: Sanic) -> None:
    from backend.routes import blueprints

    for bp in blueprints():
        app.blueprint(bp)


def _register_lifecycle(app: Sanic, settings: Settings) -> None:
    @app.before_server_start
    async def start(app: Sanic) -> None:
        ctx = context.install(context.build(settings))
        app.ctx.cipher, app.ctx.store, app.ctx.wechat = ctx.cipher, ctx.store, ctx.wechat
        if not Tortoise._inited:  # tests may have opened the database already
            await db.init(settings.db_url)
        logger.info("service starting on %s (env=%s)", _db_kind(settings.db_url), settings.env)

    @app.after_server_stop
    async def stop(app: Sanic) -> None:
        await app.ctx.wechat.close()
        await app.ctx.store.close()
        await Tortoise.close_connections()


def _db_kind(url: str) -> str:
    return url.split("://", 1)[0]


async def _assign_request_id(request: Request) -> None:
    incoming = request.headers.get("x-request-id", "")
    rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex[:16]
    request.ctx.request_id = rid
    logs.request_id_var.set(rid)


async def _echo_request_id(request: Request, response: HTTPResponse) -> None:
    rid = getattr(request.ctx, "request_id", None)
    if rid:
        response.headers["X-Request-ID"] = rid


def _wants_html(request: Request) -> bool:
    return request.path.startswith("/portal")


async def _render(request: Request, error: AppError) -> HTTPResponse:
    if _wants_html(request):
        render = getattr(request.app.ctx, "render_portal_error", None)
        if render is not None:
            return await render(request, error)
    return json(error.body(), status=error.status)


async def _app_error(request: Request, exc: Exception) -> HTTPResponse:
    assert isinstance(exc, AppError)
    return await _render(request, exc)


_SANIC_CODES: dict[int, tuple[str, str]] = {
    400: ("MALFORMED_REQUEST", "请求格式不正确。"),
    401: ("UNAUTHENTICATED", "登录已失效，请重新登录。"),
    403: ("FORBIDDEN", "您没有权限进行此操作。"),
    404: ("NOT_FOUND", "没有找到相关记录。"),
    405: ("METHOD_NOT_ALLOWED", "不支持此请求方式。"),
    408: ("REQUEST_TIMEOUT", "请求超时，请重试。"),
    413: ("PAYLOAD_TOO_LARGE", "提交的内容过大。"),
    416: ("RANGE_NOT_SATISFIABLE", "请求的范围无效。"),
    503: ("SERVICE_UNAVAILABLE", "服务暂时不可用，请稍后再试。"),
}


async def _sanic_error(request: Request, exc: Exception) -> HTTPResponse:
    assert isinstance(exc, SanicException)
    status = exc.status_code if exc.status_code in _SANIC_CODES else 400
    code, message = _SANIC_CODES[status]
    error = AppError(message)
    error.status, error.code = status, code
    return await _render(request, error)


async def _integrity_error(request: Request, exc: Exception) -> HTTPResponse:
    # A unique constraint caught a concurrent duplicate; never echo the database's text.
    logger.warning("integrity error on %s %s: %s", request.method, request.path, type(exc).__name__)
    return await _render(request, Conflict())


async def _id_out_of_range(request: Request, exc: Exception) -> HTTPResponse:
    # A path id beyond SQLite's 64-bit integers cannot name any row; MySQL just finds none.
    logger.warning("id out of range on %s %s", request.method, request.path)
    return await _render(request, NotFound())


async def _unexpected_error(request: Request, exc: Exception) -> HTTPResponse:
    if isinstance(exc, OperationalError | TransactionManagementError):
        logger.exception("database error on %s %s", request.method, request.path)
    else:
        logger.exception("unhandled error on %s %s", request.method, request.path)
    error = AppError("系统繁忙，请稍后再试。")
    error.status, error.code = 500, "INTERNAL_ERROR"
    return await _render(request, error)


def client_ip(request: Request) -> str:
    """The caller's address, through the reverse proxy in production."""
    ip: Any = request.remote_addr or request.ip
    return str(ip or "")
