"""The per-process services a request or a job needs: settings, cipher, shared store, WeChat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backend.crypto import FieldCipher
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.store import SharedStore
    from backend.wechat.client import WechatClient


@dataclass
class Context:
    settings: Settings
    cipher: FieldCipher
    store: SharedStore | Any = None
    wechat: WechatClient | Any = None


_current: Context | None = None


def install(context: Context) -> Context:
    """Make this the process's context; create_app and the CLI call it once."""
    global _current
    _current = context
    return context


def current() -> Context:
    if _current is None:
        raise RuntimeError("backend.context.install() has not been called")
    return _current


def build(settings: Settings) -> Context:
    """A context with the shared store and WeChat client wired from settings."""
    from backend.store import make_store
    from backend.wechat.client import WechatClient

    store = make_store(settings)
    return Context(settings, FieldCipher(settings), store, WechatClient(settings, store))
