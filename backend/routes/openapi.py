"""The served OpenAPI document and the health check."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from tortoise import connections

from backend.openapi import build_document

bp = Blueprint("meta")


@bp.get("/api/v1/openapi.json", name="openapi")
async def get_openapi(request: Request) -> HTTPResponse:
    return json(build_document())


@bp.get("/healthz", name="health")
async def get_health(request: Request) -> HTTPResponse:
    """Answers 200 once the database answers; load balancers and the demo wait on it."""
    await connections.get("default").execute_query("SELECT 1")
    return json({"status": "ok"})
