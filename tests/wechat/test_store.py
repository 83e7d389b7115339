"""The shared store, on the database and on Redis: values, locks, counts, and their races."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.settings import Settings
from backend.store import DatabaseStore, RedisStore, SharedStore, make_store

REDIS_URL = os.environ.get("APP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parents[2]


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["database", "redis"])
async def store(request: pytest.FixtureRequest, db_ready: Settings) -> AsyncIterator[SharedStore]:
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    if request.param == "database":
        yield DatabaseStore(prefix)
        return
    if not _redis_answers():
        pytest.skip("Redis is not answering on 127.0.0.1:6379")
    redis_store = RedisStore(REDIS_URL, prefix=prefix)
    yield redis_store
    keys = [k async for k in redis_store._redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis_store._redis.delete(*keys)
    await redis_store.close()


async def test_a_value_set_is_read_back_until_its_time_runs_out(store: SharedStore) -> None:
    await store.set("token", "abc", ttl_seconds=1)

    assert await store.get("token") == "abc"
    await asyncio.sleep(1.2)
    assert await store.get("token") is None


async def test_setting_again_replaces_the_value(store: SharedStore) -> None:
    await store.set("token", "old", ttl_seconds=60)
    await store.set("token", "new", ttl_seconds=60)

    assert await store.get("token") == "new"


async def test_add_takes_a_lock_only_once_until_it_expires(store: SharedStore) -> None:
    assert await store.add("lock", "first", ttl_seconds=1) is True
    assert await store.add("lock", "second", ttl_seconds=1) is False
    assert await store.get("lock") == "first"

    await asyncio.sleep(1.2)
    assert await store.add("lock", "third", ttl_seconds=1) is True
    assert await store.get("lock") == "third"


async def test_a_deleted_lock_can_be_taken_again(store: SharedStore) -> None:
    await store.add("lock", "a", ttl_seconds=60)
    await store.delete("lock")

    assert await store.get("lock") is None
    assert await store.add("lock", "b", ttl_seconds=60) is True


async def test_of_many_racing_adds_exactly_one_wins(store: SharedStore) -> None:
    results = await asyncio.gather(*(store.add("race", str(i), 30) for i in range(20)))

    assert results.count(True) == 1


async def test_hits_are_counted_per_key_in_the_current_window(store: SharedStore) -> None:
    counts = [await store.hit("bind:acct1", window_seconds=3600) for _ in range(3)]
    other = await store.hit("bind:acct2", window_seconds=3600)

    assert counts == [1, 2, 3]
    assert other == 1


async def test_concurrent_hits_lose_no_count(store: SharedStore) -> None:
    await asyncio.gather(*(store.hit("burst", 3600) for _ in range(30)))

    assert await store.hit("burst", 3600) == 31


async def test_a_new_window_starts_counting_from_one(store: SharedStore) -> None:
    await store.hit("short", window_seconds=1)
    await store.hit("short", window_seconds=1)
    await asyncio.sleep(1.05)

    assert await store.hit("short", window_seconds=1) == 1


async def test_keys_longer_than_the_column_still_work(store: SharedStore) -> None:
    long_a, long_b = "k" * 300 + "a", "k" * 300 + "b"
    await store.set(long_a, "A", 60)
    await store.set(long_b, "B", 60)

    assert (await store.get(long_a), await store.get(long_b)) == ("A", "B")


def test_the_database_is_the_store_unless_redis_is_configured(tmp_path: Path) -> None:
    assert isinstance(make_store(Settings(data_dir=tmp_path)), DatabaseStore)
    assert isinstance(make_store(Settings(redis_url=REDIS_URL)), RedisStore)


_WORKER = """
import asyncio, json, sys
from tortoise import Tortoise
from backend import db
from backend.store import DatabaseStore

async def main(url, prefix):
    await db.init(url)
    store = DatabaseStore(prefix)
    won = await store.add("lock", "worker", 60)
    counts = [await store.hit("hits", 3600) for _ in range(10)]
    await Tortoise.close_connections()
    print(json.dumps({"won": won, "last": counts[-1]}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_processes_sharing_the_database_share_locks_and_counts(
    db_ready: Settings,
) -> None:
    prefix = f"proc-{uuid.uuid4().hex[:8]}:"
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _WORKER,
            db_ready.db_url,
            prefix,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(4)
    ]
    outputs = [json.loads((await w.communicate())[0]) for w in workers]

    assert [w.returncode for w in workers] == [0, 0, 0, 0]
    assert sum(o["won"] for o in outputs) == 1
    assert await DatabaseStore(prefix).hit("hits", 3600) == 41
