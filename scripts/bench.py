"""First benchmark (DESIGN §7): the veteran's status reads and registration submit, and a ceiling.

Seeds its own database (SQLite in a temporary folder, or with --db mariadb a MariaDB database it
creates and drops), starts the real service (`vetsvc serve`, one worker) and the ceiling app
(scripts/bench_ceiling.py: the thinnest Sanic + Tortoise routes doing the same database work) one
after the other on loopback ports, and loads each with a small keep-alive asyncio HTTP client at
each connection count for a bounded time. Reports requests per second, p50/p95/p99 latency and
the ratio to the ceiling against the bars, and counts rows after each submit case: every 2xx
answer must be exactly one registration and one version, nothing lost, nothing doubled.

    python scripts/bench.py [--db sqlite|mariadb] [--duration 10] [--connections 8 64]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import context, db
from backend.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MARIADB_ADMIN = {"host": HOST, "port": 3306, "user": "root", "password": ""}
COUNTY = "140105"
CONTENT = {
    "associations": [{"name": "基准测试志愿服务队", "role": "队员", "joined_on": None}],
    "remarks": "基准测试 🙂",
}
_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


@dataclass
class Pool:
    """Veterans with tokens: ids first..first+size-1, token f"{prefix}-{n}"."""

    prefix: str
    first: int
    size: int

    def tokens(self) -> Iterator[tuple[int, str]]:
        for n in range(self.size):
            yield self.first + n, f"{self.prefix}-{n}"


@dataclass
class Result:
    target: str
    case: str
    connections: int
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    check: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# -- seeding -------------------------------------------------------------------------------------


def _id_number(i: int) -> str:
    from backend.services.idcard import check_digit

    birth = dt.date(1960, 1, 1) + dt.timedelta(days=i // 500)
    first17 = f"{COUNTY}{birth:%Y%m%d}{i % 500:03d}"
    return first17 + check_digit(first17)


async def seed(settings: Settings, pools: list[Pool], year: int) -> None:
    """Regions, an open window, and bound veterans with live tokens; half the readers filed."""
    from backend.crypto import mask_id_number, token_digest
    from backend.models import (
        AnnualRegistration,
        ApiToken,
        RegistrationWindow,
        Veteran,
        WechatAccount,
    )
    from backend.services.regions import seed_regions

    await db.migrate(settings.db_url)
    await db.init(settings.db_url)
    cipher = context.install(context.build(settings)).cipher
    await seed_regions()
    today = dt.date.today()
    await RegistrationWindow.create(
        report_year=year, opens_on=today - dt.timedelta(days=30), closes_on=today + dt.timedelta(30)
    )
    now = dt.datetime.now(dt.UTC)
    for pool in pools:
        rows = list(pool.tokens())
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            veterans, accounts, tokens, regs = [], [], [], []
            for vid, token in chunk:
                number = _id_number(vid)
                veterans.append(
                    Veteran(
                        id=vid,
                        name=f"基准{vid}",
                        id_cipher=cipher.encrypt(number, "veteran.id_number"),
                        id_hash=cipher.lookup_hash(number, "veteran.id_number"),
                        id_masked=mask_id_number(number),
                        birth_date=dt.date(1970, 1, 1),
                        county_code=COUNTY,
                        pay_start_date=dt.date(2015, 1, 1),
                    )
                )
                accounts.append(
                    WechatAccount(
                        id=vid,
                        openid=f"bench-{vid}",
                        veteran_id=vid,
                        privacy_version=settings.privacy_version,
                        privacy_accepted_at=now,
                        bound_at=now,
                    )
                )
                tokens.append(
                    ApiToken(
                        id=token_digest(token),
                        account_id=vid,
                        expires_at=now + dt.timedelta(days=1),
                    )
                )
                if pool.prefix == "read" and vid % 2:
                    regs.append(
                        AnnualRegistration(
                            veteran_id=vid,
                            report_year=year,
                            county_code=COUNTY,
                            status="submitted",
                            draft=CONTENT,
                            current_version=1,
                        )
                    )
            await Veteran.bulk_create(veterans)
            await WechatAccount.bulk_create(accounts)
            await ApiToken.bulk_create(tokens)
            if regs:
                await AnnualRegistration.bulk_create(regs)
    ctx = context.current()
    await ctx.wechat.close()
    await ctx.store.close()
    await db.close()


async def count_rows(settings: Settings, pool: Pool) -> tuple[int, int]:
    """(registrations, versions) belonging to a submit pool's veterans."""
    from backend.models import AnnualRegistration, RegistrationVersion

    await db.init(settings.db_url)
    try:
        last = pool.first + pool.size - 1
        regs = await AnnualRegistration.filter(veteran_id__gte=pool.first, veteran_id__lte=last)
        versions = await RegistrationVersion.filter(
            registration__veteran_id__gte=pool.first, registration__veteran_id__lte=last
        ).count()
        return len(regs), versions
    finally:
        await db.close()


# -- the load client -----------------------------------------------------------------------------


def get_request(path: str, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


def post_request(path: str, token: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, ensure_ascii=False).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    match = _LENGTH.search(head)
    if match:
        await reader.readexactly(int(match.group(1)))
    return int(head[9:12])


async def load(
    port: int, next_request: Callable[[], bytes | None], connections: int, seconds: float
) -> Result:
    """Keep `connections` keep-alive connections busy until time is up or requests run out."""
    result = Result("", "", connections)
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                request = next_request()
                if request is None:
                    return
                started = time.perf_counter()
                status = await _exchange(reader, writer, request)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status >= 300:
                    result.errors += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.seconds = time.perf_counter() - began
    result.requests = len(result.latencies)
    return result


def cycle(requests: list[bytes]) -> Callable[[], bytes]:
    state = {"i": 0}

    def next_request() -> bytes:
        state["i"] = (state["i"] + 1) % len(requests)
        return requests[state["i"]]

    return next_request


def once_each(requests: list[bytes]) -> Callable[[], bytes | None]:
    queue = deque(requests)
    return lambda: queue.popleft() if queue else None


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_service(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(
        APP_ENV="development",
        APP_DATABASE_URL=settings.db_url,
        APP_DATA_DIR=str(settings.data_dir),
        APP_COOKIE_SECURE="false",
        APP_LOG_LEVEL="WARNING",
        APP_WECHAT_API_BASE="http://127.0.0.1:9",
    )
    command = [sys.executable, "-m", "backend.cli", "serve", "--no-migrate", "--port", str(port)]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def start_ceiling(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(ROOT / "scripts" / "bench_ceiling.py"),
        "--port",
        str(port),
        "--db-url",
        settings.db_url,
    ]
    return subprocess.Popen(command, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def wait_ready(port: int, probe: bytes, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited ({process.returncode})")
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            status = await _exchange(reader, writer, probe)
            writer.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"server on port {port} did not answer 200 to the probe")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    me: str
    current: str
    submit: str


SERVICE = Target(
    "service",
    "/api/v1/me",
    "/api/v1/registrations/current",
    "/api/v1/registrations/{year}/submission",
)
CEILING = Target("ceiling", "/me", "/current", "/submit/{year}")


async def run_target(
    target: Target,
    port: int,
    settings: Settings,
    read_pool: Pool,
    submit_pools: dict[int, Pool],
    year: int,
    args: argparse.Namespace,
) -> list[Result]:
    """Warm up, then every case at every connection count against one running server."""
    results = []
    read_tokens = [token for _, token in read_pool.tokens()]
    for case, path in (("GET /me", target.me), ("GET /registrations/current", target.current)):
        requests = [get_request(path, token) for token in read_tokens]
        await load(port, cycle(requests), max(args.connections), args.warmup)
        for conns in args.connections:
            result = await load(port, cycle(requests), conns, args.duration)
            result.target, result.case = target.name, case
            results.append(result)
            print(_line(result), flush=True)
    for conns in args.connections:
        pool = submit_pools[conns]
        path = target.submit.format(year=year)
        body = {"content": CONTENT}
        requests = [post_request(path, token, body) for _, token in pool.tokens()]
        result = await load(port, once_each(requests), conns, args.duration)
        result.target, result.case = target.name, "POST submission"
        if len(requests) == result.requests:
            result.check = "pool exhausted: raise --submit-pool. "
        regs, versions = await count_rows(settings, pool)
        ok = result.requests - result.errors
        lost_or_doubled = regs != ok or versions != ok
        result.check += f"{ok} accepted, {regs} rows, {versions} versions: " + (
            "MISMATCH" if lost_or_doubled else "none lost or doubled"
        )
        results.append(result)
        print(_line(result), flush=True)
    return results


def _line(r: Result) -> str:
    return (
        f"{r.target:<8} {r.case:<28} c={r.connections:<3} {r.rps:8.1f} req/s  "
        f"p50 {r.pct(0.50):6.1f} ms  p95 {r.pct(0.95):6.1f} ms  p99 {r.pct(0.99):6.1f} ms  "
        f"errors {r.errors} {r.statuses} {r.check}"
    )


def report(results: list[Result], args: argparse.Namespace) -> str:
    """A Markdown table with the ratio to the ceiling and each bar's verdict."""
    by_key = {(r.target, r.case, r.connections): r for r in results}
    lines = [
        "| case | conns | service req/s | ceiling req/s | ratio | p50 ms | p95 ms | p99 ms | bar |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        if r.target != "service":
            continue
        ceiling = by_key[("ceiling", r.case, r.connections)]
        ratio = r.rps / ceiling.rps if ceiling.rps else 0.0
        lines.append(
            f"| {r.case} | {r.connections} | {r.rps:.0f} | {ceiling.rps:.0f} | {ratio:.0%} | "
            f"{r.pct(0.5):.1f} | {r.pct(0.95):.1f} | {r.pct(0.99):.1f} | {_verdict(r, ratio)} |"
        )
    checks = [f"- {r.target} c={r.connections}: {r.check}" for r in results if r.check]
    return "\n".join([*lines, "", *checks])


def _verdict(r: Result, ratio: float) -> str:
    if r.case.startswith("POST"):
        ok = ratio >= 0.40 and "MISMATCH" not in r.check and r.errors == 0
        return ("met" if ok else "MISSED") + " (≥40% of ceiling, none lost or doubled)"
    p99_bar = 100.0 if r.connections >= 64 else 25.0
    parts = [f"p99 < {p99_bar:.0f} ms: {'met' if r.pct(0.99) < p99_bar else 'MISSED'}"]
    if r.connections >= 64:
        parts.append(f"≥50% of ceiling: {'met' if ratio >= 0.5 else 'MISSED'}")
    return "; ".join(parts) + (f"; {r.errors} errors" if r.errors else "")


async def main_async(args: argparse.Namespace) -> int:
    year = dt.date.today().year - 1
    read_pool = Pool("read", 1, args.read_pool)
    first = 1 + args.read_pool
    submit_pools: dict[str, dict[int, Pool]] = {}
    for target in ("service", "ceiling"):
        submit_pools[target] = {}
        for conns in args.connections:
            submit_pools[target][conns] = Pool(f"submit-{target}-{conns}", first, args.submit_pool)
            first += args.submit_pool
    pools = [read_pool] + [p for t in submit_pools.values() for p in t.values()]

    with tempfile.TemporaryDirectory(prefix="vetsvc-bench-") as tmp:
        folder = Path(tmp)
        db_url, drop = await _database(args.db, folder)
        settings = Settings(env="development", data_dir=folder, database_url=db_url)
        try:
            print(f"seeding {sum(p.size for p in pools)} veterans on {args.db} …", flush=True)
            await seed(settings, pools, year)
            results: list[Result] = []
            probe_token = next(read_pool.tokens())[1]
            for target, starter in ((SERVICE, start_service), (CEILING, start_ceiling)):
                port = free_port()
                process = starter(settings, port, folder / f"{target.name}.log")
                log = folder / f"{target.name}.log"
                try:
                    try:
                        await wait_ready(port, get_request(target.me, probe_token), process)
                    except RuntimeError:
                        print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                        raise
                    results += await run_target(
                        target, port, settings, read_pool, submit_pools[target.name], year, args
                    )
                finally:
                    stop(process)
        finally:
            await drop()
    print()
    print(report(results, args))
    load1, load5, _ = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load1:.1f} (1 min) {load5:.1f} (5 min)")
    return 0


async def _database(kind: str, folder: Path) -> tuple[str, Callable[[], Any]]:
    if kind == "sqlite":

        async def nothing() -> None:
            return None

        return f"sqlite://{folder / 'bench.sqlite3'}", nothing
    import aiomysql

    name = f"vetsvc_bench_{os.getpid()}"

    async def admin(sql: str) -> None:
        conn = await aiomysql.connect(**MARIADB_ADMIN)
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql)
            await conn.commit()
        finally:
            conn.close()

    await admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    async def drop() -> None:
        await admin(f"DROP DATABASE IF EXISTS {name}")

    return f"mysql://root:@{HOST}:3306/{name}", drop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "mariadb"], default="sqlite")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the reads")
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--read-pool", type=int, default=1000, help="veterans the reads rotate")
    parser.add_argument(
        "--submit-pool", type=int, default=8000, help="veterans per submit case (each submits once)"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args())))
