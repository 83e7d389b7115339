"""Subscribe-message value rules by key prefix (thing1, time2, ...), as WeChat enforces them.

The stand-in answers 47003 with these rules; template configuration can use the same
functions to refuse a field mapping that could not fit, before any message is sent.
"""

from __future__ import annotations

import re

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DATE = r"\d{4}(?:年\d{1,2}月\d{1,2}日|[-/.]\d{1,2}[-/.]\d{1,2})"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?"
_MOMENT = rf"(?:{_DATE}(?:\s*{_CLOCK})?|{_CLOCK})"
_MOMENT_RANGE = re.compile(rf"^{_MOMENT}(?:\s*~\s*{_MOMENT})?$")

_PATTERNS: dict[str, re.Pattern[str]] = {
    "number": re.compile(r"^-?\d+(?:\.\d+)?$"),
    "letter": re.compile(r"^[A-Za-z]{1,32}$"),
    "symbol": re.compile(r"^[^\sA-Za-z0-9" + _CJK + r"]{1,5}$"),
    "character_string": re.compile(r"^[\x21-\x7e]{1,32}$"),
    "phrase": re.compile(rf"^[{_CJK}]{{1,5}}$"),
    "amount": re.compile(r"^[¥￥$€£]?\d{1,10}(?:\.\d{1,2})?元?$"),
    "phone_number": re.compile(r"^[\d+\-() ]{1,17}$"),
    "car_number": re.compile(r"^.{1,8}$"),
}
_NAME_CJK = re.compile(rf"^[{_CJK}·]{{1,10}}$")
_NAME_LATIN = re.compile(r"^[A-Za-z][A-Za-z .'-]{0,19}$")

#: the prefixes whose values may be shortened to fit; every other type must fit as built
SHORTENABLE = frozenset({"thing", "name"})
KNOWN = frozenset(_PATTERNS) | {"thing", "name", "time", "date", "enum"}


def prefix_of(key: str) -> str:
    """thing1 -> thing, character_string12 -> character_string."""
    return key.rstrip("0123456789")


def value_problem(key: str, value: object, enum_values: list[str] | None = None) -> str | None:
    """Why WeChat would refuse this value for this key, or None when it fits."""
    if not isinstance(value, str) or not value.strip():
        return "is empty"
    kind = prefix_of(key)
    if kind == "thing":
        return None if len(value) <= 20 else "longer than 20 characters"
    if kind == "number":
        fits = len(value) <= 32 and _PATTERNS["number"].match(value)
        return None if fits else "not a number of at most 32 digits"
    if kind == "name":
        fits = _NAME_CJK.match(value) or _NAME_LATIN.match(value)
        return None if fits else "not a name of 10 Chinese characters or 20 letters"
    if kind in ("time", "date"):
        return None if _MOMENT_RANGE.match(value) else "not a date or 24-hour time"
    if kind == "enum":
        return None if value in (enum_values or []) else "not one of the template's values"
    pattern = _PATTERNS.get(kind)
    if pattern is None:
        return None if len(value) <= 20 else "longer than 20 characters"
    return None if pattern.match(value) else f"breaks the {kind} rule"


def shorten(key: str, value: str) -> str:
    """Cut a thing or name value to its limit with an ellipsis; other types are returned as is."""
    limit = {"thing": 20, "name": 10}.get(prefix_of(key))
    if limit is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "…"
