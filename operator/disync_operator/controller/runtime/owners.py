"""Which resource manages each cloud task: one per task address in everything this process watches, so two
resources (say, in two tenants' namespaces) can never both start, stop or report one task. The address is what the
cloud itself addresses (for DataWorks: endpoint host, project, file; `task.DataWorksTask.task_address`), so two
spellings of one task (region aliases of one endpoint) are one task.

The index is built from a LIST before the first reconcile, then kept current from every watch event. The rule that
picks the owner is policy (`policy.task_owner`); this module only keeps the facts it needs, compactly: it holds an
entry for every object (bench/ P2 counts it), and almost every task has one resource.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from disync_operator.controller import policy

TaskKey = str  # the task's address, e.g. "dataworks.aliyuncs.com/10000/700"
# The task an object manages; None if it names none, or only observes one (ObserveOnly acts on nothing, so it claims
# nothing: it can watch a task another resource manages, and takes its turn once it is Full).
TaskKeyOf = Callable[[dict[str, Any]], TaskKey | None]
# uid -> (task, creationTimestamp, started, "namespace/name")
_Entry = tuple[TaskKey, str, bool, str]


def _entry(key: TaskKey, body: dict[str, Any]) -> _Entry:
    meta = body.get("metadata") or {}
    started = (body.get("status") or {}).get("startedGeneration") is not None
    # Interned: resources created in the same second share one string.
    created = sys.intern(meta.get("creationTimestamp") or "")
    return (key, created, started, f"{meta.get('namespace')}/{meta.get('name')}")


class TaskOwners:
    def __init__(self, key_of: TaskKeyOf) -> None:
        self._key_of = key_of
        self._entries: dict[str, _Entry] = {}
        # task -> the uid naming it, or the uids when several do
        self._by_task: dict[TaskKey, str | list[str]] = {}
        # Objects that became owner of a task another object managed: their first start verifies the live state.
        self.handed_over: set[str] = set()

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, items: AsyncIterator[dict[str, Any]]) -> None:
        async for item in items:
            self.update(item)

    def _uids(self, key: TaskKey) -> list[str]:
        found = self._by_task.get(key)
        if found is None:
            return []
        return [found] if isinstance(found, str) else found

    def _owner(self, key: TaskKey) -> str | None:
        owner = policy.task_owner([self._claim(uid) for uid in self._uids(key)])
        return owner.uid if owner is not None else None

    def _claim(self, uid: str) -> policy.TaskClaim:
        _, created, started, name = self._entries[uid]
        return policy.TaskClaim(uid=uid, name=name, created=created, started=started)

    def update(self, body: dict[str, Any]) -> set[str]:
        """Record the object as it is now; returns the objects whose task has a new owner because of it."""
        # Interned: one string per uid for every record of this process (the index, the queue's, the watch's).
        uid = sys.intern((body.get("metadata") or {}).get("uid") or "")
        key = self._key_of(body)
        previous = self._entries.get(uid)
        touched = self.remove(uid) if previous is not None and previous[0] != key else set()
        if key is None:
            return touched
        before = self._owner(key)
        self._entries[uid] = _entry(key, body)
        uids = self._uids(key)
        if uid not in uids:
            self._by_task[key] = uid if not uids else [*uids, uid]
        after = self._owner(key)
        if after != before:
            touched |= set(self._uids(key)) - {uid}
            if before is not None and after is not None and after != uid:
                self.handed_over.add(after)
        return touched

    def remove(self, uid: str) -> set[str]:
        """The object is gone (or moved to another task); returns the objects whose task has a new owner by it."""
        entry = self._entries.get(uid)
        if entry is None:
            return set()
        key = entry[0]
        before = self._owner(key)
        del self._entries[uid]
        rest = [u for u in self._uids(key) if u != uid]
        if not rest:
            self._by_task.pop(key, None)
        else:
            self._by_task[key] = rest[0] if len(rest) == 1 else rest
        self.handed_over.discard(uid)
        after = self._owner(key)
        if after == before:
            return set()
        if before == uid and after is not None:
            self.handed_over.add(after)
        return set(rest)

    def owner_of(self, uid: str) -> policy.TaskClaim | None:
        """The claim that manages the object's task, or None if the object is not indexed."""
        entry = self._entries.get(uid)
        if entry is None:
            return None
        owner = self._owner(entry[0])
        return self._claim(owner) if owner is not None else None
