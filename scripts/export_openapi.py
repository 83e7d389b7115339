"""Write the mini-program API contract into miniprogram_api_docs/ from the code.

    python -m scripts.export_openapi           # rewrite openapi.json and the README's error table
    python -m scripts.export_openapi --check   # exit 1 when either is out of date (CI)

The OpenAPI document comes from backend.openapi.build_document(), the same function the app
serves at /api/v1/openapi.json; the error-code table comes from backend.errors and the codes the
app factory gives to framework errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "miniprogram_api_docs"
OPENAPI_PATH = DOCS / "openapi.json"
README_PATH = DOCS / "README.md"
TABLE_START = "<!-- error-codes:start -->"
TABLE_END = "<!-- error-codes:end -->"

# Answers the app factory gives itself (backend/app.py), not classes in backend.errors.
FRAMEWORK_CODES = (
    (405, "METHOD_NOT_ALLOWED", "不支持此请求方式。"),
    (408, "REQUEST_TIMEOUT", "请求超时，请重试。"),
    (416, "RANGE_NOT_SATISFIABLE", "请求的范围无效。"),
    (500, "INTERNAL_ERROR", "系统繁忙，请稍后再试。"),
    (503, "SERVICE_UNAVAILABLE", "服务暂时不可用，请稍后再试。"),
)


def build_openapi() -> dict[str, Any]:
    """The document the app serves, with every route module imported."""
    from backend.openapi import build_document
    from backend.routes import blueprints

    blueprints()
    return build_document()


def render_openapi() -> str:
    return json.dumps(build_openapi(), ensure_ascii=False, indent=2) + "\n"


def error_rows() -> list[tuple[int, str, str]]:
    """(status, code, message) for every code a client can meet, one row per code."""
    from backend.errors import all_error_classes

    rows: dict[str, tuple[int, str, str]] = {}
    for cls in all_error_classes():
        rows.setdefault(cls.code, (cls.status, cls.code, cls.message))
    for status, code, message in FRAMEWORK_CODES:
        rows.setdefault(code, (status, code, message))
    return sorted(rows.values(), key=lambda row: (row[0], row[1]))


def render_table() -> str:
    lines = [
        TABLE_START,
        "| HTTP 状态 | code | message（可直接展示给用户） |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {status} | `{code}` | {message} |" for status, code, message in error_rows()]
    lines.append(TABLE_END)
    return "\n".join(lines)


def render_readme(current: str) -> str:
    """The README with the text between the table markers replaced."""
    head, start, rest = current.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise SystemExit(f"{README_PATH} lacks the {TABLE_START} … {TABLE_END} markers")
    return head + render_table() + tail


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, verify) openapi.json and the README's error table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether they are stale")
    args = parser.parse_args(argv)

    wanted = {
        OPENAPI_PATH: render_openapi(),
        README_PATH: render_readme(README_PATH.read_text(encoding="utf-8")),
    }
    stale = [
        path
        for path, text in wanted.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(DOCS.parent)}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
