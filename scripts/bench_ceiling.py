"""The benchmark's ceiling: the thinnest Sanic + Tortoise app doing the same database work.

No validation, no error mapping, no audit helper, no middleware: token look-up and the same rows
read (status reads) or inserted (submit), so scripts/bench.py can compare the service with it.
Run by scripts/bench.py as `python scripts/bench_ceiling.py --port P --db-url URL`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from tortoise.transactions import in_transaction

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import db
from backend.models import (
    AnnualRegistration,
    ApiToken,
    AuditLog,
    RegistrationVersion,
    RegistrationWindow,
    TransitionLog,
)


async def _account(request: Request) -> tuple[int, int, str, str]:
    """(account id, veteran id, veteran name, county) for the bearer token, in one query."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = dt.datetime.now(dt.UTC)
    row = (
        await ApiToken.filter(id=digest, revoked_at__isnull=True, expires_at__gt=now)
        .select_related("account__veteran")
        .first()
    )
    veteran = row.account.veteran  # type: ignore[union-attr]
    return row.account.id, veteran.id, veteran.name, veteran.county_code  # type: ignore[union-attr]


def build(db_url: str) -> Sanic:
    """The ceiling app: three routes mirroring /me, /registrations/current and submission."""
    app = Sanic("bench_ceiling")

    @app.before_server_start
    async def start(app: Sanic) -> None:
        await db.init(db_url)  # with the global fallback, as the service does

    @app.after_server_stop
    async def stop(app: Sanic) -> None:
        await db.close()

    @app.get("/me")
    async def me(request: Request) -> HTTPResponse:
        _, veteran_id, name, county = await _account(request)
        year = dt.date.today().year - 1
        reg = await AnnualRegistration.filter(veteran_id=veteran_id, report_year=year).first()
        status = reg.status if reg else None
        return json_response({"name": name, "county": county, "year": year, "status": status})

    @app.get("/current")
    async def current(request: Request) -> HTTPResponse:
        _, veteran_id, _, _ = await _account(request)
        year = dt.date.today().year - 1
        window = await RegistrationWindow.get_or_none(report_year=year)
        reg = await AnnualRegistration.filter(veteran_id=veteran_id, report_year=year).first()
        return json_response(
            {
                "year": year,
                "opens_on": str(window.opens_on) if window else None,
                "status": reg.status if reg else None,
                "draft": reg.draft if reg else None,
            }
        )

    @app.post("/submit/<year:int>")
    async def submit(request: Request, year: int) -> HTTPResponse:
        _, veteran_id, _, county = await _account(request)
        content = json.loads(request.body)["content"]
        now = dt.datetime.now(dt.UTC)
        async with in_transaction():
            reg = await AnnualRegistration.create(
                veteran_id=veteran_id,
                report_year=year,
                county_code=county,
                status="submitted",
                draft=content,
                current_version=1,
                submitted_at=now,
                first_submitted_at=now,
            )
            await RegistrationVersion.create(registration=reg, version_no=1, data=content)
            await TransitionLog.create(
                workflow="registration",
                object_id=reg.id,
                from_state="draft",
                to_state="submitted",
                actor_type="veteran",
                actor_id=veteran_id,
            )
            await AuditLog.create(
                actor_type="veteran",
                actor_id=veteran_id,
                action="registration.submitted",
                object_type="registration",
                object_id=str(reg.id),
            )
        return json_response({"status": "submitted", "report_year": year})

    return app


def main() -> None:
    """Serve the ceiling app on loopback until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-url", required=True)
    args = parser.parse_args()
    app = build(args.db_url)
    app.run(
        host="127.0.0.1",
        port=args.port,
        single_process=True,
        access_log=False,
        motd=False,
    )


if __name__ == "__main__":
    main()
