"""/healthz and /readyz, served by the operator itself (not kopf's liveness endpoint: a standby runs no kopf).

- /healthz (liveness): the event loop answers. The same for a leader and a standby.
- /readyz (readiness): the process does its part: a leader has loaded its task index and reconciles; a standby has
  read the Lease. The body says which, and who leads. A standby is ready too: were it not, a rolling update (which
  waits for new pods to be ready) would never get past a new pod that starts as a standby.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

Role = Literal["starting", "standby", "leader", "stopping"]


@dataclass
class Readiness:
    role: Role = "starting"
    ready: bool = False
    leader: str | None = None  # who holds the Lease, as last seen (None: no election)

    def body(self) -> dict[str, object]:
        return {"ready": self.ready, "role": self.role, "leader": self.leader}


class HealthServer:
    def __init__(self, readiness: Callable[[], Readiness], host: str = "0.0.0.0", port: int = 8080) -> None:
        self._readiness = readiness
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        state = self._readiness()
        return web.Response(
            text=json.dumps(state.body()) + "\n", status=200 if state.ready else 503, content_type="application/json"
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
