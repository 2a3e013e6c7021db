"""Which DISyncInstance manages each DataWorks task: one per (region, project, file) in everything this process
watches, so two resources (say, in two tenants' namespaces) can never both start, stop or report one task.

The index is built from a LIST before the first reconcile, then kept current from every watch event. The rule that
picks the owner is policy (`policy.task_owner`); this module only keeps the facts it needs, a small tuple per object.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

from disync_operator.controller import policy

TaskKey = tuple[str, int, int]  # region ("" for the operator's default), project id, file id


def task_key(body: dict[str, Any], default_region: str | None) -> TaskKey | None:
    spec = body.get("spec") or {}
    project, file = spec.get("projectId"), spec.get("fileId")
    if not isinstance(project, int) or not isinstance(file, int):
        return None
    return (sys.intern(spec.get("region") or default_region or ""), project, file)


def claim_of(body: dict[str, Any]) -> policy.TaskClaim:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return policy.TaskClaim(
        uid=meta.get("uid") or "",
        name=f"{meta.get('namespace')}/{meta.get('name')}",
        created=meta.get("creationTimestamp") or "",
        started=status.get("startedGeneration") is not None,
    )


class TaskOwners:
    def __init__(self, default_region: str | None) -> None:
        self._default_region = default_region
        self._claims: dict[str, tuple[TaskKey, policy.TaskClaim]] = {}  # uid -> its task and claim
        # Lists, not sets: almost every task has one resource, and a one-item list is a third of a set's memory.
        self._by_task: dict[TaskKey, list[str]] = {}
        # Objects that became owner of a task another object managed: their first start verifies the live state.
        self.handed_over: set[str] = set()

    def __len__(self) -> int:
        return len(self._claims)

    async def load(self, items: AsyncIterator[dict[str, Any]]) -> None:
        async for item in items:
            self.update(item)

    def update(self, body: dict[str, Any]) -> set[str]:
        """Record the object as it is now; returns the objects whose task has a new owner because of it."""
        uid = (body.get("metadata") or {}).get("uid") or ""
        key = task_key(body, self._default_region)
        previous = self._claims.get(uid)
        touched = self.remove(uid) if previous is not None and previous[0] != key else set()
        if key is None:
            return touched
        before = self._owner(key)
        self._claims[uid] = (key, claim_of(body))
        uids = self._by_task.setdefault(key, [])
        if uid not in uids:
            uids.append(uid)
        after = self._owner(key)
        if after != before:
            touched |= set(uids) - {uid}
            if before is not None and after is not None and after != uid:
                self.handed_over.add(after)
        return touched

    def remove(self, uid: str) -> set[str]:
        """The object is gone (or moved to another task); returns the objects whose task has a new owner by it."""
        entry = self._claims.get(uid)
        if entry is None:
            return set()
        before = self._owner(entry[0])
        del self._claims[uid]
        uids = self._by_task.get(entry[0], [])
        if uid in uids:
            uids.remove(uid)
        if not uids:
            self._by_task.pop(entry[0], None)
        self.handed_over.discard(uid)
        after = self._owner(entry[0])
        if after == before:
            return set()
        if before == uid and after is not None:
            self.handed_over.add(after)
        return set(uids)

    def _owner(self, key: TaskKey) -> str | None:
        owner = policy.task_owner([self._claims[u][1] for u in self._by_task.get(key, ())])
        return owner.uid if owner is not None else None

    def owner_of(self, uid: str) -> policy.TaskClaim | None:
        """The claim that manages the object's task, or None if the object is not indexed."""
        entry = self._claims.get(uid)
        if entry is None:
            return None
        return policy.task_owner([self._claims[u][1] for u in self._by_task.get(entry[0], ())])
