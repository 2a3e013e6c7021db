"""Secret reads shared by one sweep pass (what would be an informer's cache, without list/watch on Secrets)."""

from __future__ import annotations

import asyncio
from typing import Any

from disync_operator.controller.runtime.kube import KubeApi, KubeError


class PassSecrets:
    """The Secrets one sweep pass has read: each distinct Secret once per pass, so 10,000 resources sharing a handful
    of Secrets cost a handful of GETs, not 10,000. Only the sweep's live-state visits use it; a watch event's
    reconcile reads the Secret as it is now. A missing or forbidden Secret is remembered too."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        # One read per Secret, shared by every visit that asks while it is under way (the pass starts many at once).
        self._reads: dict[tuple[str, str], asyncio.Task[dict[str, Any]]] = {}

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        read = self._reads.get((namespace, name))
        if read is None:
            read = self._reads[(namespace, name)] = asyncio.ensure_future(self._kube.get_secret(namespace, name))
        try:
            return await asyncio.shield(read)
        except KubeError as error:
            if error.status not in (403, 404):
                self._reads.pop((namespace, name), None)  # not an answer about the Secret: the next visit asks again
            raise
