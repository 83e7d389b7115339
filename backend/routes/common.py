"""What every mini-program API route shares: body parsing, auth, responses and the spec registry.

Each route is declared with `api_route`, which registers it on its blueprint and records its
request and response models and its error codes; backend.routes.openapi builds the OpenAPI
document from that record, so the contract cannot drift from the code.
"""

from __future__ import annotations

import json as stdjson
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from backend.errors import AppError, MalformedRequest, PayloadTooLarge, ValidationFailed

M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Awaitable[HTTPResponse]]


@dataclass
class RouteSpec:
    method: str
    path: str
    name: str
    summary: str
    tag: str
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    auth: str | None
    errors: list[type[AppError]] = field(default_factory=list)
    query: type[BaseModel] | None = None
    #: other success statuses and their bodies (e.g. 202 for a binding that waits for a clerk)
    alternatives: dict[int, type[BaseModel]] = field(default_factory=dict)


SPECS: list[RouteSpec] = []

_MESSAGES = {
    "missing": "此项必填",
    "extra_forbidden": "不允许的字段",
    "string_type": "应为文本",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "bool_type": "应为是或否",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "date_type": "应为日期（如 2026-01-05）",
    "date_from_datetime_parsing": "应为日期（如 2026-01-05）",
    "date_parsing": "应为日期（如 2026-01-05）",
    "datetime_type": "应为时间（如 2026-01-05T09:30:00+08:00）",
    "datetime_parsing": "应为时间（如 2026-01-05T09:30:00+08:00）",
    "string_too_long": "内容过长",
    "string_too_short": "内容过短或为空",
    "too_long": "条目过多",
    "too_short": "条目过少",
    "literal_error": "不是允许的取值",
    "enum": "不是允许的取值",
    "string_pattern_mismatch": "格式不正确",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
}


def field_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's errors as {"field.path": "中文说明"} for the error body's details."""
    details: dict[str, str] = {}
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "value_error":
            # Our own validators raise ValueError with a Chinese sentence.
            message = str(error.get("ctx", {}).get("error", "")) or "格式不正确"
        else:
            message = _MESSAGES.get(error["type"], "格式不正确")
        details.setdefault(path, message)
    return details


def parse_model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(details={"fields": field_errors(exc)}) from exc


def _refuse_constant(name: str) -> Any:
    # Python's decoder accepts NaN and Infinity, which JSON does not.
    raise ValueError(f"not JSON: {name}")


def parse_json(request: Request, model: type[M]) -> M:
    """Decode and validate a JSON body; too large, malformed or wrong types are refused whole."""
    limit = request.app.ctx.settings.max_body_bytes
    raw = request.body or b""
    if len(raw) > limit:
        raise PayloadTooLarge(details={"limit_bytes": limit})
    if not raw.strip():
        # An empty body is a client bug, not "no changes": a draft must never be wiped by one.
        raise MalformedRequest("请求内容为空，应为 JSON 对象。")
    ctype = request.headers.get("content-type", "")
    if "json" not in ctype:
        raise MalformedRequest("请求须为 JSON 格式。", details={"content_type": ctype[:64]})
    try:
        data = stdjson.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: thousands of nested brackets exhaust the decoder's stack.
        raise MalformedRequest("请求内容不是有效的 JSON。") from exc
    if not isinstance(data, dict):
        raise MalformedRequest("请求内容应为 JSON 对象。")
    return parse_model(model, data)


def respond(model: BaseModel | None, status: int = 200) -> HTTPResponse:
    if model is None:
        return HTTPResponse(status=204)
    return json(model.model_dump(mode="json"), status=status)


def api_route(
    bp: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    auth: str | None = "veteran",
    errors: list[type[AppError]] | None = None,
    alternatives: dict[int, type[BaseModel]] | None = None,
) -> Callable[[Handler], Handler]:
    """Register a mini-program route and record its contract.

    auth: None (public), "account" (any logged-in WeChat account) or "veteran" (a bound account).
    The handler receives the request and, when given, the parsed body and/or query models as
    keyword arguments `body` and `query`; with auth it also gets `account`.
    """

    def decorate(handler: Handler) -> Handler:
        name = handler.__name__

        @wraps(handler)
        async def wrapped(request: Request, **params: Any) -> HTTPResponse:
            if auth is not None:
                from backend.services.accounts import authenticate

                params["account"] = await authenticate(request, require_bound=auth == "veteran")
            if body is not None:
                params["body"] = parse_json(request, body)
            if query is not None:
                # Blank values are kept so that "?limit=" is refused, not read as absent.
                args = request.get_args(keep_blank_values=True)
                raw = {key: args.get(key) for key in args}
                params["query"] = parse_model(query, raw)
            return await handler(request, **params)

        bp.add_route(wrapped, path, methods=[method], name=name)
        spec_path = (bp.url_prefix or "") + path
        SPECS.append(
            RouteSpec(
                method.lower(),
                spec_path,
                name,
                summary,
                tag,
                body,
                response,
                status,
                auth,
                list(errors or []),
                query,
                dict(alternatives or {}),
            )
        )
        return wrapped

    return decorate
