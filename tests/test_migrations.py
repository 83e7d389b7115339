"""The schema comes from the migrations alone, and the indexes the list pages rely on exist.

tortoise-orm 1.1.9's AddField ignores db_index=True, so an index that a later migration adds by
field flag would silently be missing; this test reads the live schema on each database.
"""

from __future__ import annotations

from tortoise import connections

from backend.settings import Settings
from tests.conftest import TEST_DB

# table -> column lists that must lead some index (in this order)
REQUIRED_INDEXES = {
    "veteran": [["county_code"], ["phone_hash"], ["id_hash"]],
    "annual_registration": [
        ["report_year", "status", "county_code", "id"],
        ["report_year", "county_code", "id"],
        ["veteran_id", "report_year"],
    ],
    "outbox_message": [["status", "next_attempt_at"], ["msgid"]],
    "audit_log": [["created_at"], ["object_type", "object_id"]],
    "registration_version": [["registration_id", "version_no"]],
    "interview": [["county_code"]],
    "phone_task": [["county_code"]],
    "wechat_account": [["openid"], ["veteran_id"]],
}


async def _index_columns(table: str) -> list[list[str]]:
    conn = connections.get("default")
    if TEST_DB == "mariadb":
        _, rows = await conn.execute_query(
            "SELECT index_name, column_name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY index_name, seq_in_index",
            [table],
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            values = {k.lower(): v for k, v in row.items()}
            found.setdefault(values["index_name"], []).append(values["column_name"])
        return list(found.values())
    _, rows = await conn.execute_query(f"PRAGMA index_list('{table}')")
    result = []
    for row in rows:
        _, cols = await conn.execute_query(f"PRAGMA index_info('{row['name']}')")
        result.append([c["name"] for c in sorted(cols, key=lambda c: c["seqno"])])
    return result


async def test_indexes_the_list_pages_rely_on_exist(db_ready: Settings) -> None:
    missing = []
    for table, wanted in REQUIRED_INDEXES.items():
        present = await _index_columns(table)
        for columns in wanted:
            if not any(index[: len(columns)] == columns for index in present):
                missing.append((table, columns))

    assert missing == []


async def test_schema_is_recorded_as_migrated(db_ready: Settings) -> None:
    conn = connections.get("default")
    _, rows = await conn.execute_query("SELECT name FROM tortoise_migrations")

    assert [row["name"] for row in rows] == ["0001_initial"]
