"""The app factory, error bodies and settings: what every route relies on."""

from __future__ import annotations

import httpx
import pytest

from backend.errors import all_error_classes
from backend.settings import Settings, SettingsError
from tests.factories import PORTAL_PASSWORD, make_region_tree, make_staff, portal_login


async def test_health_answers_once_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-request-id"]


async def test_unknown_api_path_answers_the_error_body(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert response.json()["error"]["message"] == "没有找到相关记录。"


async def test_openapi_document_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_each_error_code_means_one_http_status() -> None:
    statuses: dict[str, set[int]] = {}
    for cls in all_error_classes():
        statuses.setdefault(cls.code, set()).add(cls.status)

    assert {code: s for code, s in statuses.items() if len(s) > 1} == {}


def test_production_refuses_plain_http_cookies() -> None:
    with pytest.raises(SettingsError, match="APP_COOKIE_SECURE"):
        Settings.from_env({"APP_ENV": "production", "APP_COOKIE_SECURE": "false"})


def test_production_refuses_development_keys() -> None:
    with pytest.raises(SettingsError, match="APP_FIELD_KEY"):
        Settings.from_env({"APP_ENV": "production", "APP_DATABASE_URL": "mysql://u:p@db/x"})


def test_settings_hide_secrets_in_repr() -> None:
    settings = Settings(wechat_secret="very-secret-value")

    assert "very-secret-value" not in repr(settings)


def test_malformed_setting_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="APP_PORT"):
        Settings.from_env({"APP_PORT": "eighty"})


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"[" * 5000 + b"]" * 5000, {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b'{"code": NaN}', {"content-type": "application/json"}),
        (b'{"code": "x"}', {"content-type": "text/plain"}),
        (b'{"code": "x"', {"content-type": "application/json"}),
    ],
    ids=["deeply-nested", "empty", "nan", "not-json-type", "truncated"],
)
async def test_malformed_bodies_are_refused_with_the_error_body(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str]
) -> None:
    response = await client.post("/api/v1/sessions", content=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MALFORMED_REQUEST"


async def test_an_id_too_large_for_the_database_is_not_found(client: httpx.AsyncClient) -> None:
    await make_region_tree()
    staff = await make_staff(password=PORTAL_PASSWORD)
    csrf = await portal_login(client, staff.username)

    page = await client.get("/portal/registrations/99999999999999999999")
    action = await client.post(
        "/portal/registrations/99999999999999999999/approve",
        data={"csrf_token": csrf, "lock_version": "0"},
    )

    assert page.status_code == 404
    assert action.status_code == 404


def test_every_path_parameter_is_declared_in_the_contract() -> None:
    from backend.openapi import build_document
    from backend.routes import blueprints

    blueprints()
    document = build_document()

    for path, operations in document["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for operation in operations.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path
    assert "202" in document["paths"]["/api/v1/bindings"]["post"]["responses"]
