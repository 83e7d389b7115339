"""The audit trail helper: one call per state change or sensitive read."""

from __future__ import annotations

from typing import Any

from backend.models.audit import AuditLog


async def record(
    actor_type: str,
    actor_id: int | None,
    action: str,
    object_type: str,
    object_id: int | str,
    detail: dict[str, Any] | None = None,
    ip: str = "",
    request_id: str = "",
) -> AuditLog:
    """Write one audit row; call it inside the transaction of the change it records."""
    return await AuditLog.create(
        actor_type=actor_type,
        actor_id=actor_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        detail=detail or {},
        ip=ip,
        request_id=request_id,
    )
