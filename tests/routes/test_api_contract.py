"""The API contract in miniprogram_api_docs/ is the one the running code serves and keeps."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from backend.errors import all_error_classes
from backend.settings import Settings
from scripts import export_openapi
from tests.factories import fake_id_number, make_region_tree, make_veteran

DOCS = Path(__file__).resolve().parents[2] / "miniprogram_api_docs"

# Bounded so the whole run stays well under a minute.
EXAMPLES_PER_OPERATION = 12

# Revoking the token would leave the rest of the run unauthenticated; tested on its own.
NOT_FUZZED = {"delete_session"}


async def test_served_openapi_equals_the_committed_copy(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    committed = json.loads((DOCS / "openapi.json").read_text(encoding="utf-8"))
    assert response.json() == committed, "run: python -m scripts.export_openapi"


def test_every_error_code_is_in_the_readme() -> None:
    readme = (DOCS / "README.md").read_text(encoding="utf-8")

    missing = {cls.code for cls in all_error_classes() if f"`{cls.code}`" not in readme}

    assert not missing, f"undocumented error codes: {sorted(missing)}"


def test_committed_docs_are_what_the_export_script_writes() -> None:
    assert export_openapi.main(["--check"]) == 0, "run: python -m scripts.export_openapi"


async def bound_token(client: httpx.AsyncClient, standin: str) -> str:
    """A bound veteran's bearer token, so fuzzed calls get past authentication."""
    await make_region_tree()
    veteran = await make_veteran(id_number=fake_id_number(301), phone="13900000301")
    async with httpx.AsyncClient(base_url=standin) as wechat:
        login = (await wechat.post("/__standin__/login-code", json={"openid": "o-fuzz"})).json()
        phone = await wechat.post(
            "/__standin__/phone-code", json={"openid": "o-fuzz", "phone": "13900000301"}
        )
    token = (await client.post("/api/v1/sessions", json={"code": login["code"]})).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    await client.post("/api/v1/privacy-consents", json={"version": "2026-01"}, headers=headers)
    body = {
        "name": veteran.name,
        "id_number": fake_id_number(301),
        "phone_code": phone.json()["code"],
    }
    bound = await client.post("/api/v1/bindings", json=body, headers=headers)
    assert bound.status_code == 201, bound.text
    return str(token)


def fuzz(base_url: str, token: str) -> tuple[Counter[int], list[str]]:
    """Drive every operation with generated requests; the statuses seen and what failed."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")

    # Registered as auth, so a negative case that drops the Authorization header stays without
    # it (and must get 401) instead of having the token put back.
    @schema.auth()
    class Bearer:
        def get(self, case: schemathesis.Case, ctx: object) -> str:
            return token

        def set(self, case: schemathesis.Case, data: str, ctx: object) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") in NOT_FUZZED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=base_url, timeout=10)
                statuses[response.status_code] += 1
                # Well-formed input may still be refused by a rule (an unknown ID number, a
                # used login code) with a documented 4xx: that is inside the contract.
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

            try:
                run()
            except Exception as exc:  # every failure is collected and reported at once
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return statuses, failures


@pytest.mark.e2e
async def test_fuzzed_requests_get_no_5xx_and_no_answer_outside_the_contract(
    server: tuple[str, Settings], client: httpx.AsyncClient, standin: str
) -> None:
    token = await bound_token(client, standin)

    # schemathesis calls over blocking HTTP: a thread keeps this loop free to serve it.
    statuses, failures = await asyncio.to_thread(fuzz, server[0], token)

    assert statuses.total() >= 5 * EXAMPLES_PER_OPERATION
    assert statuses[200] > 0 and statuses[422] > 0, statuses  # got past auth, and was refused
    assert not failures, "\n\n".join(failures[:5])
