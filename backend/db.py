"""Tortoise configuration, start-up and the migration entry points."""

from __future__ import annotations

import os
from typing import Any

from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from backend.settings import Settings

MODELS_MODULE = "backend.models"
MIGRATIONS_MODULE = "backend.migrations"


def tortoise_config(db_url: str) -> dict[str, Any]:
    """One config for SQLite and MySQL; MySQL connections speak utf8mb4."""
    url = db_url
    if url.startswith("mysql://") and "charset=" not in url:
        url += ("&" if "?" in url else "?") + "charset=utf8mb4"
    return {
        "connections": {"default": url},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _cli_config() -> dict[str, Any]:
    return tortoise_config(Settings.from_env().db_url)


# Read by the `tortoise` command (pyproject's [tool.tortoise]) for makemigrations.
TORTOISE_ORM = (
    _cli_config() if os.environ.get("TORTOISE_CLI") else tortoise_config("sqlite://:memory:")
)


async def migrate(db_url: str) -> None:
    """Apply every pending migration; the only way the schema changes."""
    await tortoise_migrate(config=tortoise_config(db_url))
    await Tortoise.close_connections()


async def init(db_url: str) -> None:
    # Global fallback: Sanic runs handlers in tasks that do not inherit the listener's context.
    await Tortoise.init(config=tortoise_config(db_url), _enable_global_fallback=True)


async def close() -> None:
    await Tortoise.close_connections()
