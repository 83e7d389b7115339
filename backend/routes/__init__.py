"""Blueprints: the mini-program API (api_*), the WeChat push URL and the staff portal (portal_*)."""

from __future__ import annotations

import importlib

from sanic import Blueprint

MODULES = (
    "backend.routes.api_accounts",
    "backend.routes.api_registrations",
    "backend.routes.api_notifications",
    "backend.routes.openapi",
    "backend.routes.wechat_push",
    "backend.routes.portal_auth",
    "backend.routes.portal_staff",
    "backend.routes.portal_veterans",
    "backend.routes.portal_roster",
    "backend.routes.portal_registrations",
    "backend.routes.portal_interviews",
    "backend.routes.portal_notifications",
)


def blueprints() -> list[Blueprint]:
    """Every blueprint of the service, imported on demand so nothing registers at import time."""
    return [importlib.import_module(name).bp for name in MODULES]
