"""The one mechanism every workflow's state machine uses: guarded, recorded transitions.

A transition is an UPDATE guarded by the state (and lock version) the caller saw, so two clerks
acting at once cannot both win: the second UPDATE matches no row and gets a Conflict. The same
statement holds on SQLite and on MySQL because it needs no row locks, only the database's own
atomic single-row update. Each transition that happens writes a TransitionLog row in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.models import Model

from backend.errors import Conflict, InvalidTransition
from backend.models import TransitionLog


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member, a veteran (by internal id) or the system."""

    kind: str
    id: int | None = None
    ip: str = ""
    request_id: str = ""


@dataclass(frozen=True)
class Workflow:
    """A named state machine: state -> the states it may move to."""

    name: str
    transitions: Mapping[str, frozenset[str]]

    def check(self, from_state: str, to_state: str) -> None:
        if to_state not in self.transitions.get(from_state, frozenset()):
            raise InvalidTransition(details={"from": from_state, "to": to_state})

    async def move(
        self,
        obj: Model,
        to_state: str,
        actor: Actor,
        *,
        reason: str = "",
        changes: Mapping[str, Any] | None = None,
        using: BaseDBAsyncClient | None = None,
    ) -> None:
        """Move obj to to_state if nobody moved it since it was read; record who, when, why."""
        from_state = obj.status  # type: ignore[attr-defined]
        self.check(from_state, to_state)
        values: dict[str, Any] = {"status": to_state, **(changes or {})}
        query = type(obj).filter(pk=obj.pk, status=from_state)
        if hasattr(obj, "lock_version"):
            query = query.filter(lock_version=obj.lock_version)
            values["lock_version"] = F("lock_version") + 1
        if using is not None:
            query = query.using_db(using)
        updated = await query.update(**values)
        if updated != 1:
            raise Conflict(details={"state": from_state})
        await TransitionLog.create(
            workflow=self.name,
            object_id=obj.pk,
            from_state=from_state,
            to_state=to_state,
            actor_type=actor.kind,
            actor_id=actor.id,
            reason=reason,
            using_db=using,
        )
        for key, value in values.items():
            if key != "lock_version":
                setattr(obj, key, value)
        if hasattr(obj, "lock_version"):
            obj.lock_version += 1  # type: ignore[attr-defined]
