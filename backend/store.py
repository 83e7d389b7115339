"""The shared store: one copy of short-lived shared state (tokens, locks, rate counts) for all
processes, in the database by default and in Redis when APP_REDIS_URL is set."""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from backend.models.shared import RateBucket, SharedValue
from backend.settings import Settings

logger = logging.getLogger(__name__)

# Both tables key on VARCHAR(191): the longest utf8mb4 key an InnoDB index takes everywhere.
_MAX_KEY = 191


@runtime_checkable
class SharedStore(Protocol):
    """What every process may rely on being shared with every other process."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    async def add(self, key: str, value: str, ttl_seconds: int) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def hit(self, key: str, window_seconds: int) -> int: ...

    async def close(self) -> None: ...


def make_store(settings: Settings) -> SharedStore:
    """Redis when configured, else the database the service already uses."""
    if settings.redis_url:
        return RedisStore(settings.redis_url)
    return DatabaseStore()


def _short_key(key: str) -> str:
    # Long keys keep a readable head and a digest of the whole, so two never collide.
    if len(key) <= _MAX_KEY:
        return key
    return key[:120] + "#" + hashlib.sha256(key.encode()).hexdigest()


def _window_start(window_seconds: int) -> int:
    now = int(time.time())
    return now - now % window_seconds


class DatabaseStore:
    """The store on the SharedValue and RateBucket tables; safe across processes.

    Every write is a single guarded statement, and a lost insert race (a duplicate key)
    is caught and resolved here, never raised to the caller.
    """

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return _short_key(self._prefix + key)

    async def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""
        row = await SharedValue.filter(key=self._key(key)).first()
        if row is None:
            return None
        if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
            # Expired rows are removed lazily; the guard keeps a fresh rewrite alive.
            await SharedValue.filter(key=row.key, expires_at__lte=datetime.now(UTC)).delete()
            return None
        return row.value

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        """Write the value whether or not one exists."""
        full = self._key(key)
        expires = _expiry(ttl_seconds)
        updated = await SharedValue.filter(key=full).update(value=value, expires_at=expires)
        if updated:
            return
        try:
            await SharedValue.create(key=full, value=value, expires_at=expires)
        except IntegrityError:
            # Another process inserted between our update and insert: last writer wins.
            await SharedValue.filter(key=full).update(value=value, expires_at=expires)

    async def add(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Write only if absent (or expired); True when this caller got it."""
        full = self._key(key)
        expires = _expiry(ttl_seconds)
        try:
            await SharedValue.create(key=full, value=value, expires_at=expires)
            return True
        except IntegrityError:
            pass
        # The row exists; take it over only if it has expired. The expiry in the WHERE
        # clause makes this a compare-and-set: of two racing callers only one matches.
        taken = await SharedValue.filter(key=full, expires_at__lte=datetime.now(UTC)).update(
            value=value, expires_at=expires
        )
        return bool(taken)

    async def delete(self, key: str) -> None:
        """Remove the key if present."""
        await SharedValue.filter(key=self._key(key)).delete()

    async def hit(self, key: str, window_seconds: int) -> int:
        """Count one hit in the current fixed window and return the window's count."""
        full = self._key(key)
        start = _window_start(window_seconds)
        bucket = RateBucket.filter(key=full, window_start=start)
        if not await bucket.update(count=F("count") + 1):
            try:
                await RateBucket.create(key=full, window_start=start, count=1)
            except IntegrityError:
                await bucket.update(count=F("count") + 1)
            else:
                # A new window began: earlier windows of this key will never be read again.
                await RateBucket.filter(key=full, window_start__lt=start).delete()
        row = await bucket.first()
        return row.count if row else 1

    async def close(self) -> None:
        """Nothing to release: the database connection belongs to the app."""


def _expiry(ttl_seconds: int) -> datetime | None:
    if ttl_seconds <= 0:
        return None
    return datetime.now(UTC) + timedelta(seconds=ttl_seconds)


class RedisStore:
    """The store on Redis: each operation is one atomic Redis command or transaction."""

    def __init__(self, url: str, prefix: str = "vetsvc:") -> None:
        # Imported here so that a deployment without Redis never loads the client.
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, decode_responses=True)
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> str | None:
        """The value, or None when absent or expired."""
        value = await self._redis.get(self._key(key))
        return value if value is None else str(value)

    async def set(self, key: str, value: str, ttl_seconds: int) -> None:
        """Write the value whether or not one exists."""
        await self._redis.set(self._key(key), value, ex=ttl_seconds if ttl_seconds > 0 else None)

    async def add(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Write only if absent; True when this caller got it."""
        done = await self._redis.set(
            self._key(key), value, ex=ttl_seconds if ttl_seconds > 0 else None, nx=True
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        """Remove the key if present."""
        await self._redis.delete(self._key(key))

    async def hit(self, key: str, window_seconds: int) -> int:
        """Count one hit in the current fixed window and return the window's count."""
        start = _window_start(window_seconds)
        bucket = f"{self._key(key)}@{start}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(bucket)
            pipe.expire(bucket, window_seconds + 1)
            count, _ = await pipe.execute()
        return int(count)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
