"""Measure a roster import by hand: preview and apply N generated rows, time and peak memory.

    python scripts/bench_roster.py 100000                      # SQLite in a temporary folder
    python scripts/bench_roster.py 100000 --db-url mysql://root:@127.0.0.1:3306/bench

The MySQL database must exist and be empty; it is migrated first. Prints seconds per phase,
the process's peak resident memory, and the longest event-loop stall seen while it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import context, db
from backend.models import StaffUser, Veteran
from backend.services import roster
from backend.services.regions import seed_regions
from backend.services.roster import apply_import, preview_import
from backend.settings import Settings
from scripts.make_roster import make_rows, write_xlsx


def peak_mb() -> str:
    """Peak resident set size of this process and of its largest child (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return f"{own:.0f} MB (parser process {child:.0f} MB)"


async def watch_loop(stalls: list[float], stop: asyncio.Event) -> None:
    """Record how late a 10 ms timer fires: a blocked loop shows as a long stall."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        stalls.append(time.perf_counter() - started - 0.01)


async def run(count: int, db_url: str, workdir: Path) -> None:
    xlsx = workdir / "roster.xlsx"
    started = time.perf_counter()
    write_xlsx(xlsx, make_rows(count))
    data = xlsx.read_bytes()
    took = time.perf_counter() - started
    print(f"generated {count} rows: {len(data) / 1e6:.1f} MB in {took:.1f} s")

    settings = Settings(env="test", data_dir=workdir / "data", database_url=db_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    await db.migrate(db_url)
    await db.init(db_url)
    context.install(context.build(settings))
    await seed_regions()
    # A province-level account, so every seeded county is in scope; it never logs in.
    staff = await StaffUser.create(
        username="bench",
        display_name="bench",
        password_hash="!",  # noqa: S106
        region_id="140000",
    )
    del xlsx
    print(f"ready, peak so far {peak_mb()}")

    stalls: list[float] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_loop(stalls, stop))
    started = time.perf_counter()
    batch = await preview_import(staff, "roster.xlsx", data)
    preview_s = time.perf_counter() - started
    if roster._pool is not None:
        # Reap the parser process so that RUSAGE_CHILDREN includes its peak.
        roster._pool.shutdown(wait=True)
        roster._pool = None
    print(
        f"preview: {preview_s:.1f} s, status {batch.status}, new {batch.created_count}, "
        f"errors {batch.error_count}, peak {peak_mb()}"
    )
    started = time.perf_counter()
    await apply_import(staff, batch.id)
    apply_s = time.perf_counter() - started
    stop.set()
    await watcher
    stored = await Veteran.all().count()
    print(f"apply: {apply_s:.1f} s, veterans {stored}, peak {peak_mb()}")
    stall_ms = max(stalls) * 1000
    print(f"total {preview_s + apply_s:.1f} s, longest event-loop stall {stall_ms:.0f} ms")

    started = time.perf_counter()
    again = await preview_import(staff, "roster.xlsx", data)
    print(
        f"re-import preview: {time.perf_counter() - started:.1f} s, "
        f"unchanged {again.unchanged_count}, peak {peak_mb()}"
    )
    await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int)
    parser.add_argument("--db-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db_url or f"sqlite://{tmp}/bench.sqlite3"
        asyncio.run(run(args.count, url, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
