"""The WeChat stand-in: a small separate Sanic app that answers WeChat's server API paths with
WeChat's shapes and error codes, and plays the phone's side under /__standin__/.

All state lives in memory: it is a test and demo double, one process. Production never
mounts it; the service only knows its address (APP_WECHAT_API_BASE).

Phone-side and test controls (JSON bodies):
    POST /__standin__/login-code     {"openid"?, "unionid"?}            -> {"code", "openid"}
    POST /__standin__/phone-code     {"openid", "phone", "country_code"?} -> {"code"}
    POST /__standin__/encrypted-phone {"openid", "phone"}               -> {"encryptedData", "iv"}
    POST /__standin__/subscribe      {"openid", "templates": {id: "accept"|"reject"}}
    POST /__standin__/withdraw       {"openid", "template_ids": [...]}
    POST /__standin__/faults         {"path", "errcode"?, "errmsg"?, "body"?, "delay"?, "drop"?,
                                      "times"?}: the next call(s) of that path answer the errcode
                                      or body instead, answer late (delay s, after doing the
                                      work), or do the work and drop the connection (drop)
    DELETE /__standin__/faults
    POST /__standin__/config         {"push_url"?, "deliver"?, "push_format"?, "token_ttl"?,
                                      "code_ttl"?, "plain_overlap"?}
    POST /__standin__/templates      {"template_id", "title", "fields": {key: label}, "enums"?}
    POST /__standin__/tokens/expire  every token issued so far expires now (42001)
    GET  /__standin__/sent | pushes | calls | templates | acceptances?openid=
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import logging
import secrets
import socket
import struct
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import httpx
from sanic import Request, Sanic
from sanic.response import HTTPResponse, raw
from sanic.response import json as json_response

from backend.wechat.crypto import PushCrypto, encrypt_encrypted_data, new_nonce, sign
from backend.wechat.template_rules import value_problem

logger = logging.getLogger(__name__)

STANDIN_PREFIX = "/__standin__"
PLAIN_TOKEN_OVERLAP = 300
FORCE_MIN_GAP = 30
FORCE_PER_DAY = 20
FIRST_MSGID = 3395159288267931652
RELEASED_PAGES = ("pages/index/index", "pages/checkin/index", "pages/registration/index")
SCENE_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&'()*+,/:;=?@-._~"
)

#: demo templates every stand-in knows; their ids go into the service's template config
DEMO_TEMPLATES: dict[str, dict[str, Any]] = {
    "DEMO-registration-result-0001": {
        "title": "审核结果通知",
        "fields": {"thing1": "事项", "phrase2": "审核结果", "time3": "审核时间", "thing4": "备注"},
    },
    "DEMO-correction-notice-0002": {
        "title": "补正通知",
        "fields": {"thing1": "事项", "time2": "截止时间", "thing3": "说明"},
    },
    "DEMO-appointment-notice-0003": {
        "title": "预约提醒",
        "fields": {"thing1": "事项", "time2": "时间", "thing3": "地点", "phone_number4": "电话"},
    },
}

_ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    40129: "invalid scene",
    40163: "code been used",
    40169: "invalid length for scene, or the data is not json string",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    47001: "data format error",
    -1: "system error",
}


@dataclass
class StandinConfig:
    """The app the stand-in pretends to serve, and where it pushes events."""

    appid: str = "wxstandin00000001"
    secret: str = field(default="standin-secret", repr=False)
    push_token: str = field(default="standin-push-token", repr=False)
    aes_key: str = field(default="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", repr=False)
    push_url: str = ""
    original_id: str = "gh_standin000001"
    token_ttl: int = 7200
    code_ttl: int = 300
    #: how long a plain token keeps working after the next one is issued
    plain_overlap: int = PLAIN_TOKEN_OVERLAP
    #: "json" or "xml": the data format configured for message push
    push_format: str = "json"
    #: push subscribe_msg_sent_event after each accepted send
    deliver: bool = True
    templates: dict[str, dict[str, Any]] = field(
        default_factory=lambda: copy.deepcopy(DEMO_TEMPLATES)
    )


@dataclass
class _Code:
    openid: str
    issued: float
    used: bool = False
    phone: str = ""
    country_code: str = "86"


@dataclass
class _Token:
    kind: str
    expires_at: float


@dataclass
class _Fault:
    errcode: int | None = None
    errmsg: str = ""
    delay: float = 0.0
    drop: bool = False
    body: dict[str, Any] | None = None


class _State:
    """Everything the stand-in remembers, in memory."""

    def __init__(self, config: StandinConfig) -> None:
        self.config = config
        self.login_codes: dict[str, _Code] = {}
        self.phone_codes: dict[str, _Code] = {}
        #: every openid that has opened the app (got a login code)
        self.users: set[str] = set()
        self.sessions: dict[str, str] = {}
        self.unionids: dict[str, str] = {}
        self.acceptances: Counter[tuple[str, str]] = Counter()
        self.tokens: dict[str, _Token] = {}
        self.stable: str | None = None
        self.plain: str | None = None
        self.forces: list[float] = []
        self.next_msgid = FIRST_MSGID
        self.sent: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.faults: dict[str, deque[_Fault]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = asyncio.Event()
        self.http: httpx.AsyncClient | None = None

    def issue_token(self, kind: str) -> str:
        token = f"{kind}-{secrets.token_urlsafe(24)}"
        self.tokens[token] = _Token(kind, time.time() + self.config.token_ttl)
        return token

    def token_error(self, token: str) -> int:
        known = self.tokens.get(token)
        if known is None:
            return 40001
        return 42001 if time.time() >= known.expires_at else 0


def _answer(body: dict[str, Any], status: int = 200) -> HTTPResponse:
    # The stdlib encoder writes integers exactly: a 64-bit msgid must survive as digits.
    return json_response(body, status=status, dumps=lambda obj: json.dumps(obj, ensure_ascii=False))


def _error(errcode: int, errmsg: str = "") -> HTTPResponse:
    return _answer({"errcode": errcode, "errmsg": errmsg or _ERRMSG.get(errcode, "error")})


def _body(request: Request) -> dict[str, Any] | None:
    try:
        data = json.loads(request.body or b"")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def create_standin_app(config: StandinConfig) -> Sanic:
    """Build a stand-in app; each call has its own state."""
    app = Sanic(f"wechat_standin_{secrets.token_hex(4)}", configure_logging=False)
    app.config.ACCESS_LOG = False
    state = _State(config)
    app.ctx.state = state
    _api_routes(app, state)
    _control_routes(app, state)
    return app


def _faulty(
    state: _State, path: str
) -> Callable[[Callable[[Request], Awaitable[HTTPResponse]]], Callable[..., Any]]:
    """Count the call and apply a queued fault for this path around the real handler."""

    def wrap(handler: Callable[[Request], Awaitable[HTTPResponse]]) -> Callable[..., Any]:
        async def run(request: Request) -> HTTPResponse:
            state.calls[path] += 1
            queue = state.faults.get(path)
            fault = queue.popleft() if queue else None
            if fault is not None and fault.body is not None:
                response = _answer(fault.body)
            elif fault is not None and fault.errcode is not None:
                response = _error(fault.errcode, fault.errmsg)
            else:
                response = await handler(request)
            if fault is not None and fault.drop:
                # The work is done but the answer is lost, as when a connection drops.
                abort = getattr(request.transport, "abort", None)
                if abort is not None:
                    abort()
                return response
            if fault is not None and fault.delay > 0:
                try:
                    await asyncio.wait_for(state.closing.wait(), fault.delay)
                except TimeoutError:
                    pass
            return response

        run.__name__ = handler.__name__
        return run

    return wrap


def _api_routes(app: Sanic, state: _State) -> None:
    cfg = state.config

    def route(path: str, method: str) -> Callable[..., Any]:
        def register(handler: Callable[[Request], Awaitable[HTTPResponse]]) -> Any:
            return app.route(path, methods=[method], name=handler.__name__)(
                _faulty(state, path)(handler)
            )

        return register

    @route("/sns/jscode2session", "GET")
    async def jscode2session(request: Request) -> HTTPResponse:
        args = request.args
        if args.get("appid") != cfg.appid:
            return _error(40013)
        if args.get("secret") != cfg.secret:
            return _error(40125)
        code = state.login_codes.get(args.get("js_code") or "")
        if code is None or time.time() - code.issued > cfg.code_ttl:
            return _error(40029)
        if code.used:
            return _error(40163)
        code.used = True
        session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        state.sessions[code.openid] = session_key
        # A success here carries no errcode at all.
        body = {"session_key": session_key, "openid": code.openid}
        if code.openid in state.unionids:
            body["unionid"] = state.unionids[code.openid]
        return _answer(body)

    @route("/cgi-bin/token", "GET")
    async def plain_token(request: Request) -> HTTPResponse:
        if request.args.get("grant_type") != "client_credential":
            return _error(40002)
        if request.args.get("appid") != cfg.appid:
            return _error(40013)
        if request.args.get("secret") != cfg.secret:
            return _error(40001)
        if state.plain in state.tokens:
            # Each fetch issues a new token; the previous one keeps working five more minutes.
            old = state.tokens[state.plain]
            old.expires_at = min(old.expires_at, time.time() + cfg.plain_overlap)
        state.plain = state.issue_token("plain")
        return _answer({"access_token": state.plain, "expires_in": cfg.token_ttl})

    @route("/cgi-bin/stable_token", "POST")
    async def stable_token(request: Request) -> HTTPResponse:
        body = _body(request)
        if body is None:
            return _error(47001)
        if body.get("grant_type") != "client_credential":
            return _error(40002)
        if body.get("appid") != cfg.appid:
            return _error(40013)
        if body.get("secret") != cfg.secret:
            return _error(40001)
        now = time.time()
        if body.get("force_refresh") is True:
            today = [t for t in state.forces if now - t < 86400]
            if len(today) >= FORCE_PER_DAY or (today and now - today[-1] < FORCE_MIN_GAP):
                return _error(45009)
            state.forces = [*today, now]
            state.tokens.pop(state.stable or "", None)
            state.stable = state.issue_token("stable")
        else:
            current = state.tokens.get(state.stable or "")
            # Near the end of its life the next token is handed out; the old one lives on.
            threshold = min(PLAIN_TOKEN_OVERLAP, cfg.token_ttl // 2)
            if current is None or current.expires_at - now <= threshold:
                state.stable = state.issue_token("stable")
        assert state.stable is not None
        remaining = int(state.tokens[state.stable].expires_at - now)
        return _answer({"access_token": state.stable, "expires_in": remaining})

    @route("/wxa/business/getuserphonenumber", "POST")
    async def phone_number(request: Request) -> HTTPResponse:
        if errcode := state.token_error(request.args.get("access_token") or ""):
            return _error(errcode)
        body = _body(request)
        if body is None:
            return _error(47001)
        code = state.phone_codes.get(str(body.get("code") or ""))
        expired = code is None or time.time() - code.issued > cfg.code_ttl
        if code is None or expired or code.used:
            return _error(40029)
        if body.get("openid") and body["openid"] != code.openid:
            return _error(40029, "invalid code, code does not belong to this openid")
        code.used = True
        full = code.phone if code.country_code == "86" else f"+{code.country_code}{code.phone}"
        info = {
            "phoneNumber": full,
            "purePhoneNumber": code.phone,
            "countryCode": int(code.country_code),
            "watermark": {"timestamp": int(time.time()), "appid": cfg.appid},
        }
        return _answer({"errcode": 0, "errmsg": "ok", "phone_info": info})

    @route("/cgi-bin/message/subscribe/send", "POST")
    async def subscribe_send(request: Request) -> HTTPResponse:
        if errcode := state.token_error(request.args.get("access_token") or ""):
            return _error(errcode)
        body = _body(request)
        if body is None:
            return _error(47001)
        return _send_message(state, body)

    @route("/wxa/msg_sec_check", "POST")
    async def msg_sec_check(request: Request) -> HTTPResponse:
        if errcode := state.token_error(request.args.get("access_token") or ""):
            return _error(errcode)
        body = _body(request)
        if body is None or body.get("version") != 2:
            return _error(47001)
        if body.get("openid") not in state.users:
            return _error(40003)
        if body.get("scene") not in (1, 2, 3, 4):
            return _error(40129)
        content = body.get("content")
        if not isinstance(content, str) or not content:
            return _error(44002)
        suggest, label = "pass", 100
        if "风险测试" in content:
            suggest, label = "risky", 20001
        elif "审核测试" in content:
            suggest, label = "review", 20002
        result = {"suggest": suggest, "label": label}
        return _answer(
            {
                "errcode": 0,
                "errmsg": "ok",
                "trace_id": secrets.token_hex(12),
                "result": result,
                "detail": [{"strategy": "content_model", "errcode": 0, **result}],
            }
        )

    @route("/wxa/getwxacodeunlimit", "POST")
    async def wxacode(request: Request) -> HTTPResponse:
        if errcode := state.token_error(request.args.get("access_token") or ""):
            return _error(errcode)
        body = _body(request)
        if body is None:
            return _error(47001)
        scene, page = body.get("scene"), body.get("page", "")
        if not isinstance(scene, str) or not 1 <= len(scene) <= 32 or set(scene) - SCENE_CHARS:
            return _error(40169)
        env = body.get("env_version", "release")
        if env not in ("release", "trial", "develop"):
            return _error(40097)
        if not isinstance(page, str) or page.startswith("/") or "?" in page:
            return _error(41030)
        if body.get("check_path", True) and page and page not in RELEASED_PAGES:
            return _error(41030)
        image = _qr_png(f"{page}?scene={scene}")
        return raw(image, content_type="image/png")


def _send_message(state: _State, body: dict[str, Any]) -> HTTPResponse:
    openid, template_id = body.get("touser"), body.get("template_id")
    if not isinstance(openid, str) or openid not in state.users:
        return _error(40003)
    template = state.config.templates.get(str(template_id))
    if template is None:
        return _error(40037)
    data = body.get("data")
    if not isinstance(data, dict) or not data:
        return _error(47003, "argument invalid! data is empty")
    for key in template["fields"]:
        entry = data.get(key)
        value = entry.get("value") if isinstance(entry, dict) else None
        problem = value_problem(key, value, template.get("enums", {}).get(key))
        if problem:
            return _error(47003, f"argument invalid! data.{key}.value {problem}")
    if body.get("miniprogram_state", "formal") not in ("formal", "trial", "developer"):
        return _error(40097)
    key = (openid, str(template_id))
    if state.acceptances[key] <= 0:
        return _error(43101)
    state.acceptances[key] -= 1

    msgid = state.next_msgid
    state.next_msgid += 1
    state.sent.append(
        {
            "msgid": str(msgid),
            "touser": openid,
            "template_id": template_id,
            "page": body.get("page", ""),
            "data": data,
            "miniprogram_state": body.get("miniprogram_state", "formal"),
            "lang": body.get("lang", "zh_CN"),
            "sent_at": int(time.time()),
        }
    )
    if state.config.deliver:
        item = {
            "TemplateId": str(template_id),
            "MsgID": str(msgid),
            "ErrorCode": "0",
            "ErrorStatus": "success",
        }
        _push_later(state, "subscribe_msg_sent_event", openid, [item])
    return _answer({"errcode": 0, "errmsg": "ok", "msgid": msgid})


def _control_routes(app: Sanic, state: _State) -> None:
    cfg = state.config
    p = STANDIN_PREFIX

    @app.post(f"{p}/login-code", name="mint_login_code")
    async def mint_login_code(request: Request) -> HTTPResponse:
        body = _body(request) or {}
        openid = str(body.get("openid") or "o" + secrets.token_urlsafe(20))
        code = secrets.token_urlsafe(24)
        state.login_codes[code] = _Code(openid, time.time())
        state.users.add(openid)
        if body.get("unionid"):
            state.unionids[openid] = str(body["unionid"])
        return _answer({"code": code, "openid": openid})

    @app.post(f"{p}/phone-code", name="mint_phone_code")
    async def mint_phone_code(request: Request) -> HTTPResponse:
        body = _body(request) or {}
        if not body.get("openid") or not body.get("phone"):
            return _answer({"error": "openid and phone are required"}, 400)
        code = secrets.token_urlsafe(24)
        country = str(body.get("country_code") or "86")
        state.phone_codes[code] = _Code(
            str(body["openid"]), time.time(), phone=str(body["phone"]), country_code=country
        )
        return _answer({"code": code})

    @app.post(f"{p}/encrypted-phone", name="mint_encrypted_phone")
    async def mint_encrypted_phone(request: Request) -> HTTPResponse:
        body = _body(request) or {}
        session_key = state.sessions.get(str(body.get("openid")))
        if session_key is None or not body.get("phone"):
            return _answer({"error": "log in first (no session_key for this openid)"}, 400)
        iv = base64.b64encode(secrets.token_bytes(16)).decode()
        phone = str(body["phone"])
        plain = {
            "phoneNumber": phone,
            "purePhoneNumber": phone,
            "countryCode": "86",
            "watermark": {"timestamp": int(time.time()), "appid": cfg.appid},
        }
        encrypted = encrypt_encrypted_data(session_key, iv, plain)
        return _answer({"encryptedData": encrypted, "iv": iv})

    @app.post(f"{p}/subscribe", name="answer_subscribe")
    async def answer_subscribe(request: Request) -> HTTPResponse:
        body = _body(request) or {}
        openid, choices = str(body.get("openid") or ""), body.get("templates")
        if not openid or not isinstance(choices, dict) or not choices:
            return _answer({"error": "openid and templates {id: accept|reject} required"}, 400)
        items = []
        for template_id, choice in choices.items():
            status = "accept" if choice == "accept" else "reject"
            if status == "accept":
                state.acceptances[(openid, template_id)] += 1
            items.append(
                {"TemplateId": template_id, "SubscribeStatusString": status, "PopupScene": "0"}
            )
        _push_later(state, "subscribe_msg_popup_event", openid, items)
        return _answer({"acceptances": _acceptances(state, openid)})

    @app.post(f"{p}/withdraw", name="withdraw_subscribe")
    async def withdraw_subscribe(request: Request) -> HTTPResponse:
        body = _body(request) or {}
        openid, ids = str(body.get("openid") or ""), body.get("template_ids")
        if not openid or not isinstance(ids, list) or not ids:
            return _answer({"error": "openid and template_ids required"}, 400)
        for template_id in ids:
            state.acceptances[(openid, str(template_id))] = 0
        items = [{"TemplateId": str(t), "SubscribeStatusString": "reject"} for t in ids]
        _push_later(state, "subscribe_msg_change_event", openid, items)
        return _answer({"acceptances": _acceptances(state, openid)})

    @app.route(f"{p}/faults", methods=["POST", "DELETE"], name="faults")
    async def faults(request: Request) -> HTTPResponse:
        if request.method == "DELETE":
            state.faults.clear()
            return _answer({"faults": 0})
        body = _body(request) or {}
        path = str(body.get("path") or "")
        if not path.startswith("/") or path.startswith(p):
            return _answer({"error": "path of a WeChat API is required"}, 400)
        fault = _Fault(
            errcode=int(body["errcode"]) if body.get("errcode") is not None else None,
            errmsg=str(body.get("errmsg") or ""),
            delay=float(body.get("delay") or 0),
            drop=bool(body.get("drop")),
            body=body["body"] if isinstance(body.get("body"), dict) else None,
        )
        queue = state.faults.setdefault(path, deque())
        queue.extend([fault] * max(1, int(body.get("times") or 1)))
        return _answer({"path": path, "queued": len(queue)})

    @app.post(f"{p}/config", name="configure")
    async def configure(request: Request) -> HTTPResponse:
        body = _body(request) or {}
        for name in ("push_url", "push_format", "original_id"):
            if name in body:
                setattr(cfg, name, str(body[name]))
        if "deliver" in body:
            cfg.deliver = bool(body["deliver"])
        for name in ("token_ttl", "code_ttl", "plain_overlap"):
            if name in body:
                setattr(cfg, name, int(body[name]))
        public = {k: v for k, v in asdict(cfg).items() if k not in ("secret", "aes_key")}
        return _answer(public | {"push_token": "***"})

    @app.route(f"{p}/templates", methods=["GET", "POST"], name="templates")
    async def templates(request: Request) -> HTTPResponse:
        if request.method == "POST":
            body = _body(request) or {}
            fields_ = body.get("fields")
            if not body.get("template_id") or not isinstance(fields_, dict) or not fields_:
                return _answer({"error": "template_id and fields required"}, 400)
            cfg.templates[str(body["template_id"])] = {
                "title": str(body.get("title") or ""),
                "fields": {str(k): str(v) for k, v in fields_.items()},
                "enums": body.get("enums") or {},
            }
        return _answer({"templates": cfg.templates})

    @app.post(f"{p}/tokens/expire", name="expire_tokens")
    async def expire_tokens(request: Request) -> HTTPResponse:
        now = time.time()
        for token in state.tokens.values():
            token.expires_at = min(token.expires_at, now)
        return _answer({"expired": len(state.tokens)})

    @app.get(f"{p}/sent", name="list_sent")
    async def list_sent(request: Request) -> HTTPResponse:
        return _answer({"sent": state.sent})

    @app.get(f"{p}/pushes", name="list_pushes")
    async def list_pushes(request: Request) -> HTTPResponse:
        return _answer({"pushes": state.pushes})

    @app.get(f"{p}/calls", name="list_calls")
    async def list_calls(request: Request) -> HTTPResponse:
        return _answer({"calls": dict(state.calls)})

    @app.get(f"{p}/acceptances", name="list_acceptances")
    async def list_acceptances(request: Request) -> HTTPResponse:
        return _answer({"acceptances": _acceptances(state, request.args.get("openid", ""))})


def _acceptances(state: _State, openid: str) -> dict[str, int]:
    return {tid: n for (oid, tid), n in state.acceptances.items() if oid == openid}


# -- pushing events to the service ---------------------------------------------------------


def _push_later(state: _State, event: str, openid: str, items: list[dict[str, str]]) -> None:
    """Push in a task of its own, so the API answer never waits for the service."""
    if not state.config.push_url:
        state.pushes.append({"event": event, "openid": openid, "status": "no push_url"})
        return
    task = asyncio.get_running_loop().create_task(_push(state, event, openid, items))
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


def build_push(
    config: StandinConfig,
    event: str,
    openid: str,
    items: list[dict[str, str]],
    timestamp: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """A signed safe-mode push as WeChat sends it: (query parameters, body)."""
    now = str(timestamp if timestamp is not None else int(time.time()))
    nonce = new_nonce()
    if config.push_format == "xml":
        plain = _event_xml(config.original_id, event, openid, now, items)
    else:
        message = {
            "ToUserName": config.original_id,
            "FromUserName": openid,
            "CreateTime": int(now),
            "MsgType": "event",
            "Event": event,
            # One item is an object, several an array: WeChat's own inconsistency.
            "List": items[0] if len(items) == 1 else items,
        }
        plain = json.dumps(message, ensure_ascii=False)
    crypto = PushCrypto(config.push_token, config.aes_key, config.appid)
    encrypted, msg_signature = crypto.seal(plain, now, nonce)
    query = {
        "signature": sign(config.push_token, now, nonce),
        "timestamp": now,
        "nonce": nonce,
        "openid": openid,
        "encrypt_type": "aes",
        "msg_signature": msg_signature,
    }
    if config.push_format == "xml":
        body = (
            f"<xml><ToUserName><![CDATA[{config.original_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
        ).encode()
    else:
        body = json.dumps({"ToUserName": config.original_id, "Encrypt": encrypted}).encode()
    return query, body


def _event_xml(
    original_id: str, event: str, openid: str, now: str, items: list[dict[str, str]]
) -> str:
    container = {
        "subscribe_msg_popup_event": "SubscribeMsgPopupEvent",
        "subscribe_msg_change_event": "SubscribeMsgChangeEvent",
        "subscribe_msg_sent_event": "SubscribeMsgSentEvent",
    }[event]
    lists = "".join(
        "<List>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in item.items()) + "</List>"
        for item in items
    )
    return (
        f"<xml><ToUserName>{escape(original_id)}</ToUserName>"
        f"<FromUserName>{escape(openid)}</FromUserName><CreateTime>{now}</CreateTime>"
        f"<MsgType>event</MsgType><Event>{event}</Event>"
        f"<{container}>{lists}</{container}></xml>"
    )


async def _push(state: _State, event: str, openid: str, items: list[dict[str, str]]) -> None:
    cfg = state.config
    query, body = build_push(cfg, event, openid, items)
    content_type = "text/xml" if cfg.push_format == "xml" else "application/json"
    if state.http is None:
        state.http = httpx.AsyncClient(timeout=5)
    record: dict[str, Any] = {"event": event, "openid": openid, "items": items, "status": "pending"}
    state.pushes.append(record)
    # WeChat tries a push three times when the service does not answer "success".
    for attempt in range(1, 4):
        record["attempts"] = attempt
        try:
            response = await state.http.post(
                f"{cfg.push_url}?{urlencode(query)}",
                content=body,
                headers={"content-type": content_type},
            )
        except httpx.HTTPError as exc:
            record["status"] = f"error: {type(exc).__name__}"
        else:
            record["status"] = response.status_code
            record["answer"] = response.text[:200]
            if response.status_code == 200:
                return
        try:
            await asyncio.wait_for(state.closing.wait(), 0.2 * attempt)
            return
        except TimeoutError:
            continue


# -- a tiny PNG for the mini-program code --------------------------------------------------


def _qr_png(text: str) -> bytes:
    """A real QR image of the text (grey levels, no PIL): enough for a demo page."""
    import qrcode

    qr = qrcode.QRCode(border=2)
    qr.add_data(text)
    qr.make(fit=True)
    scale = 4
    rows = []
    for row in qr.get_matrix():
        line = b"".join((b"\x00" if dark else b"\xff") * scale for dark in row)
        rows.extend([b"\x00" + line] * scale)
    size = len(qr.get_matrix()) * scale

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


# -- running it ----------------------------------------------------------------------------


async def start_standin(
    config: StandinConfig, host: str = "127.0.0.1", port: int = 0
) -> tuple[str, Callable[[], Awaitable[None]]]:
    """Serve a stand-in in this event loop; (base URL, coroutine function that stops it)."""
    app = create_standin_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    state: _State = app.ctx.state

    async def stop() -> None:
        state.closing.set()
        if state.tasks:
            await asyncio.wait(set(state.tasks), timeout=5)
        if state.http is not None:
            await state.http.aclose()
        await server.before_stop()
        closing = server.close()
        if closing is not None:
            await closing
        await server.after_stop()
        sock.close()

    return f"http://{host}:{bound_port}", stop


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in alone: python -m backend.wechat.standin --port N --push-url URL."""
    from backend.settings import Settings

    parser = argparse.ArgumentParser(description="Run the WeChat stand-in on a loopback port.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--push-url", default="", help="the service's /wechat/push address")
    parser.add_argument("--push-format", choices=("json", "xml"), default="json")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    config = StandinConfig(push_url=args.push_url, push_format=args.push_format)
    # The stand-in must share the service's app identity and push keys to sign for it.
    if settings.wechat_appid:
        config.appid = settings.wechat_appid
    if settings.wechat_secret:
        config.secret = settings.wechat_secret
    if settings.wechat_push_token:
        config.push_token = settings.wechat_push_token
    if settings.wechat_aes_key:
        config.aes_key = settings.wechat_aes_key
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = create_standin_app(config)
    logger.info("WeChat stand-in on http://%s:%s (appid %s)", args.host, args.port, config.appid)
    app.run(host=args.host, port=args.port, single_process=True, access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
