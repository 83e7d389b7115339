"""Builds the mini-program's OpenAPI 3.1 document from the routes' recorded contracts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from backend.routes.common import SPECS, RouteSpec

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

# Answers any route can give, besides its own documented errors.
COMMON_STATUSES = {
    400: "请求格式不正确（MALFORMED_REQUEST）",
    404: "没有找到（NOT_FOUND）",
    405: "不支持此请求方式（METHOD_NOT_ALLOWED）",
    413: "内容过大（PAYLOAD_TOO_LARGE）",
    422: "字段校验未通过（VALIDATION_FAILED）",
}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(spec: RouteSpec, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": spec.name, "summary": spec.summary, "tags": [spec.tag]}
    if spec.auth:
        op["security"] = [{"bearer": []}]
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(spec.body, components)}},
        }
    parameters = _path_parameters(spec.path)
    if spec.query is not None:
        query_schema = spec.query.model_json_schema()
        required = set(query_schema.get("required", []))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in query_schema.get("properties", {}).items()
        ]
    if parameters:
        op["parameters"] = parameters
    responses: dict[str, Any] = {}
    if spec.response is not None:
        responses[str(spec.status)] = {
            "description": "成功",
            "content": {"application/json": {"schema": _schema(spec.response, components)}},
        }
    else:
        responses[str(spec.status)] = {"description": "成功"}
    for status, model in spec.alternatives.items():
        responses[str(status)] = {
            "description": "成功（另一种结果）",
            "content": {"application/json": {"schema": _schema(model, components)}},
        }
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    statuses: dict[int, list[str]] = {}
    for status, text in COMMON_STATUSES.items():
        statuses.setdefault(status, []).append(text)
    if spec.auth:
        statuses.setdefault(401, []).append("未登录或登录已失效（UNAUTHENTICATED）")
        statuses.setdefault(403, []).append(
            "未同意隐私说明或未绑定（PRIVACY_NOT_ACCEPTED / NOT_BOUND）"
        )
        statuses.setdefault(429, []).append("操作过于频繁（RATE_LIMITED）")
    for error in spec.errors:
        statuses.setdefault(error.status, []).append(f"{error.message}（{error.code}）")
    for status, texts in sorted(statuses.items()):
        responses[str(status)] = {"description": "；".join(texts), "content": error_ref}
    op["responses"] = responses
    return op


def build_document() -> dict[str, Any]:
    """The whole document; the copy in miniprogram_api_docs/ is checked against it by a test."""
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}
    for spec in sorted(SPECS, key=lambda s: (s.path, s.method)):
        paths.setdefault(_openapi_path(spec.path), {})[spec.method] = _operation(spec, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "逐月领取退役金退役军人服务平台 小程序接口",
            "version": "1.0.0",
            "description": "见 miniprogram_api_docs/README.md。错误体格式统一为 Error。",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_PARAM_SCHEMAS = {
    "int": {"type": "integer", "minimum": 1},
    "str": {"type": "string"},
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    """OpenAPI requires every {name} in a path to be declared; Sanic writes <name:type>."""
    found = []
    for part in path.split("/"):
        if part.startswith("<") and part.endswith(">"):
            name, _, kind = part[1:-1].partition(":")
            schema = _PARAM_SCHEMAS.get(kind or "str", {"type": "string"})
            found.append({"name": name, "in": "path", "required": True, "schema": schema})
    return found


def _openapi_path(path: str) -> str:
    # Sanic writes <id:int>; OpenAPI writes {id}.
    out = []
    for part in path.split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].split(":")[0] + "}"
        out.append(part)
    return "/".join(out)
