"""The error tree: every refusal the service makes, with a stable code and a Chinese message."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A refusal meant for a person (message) and for a program (code)."""

    status: int = 400
    code: str = "BAD_REQUEST"
    message: str = "请求有误。"

    def __init__(
        self, message: str | None = None, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationFailed(AppError):
    status, code, message = 422, "VALIDATION_FAILED", "填写的内容有误，请按提示修改。"


class MalformedRequest(AppError):
    status, code, message = 400, "MALFORMED_REQUEST", "请求格式不正确。"


class PayloadTooLarge(AppError):
    status, code, message = 413, "PAYLOAD_TOO_LARGE", "提交的内容过大。"


class Unauthenticated(AppError):
    status, code, message = 401, "UNAUTHENTICATED", "登录已失效，请重新登录。"


class Forbidden(AppError):
    status, code, message = 403, "FORBIDDEN", "您没有权限进行此操作。"


class NotFound(AppError):
    status, code, message = 404, "NOT_FOUND", "没有找到相关记录。"


class Conflict(AppError):
    status, code, message = 409, "CONFLICT", "该记录已被他人处理，请刷新后查看。"


class RateLimited(AppError):
    status, code, message = 429, "RATE_LIMITED", "操作过于频繁，请稍后再试。"


class PrivacyNotAccepted(AppError):
    status, code, message = 403, "PRIVACY_NOT_ACCEPTED", "请先阅读并同意隐私保护说明。"


class NotBound(AppError):
    status, code, message = 403, "NOT_BOUND", "请先完成身份绑定。"


class BindingMismatch(AppError):
    # One message for every mismatch so that a guesser learns nothing.
    status, code = 422, "BINDING_MISMATCH"
    message = "信息核验未通过。请核对姓名和身份证号，或携带身份证到服务站办理。"


class AlreadyBound(AppError):
    status, code, message = 409, "ALREADY_BOUND", "该微信账号已绑定，无需重复绑定。"


class RegistrationClosed(AppError):
    status, code, message = 403, "REGISTRATION_CLOSED", "年度登记未在开放期内。"


class RegistrationNotRequired(AppError):
    status, code, message = 403, "REGISTRATION_NOT_REQUIRED", "您本年度无需进行年度登记。"


class InvalidTransition(AppError):
    status, code, message = 409, "INVALID_STATE", "当前状态下不能进行此操作。"


class SameClerk(AppError):
    status, code, message = 403, "SAME_CLERK", "现场代录的登记须由其他工作人员审核。"


class WechatError(AppError):
    """WeChat refused or could not be reached; errcode kept for the caller."""

    status, code, message = 502, "WECHAT_UNAVAILABLE", "微信服务暂时不可用，请稍后再试。"

    def __init__(self, errcode: int, errmsg: str = "", message: str | None = None) -> None:
        super().__init__(message, details={"errcode": errcode})
        self.errcode = errcode
        self.errmsg = errmsg


class WechatCodeInvalid(WechatError):
    """A wx.login code that is malformed, expired (40029) or already used (40163)."""

    status, code, message = 400, "LOGIN_CODE_INVALID", "登录凭证已失效，请重新登录。"


class WechatPhoneCodeInvalid(WechatCodeInvalid):
    """A getPhoneNumber code that is invalid, expired or not this user's (40029)."""

    status, code, message = 400, "PHONE_CODE_INVALID", "手机号授权已失效，请重新授权。"


class WechatBusy(WechatError):
    """WeChat answered -1 (system busy) or could not be reached: try again later."""

    status, code, message = 503, "WECHAT_BUSY", "微信服务繁忙，请稍后再试。"


class WechatTimeout(WechatError):
    """The request may have reached WeChat but no answer came: its outcome is unknown."""

    status, code, message = 504, "WECHAT_TIMEOUT", "微信服务响应超时，请稍后再试。"


class WechatConfigError(WechatError):
    """The token endpoint refused our appid, secret or server address: never retried."""

    status, code, message = 502, "WECHAT_CONFIG", "微信服务配置有误，请联系管理员。"


class WechatRefused(WechatError):
    """WeChat refused this call for a reason in errcode (43101, 47003, 40003, ...)."""

    status, code, message = 502, "WECHAT_REFUSED", "微信拒绝了本次请求。"


class WechatBadAnswer(WechatError):
    """An answer that breaks WeChat's documented shape or is not for our app."""

    status, code, message = 502, "WECHAT_BAD_ANSWER", "微信服务返回了无法识别的结果。"


class TemplateConfigInvalid(AppError):
    status, code, message = 422, "TEMPLATE_CONFIG_INVALID", "消息模板配置有误。"


class CsrfFailed(AppError):
    status, code, message = 403, "CSRF_FAILED", "页面已过期，请刷新后重试。"


class LoginFailed(AppError):
    # One message for an unknown user, a wrong password and a disabled account.
    status, code, message = 401, "LOGIN_FAILED", "用户名或密码错误。"


class AccountLocked(AppError):
    status, code, message = 423, "ACCOUNT_LOCKED", "登录失败次数过多，账号已临时锁定，请稍后再试。"


def all_error_classes() -> list[type[AppError]]:
    """Every concrete error, for the documentation test that each code is documented."""
    seen: list[type[AppError]] = []
    stack: list[type[AppError]] = [AppError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
