"""Secret reads shared by one sweep pass (what would be an informer's cache, without list/watch on Secrets)."""

from __future__ import annotations

from typing import Any

from disync_operator.controller.runtime.kube import KubeApi, KubeError


class PassSecrets:
    """The Secrets one sweep pass has read: each distinct Secret once per pass, so 10,000 resources sharing a handful
    of Secrets cost a handful of GETs, not 10,000. Only the sweep's live-state visits use it; a watch event's
    reconcile reads the Secret as it is now. A missing or forbidden Secret is remembered too."""

    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube
        self._read: dict[tuple[str, str], dict[str, Any] | KubeError] = {}
        self.gets = 0

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        known = self._read.get((namespace, name))
        if known is None:
            self.gets += 1
            try:
                known = await self._kube.get_secret(namespace, name)
            except KubeError as error:
                if error.status not in (403, 404):
                    raise
                known = error
            self._read[(namespace, name)] = known
        if isinstance(known, KubeError):
            raise known
        return known
