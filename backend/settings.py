"""Typed settings read once from APP_* environment variables."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

# Keys for development and tests only: production refuses to start with them.
DEV_SECRET_KEY = "dev-only-secret-key-change-me"  # noqa: S105
DEV_FIELD_KEY = base64.b64encode(b"dev-only-field-key-32-bytes-long").decode()
DEV_LOOKUP_KEY = base64.b64encode(b"dev-only-lookup-key-32-bytes-lon").decode()

ENVIRONMENTS = ("development", "test", "production")


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe for the environment."""


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"not a boolean: {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment; see README's table."""

    env: str = "development"
    data_dir: Path = Path("data")
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)
    field_key: str = field(default=DEV_FIELD_KEY, repr=False)
    lookup_key: str = field(default=DEV_LOOKUP_KEY, repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cookie_secure: bool = True
    session_hours: int = 8
    token_hours: int = 72
    privacy_version: str = "2026-01"
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_appid: str = "wx0000000000000000"
    wechat_secret: str = field(default="", repr=False)
    wechat_push_token: str = field(default="", repr=False)
    wechat_aes_key: str = field(default="", repr=False)
    wechat_miniprogram_state: str = "formal"
    wechat_timeout: float = 5.0
    login_lockout_failures: int = 5
    login_lockout_minutes: int = 15
    totp_required: bool = False
    bind_attempts_per_hour: int = 5
    max_body_bytes: int = 64 * 1024
    max_upload_bytes: int = 20 * 1024 * 1024
    review_period_days: int = 30
    correction_days: int = 15
    dispatcher_batch: int = 50
    log_level: str = "INFO"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite://{self.data_dir / 'vetsvc.sqlite3'}"

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def totp_enforced(self) -> bool:
        """Staff must log in with a TOTP code: always in production, elsewhere on request."""
        return self.is_production or self.totp_required

    def field_key_bytes(self) -> bytes:
        return _key_bytes("APP_FIELD_KEY", self.field_key)

    def lookup_key_bytes(self) -> bytes:
        return _key_bytes("APP_LOOKUP_KEY", self.lookup_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from APP_* variables; unknown values fail loudly."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in fields(cls):
            raw = environ.get("APP_" + item.name.upper())
            if raw is None:
                continue
            kind = type(item.default)
            try:
                if kind is bool:
                    values[item.name] = _bool(raw)
                elif kind is int:
                    values[item.name] = int(raw)
                elif kind is float:
                    values[item.name] = float(raw)
                elif item.name == "data_dir":
                    values[item.name] = Path(raw)
                else:
                    values[item.name] = raw
            except ValueError as exc:
                raise SettingsError(f"APP_{item.name.upper()}: {exc}") from exc
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.is_production and values.get("totp_required") is False:
            # Production always asks for the second factor; an explicit "off" is a mistake.
            raise SettingsError("APP_TOTP_REQUIRED=false is refused in production")
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse unsafe combinations before anything starts."""
        if self.env not in ENVIRONMENTS:
            raise SettingsError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}")
        self.field_key_bytes()
        self.lookup_key_bytes()
        if not self.is_production:
            return
        if not self.cookie_secure:
            raise SettingsError("APP_COOKIE_SECURE=false is refused in production")
        unsafe = {
            "APP_SECRET_KEY": self.secret_key == DEV_SECRET_KEY,
            "APP_FIELD_KEY": self.field_key == DEV_FIELD_KEY,
            "APP_LOOKUP_KEY": self.lookup_key == DEV_LOOKUP_KEY,
            "APP_WECHAT_SECRET": not self.wechat_secret,
            "APP_WECHAT_PUSH_TOKEN": not self.wechat_push_token,
            "APP_WECHAT_AES_KEY": not self.wechat_aes_key,
            "APP_DATABASE_URL": not self.database_url,
        }
        missing = [name for name, bad in unsafe.items() if bad]
        if missing:
            raise SettingsError("production needs real values for " + ", ".join(missing))


def _key_bytes(name: str, value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise SettingsError(f"{name} must be base64") from exc
    if len(key) != 32:
        raise SettingsError(f"{name} must decode to 32 bytes")
    return key
