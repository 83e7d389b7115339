"""The one async HTTP client for WeChat's server API, with errcodes mapped to typed errors.

wechatpy 1.8 is synchronous and retries token errors without limit, so the HTTP calls live
here on httpx. The access token is the stable kind, kept in the shared store so that every
process uses one copy; `store.add` is the lock that lets only one process fetch it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from backend.errors import (
    WechatBadAnswer,
    WechatBusy,
    WechatCodeInvalid,
    WechatConfigError,
    WechatError,
    WechatPhoneCodeInvalid,
    WechatRefused,
    WechatTimeout,
)
from backend.settings import Settings
from backend.store import SharedStore
from backend.wechat.crypto import EncryptedDataInvalid, decrypt_encrypted_data

logger = logging.getLogger(__name__)

#: an API call answered these: the token is bad, old or expired
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
#: the token endpoint answered these: wrong secret, appid, invalid secret, IP not whitelisted
TOKEN_CONFIG_ERRORS = frozenset({40001, 40013, 40125, 40164})
#: a wx.login code that is invalid or expired, or already used
CODE_ERRORS = frozenset({40029, 40163})
BUSY = -1

# Transport failures before the request can have reached WeChat: safe to try again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Session:
    """The answer of code2session; session_key never leaves the server."""

    openid: str
    session_key: str = field(repr=False)
    unionid: str | None = None


@dataclass(frozen=True)
class PhoneInfo:
    """A WeChat-verified phone number; kept out of reprs so it never reaches a log."""

    phone_number: str = field(repr=False)
    pure_phone_number: str = field(repr=False)
    country_code: str = "86"


class WechatClient:
    """Calls WeChat (or the stand-in at settings.wechat_api_base) without blocking the loop."""

    def __init__(self, settings: Settings, store: SharedStore) -> None:
        self._settings = settings
        self._store = store
        self._http = httpx.AsyncClient(
            base_url=settings.wechat_api_base.rstrip("/"),
            timeout=httpx.Timeout(settings.wechat_timeout),
            follow_redirects=False,
        )
        self._token_key = f"wechat:stable_token:{settings.wechat_appid}"
        self._lock_key = f"wechat:stable_token_lock:{settings.wechat_appid}"
        self._lock_ttl = int(settings.wechat_timeout) + 5

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- login and phone -------------------------------------------------------------------

    async def code2session(self, js_code: str) -> Session:
        """Exchange a wx.login code for the user's openid and session_key.

        Wraps GET /sns/jscode2session ("code2Session"):
        https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html
        """
        params = {
            "appid": self._settings.wechat_appid,
            "secret": self._settings.wechat_secret,
            "js_code": js_code,
            "grant_type": "authorization_code",
        }
        data = _json(await self._send("code2session", "GET", "/sns/jscode2session", params=params))
        _check("code2session", data, code_error=WechatCodeInvalid)
        openid, session_key = data.get("openid"), data.get("session_key")
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str):
            raise WechatBadAnswer(0, "code2session answer lacks openid or session_key")
        unionid = data.get("unionid")
        return Session(openid, session_key, unionid if isinstance(unionid, str) else None)

    async def phone_number(self, code: str, openid: str) -> PhoneInfo:
        """The phone number behind a getPhoneNumber code, checked to be this openid's.

        Wraps POST /wxa/business/getuserphonenumber ("getPhoneNumber"):
        https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-info/phone-number/getPhoneNumber.html
        """
        body = {"code": code, "openid": openid}
        data = _json(
            await self._with_token("getuserphonenumber", "/wxa/business/getuserphonenumber", body)
        )
        _check("getuserphonenumber", data, code_error=WechatPhoneCodeInvalid)
        info = data.get("phone_info")
        if not isinstance(info, dict):
            raise WechatBadAnswer(0, "getuserphonenumber answer lacks phone_info")
        return self._phone_info(info)

    def phone_from_encrypted_data(
        self, session_key: str, encrypted_data: str, iv: str
    ) -> PhoneInfo:
        """The deprecated getPhoneNumber form: decrypt encryptedData with the session_key.

        https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/signature.html
        """
        try:
            info = decrypt_encrypted_data(
                session_key, encrypted_data, iv, self._settings.wechat_appid
            )
        except EncryptedDataInvalid as exc:
            raise WechatPhoneCodeInvalid(0, "encryptedData does not decrypt") from exc
        return self._phone_info(info)

    def _phone_info(self, info: dict[str, Any]) -> PhoneInfo:
        watermark = info.get("watermark")
        appid = watermark.get("appid") if isinstance(watermark, dict) else None
        if appid != self._settings.wechat_appid:
            # A phone number issued to another app must never bind to our roster.
            raise WechatBadAnswer(0, "phone watermark is not our appid")
        phone, pure = info.get("phoneNumber"), info.get("purePhoneNumber")
        if not isinstance(phone, str) or not isinstance(pure, str) or not pure:
            raise WechatBadAnswer(0, "phone_info lacks the number")
        # countryCode is a number in the server API and text in the encrypted form.
        country = info.get("countryCode")
        if isinstance(country, bool) or not isinstance(country, int | str):
            raise WechatBadAnswer(0, "phone_info has no country code")
        return PhoneInfo(phone, pure, str(country))

    # -- messages, checks, codes -----------------------------------------------------------

    async def send_subscribe(self, payload: dict[str, Any]) -> str:
        """Send one subscribe message; WeChat's 64-bit msgid as text.

        Wraps POST /cgi-bin/message/subscribe/send ("sendMessage"):
        https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-message-management/subscribe-message/sendMessage.html
        A WechatTimeout here means the message may or may not have been sent.
        """
        data = _json(
            await self._with_token("subscribe_send", "/cgi-bin/message/subscribe/send", payload)
        )
        _check("subscribe_send", data)
        msgid = data.get("msgid")
        if isinstance(msgid, bool) or not isinstance(msgid, int | str) or msgid == "":
            raise WechatBadAnswer(0, "subscribe send answer lacks msgid")
        return str(msgid)

    async def msg_sec_check(self, openid: str, content: str, scene: int = 2) -> str:
        """The text safety verdict: "pass", "review" or "risky".

        Wraps POST /wxa/msg_sec_check, version 2 ("msgSecCheck"):
        https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/sec-center/sec-check/msgSecCheck.html
        """
        body = {"version": 2, "openid": openid, "scene": scene, "content": content}
        data = _json(await self._with_token("msg_sec_check", "/wxa/msg_sec_check", body))
        _check("msg_sec_check", data)
        result = data.get("result")
        suggest = result.get("suggest") if isinstance(result, dict) else None
        if suggest not in ("pass", "review", "risky"):
            raise WechatBadAnswer(0, "msg_sec_check answer lacks result.suggest")
        return str(suggest)

    async def wxacode(
        self, scene: str, page: str, env_version: str = "release", check_path: bool = True
    ) -> bytes:
        """An unlimited mini-program code image for a scene and page.

        Wraps POST /wxa/getwxacodeunlimit ("getUnlimitedQRCode"):
        https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/qrcode-link/qr-code/getUnlimitedQRCode.html
        """
        body = {"scene": scene, "page": page, "check_path": check_path, "env_version": env_version}
        response = await self._with_token("getwxacodeunlimit", "/wxa/getwxacodeunlimit", body)
        # Failures also come with status 200: only the content type tells an image apart.
        if _is_image(response):
            return response.content
        data = _json(response)
        _check("getwxacodeunlimit", data)
        raise WechatBadAnswer(0, "getwxacodeunlimit answered neither an image nor an error")

    # -- the access token ------------------------------------------------------------------

    async def access_token(self, force: bool = False) -> str:
        """The shared stable access token; force asks WeChat for a new one (use sparingly).

        Wraps POST /cgi-bin/stable_token ("getStableAccessToken"):
        https://developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/mp-access-token/getStableAccessToken.html
        """
        if not force:
            cached = await self._store.get(self._token_key)
            if cached:
                return cached
        return await self._fetch_token(force=force, stale=None)

    async def _renew_after_failure(self, failed: str) -> str:
        """A token to retry with after `failed` was refused; forces at most once."""
        cached = await self._store.get(self._token_key)
        if cached and cached != failed:
            return cached  # another process already renewed it
        # Without force WeChat answers its current token, which differs when ours expired or
        # someone else forced; only when it still is the failed one is force worth its quota.
        token = await self._fetch_token(force=False, stale=failed)
        if token != failed:
            return token
        return await self._fetch_token(force=True, stale=failed)

    async def _fetch_token(self, force: bool, stale: str | None) -> str:
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + self._lock_ttl + self._settings.wechat_timeout
        while True:
            if await self._store.add(self._lock_key, owner, self._lock_ttl):
                try:
                    cached = await self._store.get(self._token_key)
                    usable = cached and cached != stale and not (force and stale is None)
                    if usable:
                        assert cached is not None
                        return cached
                    return await self._request_token(force)
                finally:
                    if await self._store.get(self._lock_key) == owner:
                        await self._store.delete(self._lock_key)
            # Another process is fetching: wait for its token rather than fetch a second one.
            await asyncio.sleep(0.05)
            cached = await self._store.get(self._token_key)
            if cached and cached != stale:
                return cached
            if time.monotonic() > deadline:
                raise WechatBusy(BUSY, "timed out waiting for the token lock")

    async def _request_token(self, force: bool) -> str:
        body = {
            "grant_type": "client_credential",
            "appid": self._settings.wechat_appid,
            "secret": self._settings.wechat_secret,
            "force_refresh": force,
        }
        try:
            response = await self._send("stable_token", "POST", "/cgi-bin/stable_token", json=body)
        except WechatTimeout as exc:
            # Fetching a token changes nothing we must settle later: just busy.
            raise WechatBusy(BUSY, "stable_token timed out") from exc
        data = _json(response)
        _check("stable_token", data, config_errors=TOKEN_CONFIG_ERRORS)
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int):
            raise WechatBadAnswer(0, "stable_token answer lacks access_token or expires_in")
        # Renew ahead of expiry, by five minutes or half the lifetime, whichever is shorter.
        ttl = max(expires_in - 300, expires_in // 2)
        if ttl > 0:
            await self._store.set(self._token_key, token, ttl)
        return token

    # -- transport -------------------------------------------------------------------------

    async def _with_token(self, api: str, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST with the access token; on a token error renew once and retry once, no more."""
        token = await self.access_token()
        response = await self._send(api, "POST", path, json=body, token=token)
        errcode = _token_errcode(response)
        if errcode is None:
            return response
        logger.warning("wechat %s: errcode=%s, renewing the access token once", api, errcode)
        token = await self._renew_after_failure(token)
        response = await self._send(api, "POST", path, json=body, token=token)
        errcode = _token_errcode(response)
        if errcode is not None:
            _log(api, errcode)
            raise WechatRefused(errcode, "access token refused after one renewal")
        return response

    async def _send(
        self,
        api: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> httpx.Response:
        query = dict(params or {})
        if token is not None:
            query["access_token"] = token
        try:
            response = await self._http.request(method, path, params=query, json=json)
        except _NOT_SENT as exc:
            logger.warning("wechat %s: not reached (%s)", api, type(exc).__name__)
            raise WechatBusy(BUSY, f"not reached: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            # Sent, maybe processed, answer lost: the caller must treat the outcome as unknown.
            logger.warning("wechat %s: no answer (%s)", api, type(exc).__name__)
            raise WechatTimeout(BUSY, f"no answer: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            logger.warning("wechat %s: HTTP %s", api, response.status_code)
            raise WechatBusy(BUSY, f"HTTP {response.status_code}")
        return response


def _is_image(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").lower().startswith("image/")


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise WechatBadAnswer(0, f"not JSON (HTTP {response.status_code})") from exc
    if not isinstance(data, dict):
        raise WechatBadAnswer(0, "answer is not a JSON object")
    return data


def _errcode(data: dict[str, Any]) -> int:
    # Success answers may omit errcode altogether: success is "no non-zero errcode".
    raw = data.get("errcode", 0)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise WechatBadAnswer(0, "errcode is not a number") from None


def _errmsg(data: dict[str, Any]) -> str:
    return str(data.get("errmsg", ""))[:200]


def _token_errcode(response: httpx.Response) -> int | None:
    if _is_image(response):
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    errcode = data.get("errcode") if isinstance(data, dict) else None
    return errcode if errcode in TOKEN_ERRORS else None


def _log(api: str, errcode: int) -> None:
    logger.info("wechat %s: errcode=%s", api, errcode)


def _check(
    api: str,
    data: dict[str, Any],
    *,
    code_error: type[WechatError] | None = None,
    config_errors: frozenset[int] = frozenset(),
) -> None:
    """Log the call's outcome and turn a non-zero errcode into its typed error."""
    errcode = _errcode(data)
    _log(api, errcode)
    if errcode == 0:
        return
    if errcode == BUSY:
        raise WechatBusy(errcode, _errmsg(data))
    if code_error is not None and errcode in CODE_ERRORS:
        raise code_error(errcode, _errmsg(data))
    if errcode in config_errors:
        raise WechatConfigError(errcode, _errmsg(data))
    raise WechatRefused(errcode, _errmsg(data))


__all__ = [
    "BUSY",
    "CODE_ERRORS",
    "TOKEN_CONFIG_ERRORS",
    "TOKEN_ERRORS",
    "PhoneInfo",
    "Session",
    "WechatClient",
    "WechatError",
]
