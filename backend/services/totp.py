"""TOTP secrets for staff (RFC 6238): enrolment, the QR code to scan, and one-time code checks.

The secret is 160 random bits, kept only as FieldCipher ciphertext (purpose ``staff.totp``) and
never logged. A code is accepted for the current 30-second step or one step either side, and
each step only once: the last accepted step is stored and moved forward by a conditional
update, so two requests racing with the same code cannot both succeed.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from dataclasses import dataclass

import pyotp
import qrcode
import qrcode.image.svg
from tortoise.expressions import Q

from backend import context
from backend.errors import Conflict, ValidationFailed
from backend.models.staff import StaffUser

PURPOSE = "staff.totp"
ISSUER = "退役军人服务管理平台"
_CODE = re.compile(r"[0-9]{6}")

#: the clock codes are checked against, a module attribute so that tests can pin the step
_clock = time.time


@dataclass
class Enrolment:
    """What the enrolment page shows: the secret as text, its otpauth URI and that URI as QR."""

    secret: str
    uri: str
    qr_svg: str


def _qr_svg(uri: str) -> str:
    # An SVG path needs no image library and goes inline into the page.
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    return str(image.to_string(encoding="unicode"))


async def start_enrolment(staff: StaffUser) -> None:
    """Give an account without a confirmed TOTP a pending secret (a pending one is kept)."""
    fresh = await StaffUser.get(id=staff.id)
    if fresh.totp_confirmed_at is not None:
        raise Conflict("已启用动态验证码。如需更换，请联系上一级负责人重置。")
    if fresh.totp_secret is None:
        # 32 base32 characters are 20 random bytes: the 160 bits RFC 4226 recommends.
        sealed = context.current().cipher.encrypt(pyotp.random_base32(32), PURPOSE)
        await StaffUser.filter(id=staff.id, totp_confirmed_at=None).update(
            totp_secret=sealed, totp_last_step=None
        )


async def pending_enrolment(staff: StaffUser) -> Enrolment | None:
    """The pending secret of an account that is enrolling, ready to show; None otherwise."""
    fresh = await StaffUser.get(id=staff.id)
    if fresh.totp_secret is None or fresh.totp_confirmed_at is not None:
        return None
    secret = context.current().cipher.decrypt(fresh.totp_secret, PURPOSE)
    uri = pyotp.TOTP(secret).provisioning_uri(name=fresh.username, issuer_name=ISSUER)
    return Enrolment(secret, uri, await asyncio.to_thread(_qr_svg, uri))


def clean_code(code: str) -> str:
    """Six digits (spaces allowed, as apps show them) or ValidationFailed; not a guess yet."""
    code = code.replace(" ", "").strip()
    if not _CODE.fullmatch(code):
        raise ValidationFailed(
            "请输入 6 位数字动态验证码。", details={"fields": {"code": "请输入 6 位数字"}}
        )
    return code


async def accept_code(staff_id: int, sealed_secret: str, code: str) -> bool:
    """True when the code fits a step within one of now that was never accepted before."""
    totp = pyotp.TOTP(context.current().cipher.decrypt(sealed_secret, PURPOSE))
    now_step = int(_clock()) // totp.interval
    for step in (now_step - 1, now_step, now_step + 1):
        if not hmac.compare_digest(totp.generate_otp(step), code):
            continue
        moved = await StaffUser.filter(
            Q(totp_last_step__isnull=True) | Q(totp_last_step__lt=step), id=staff_id
        ).update(totp_last_step=step)
        return moved == 1
    return False
