"""The few Kubernetes calls the operator makes itself, async on httpx, with the credentials kopf logs in with.

kopf watches the CRs and delivers their events; every write is ours: metadata (the start intent annotation *before*
DataWorks is called, with our finalizer, in one write), status (the outcome) and Events; and one read, a Secret in
the CR's namespace; and, with leader election on, its Lease. The `kubernetes` package would do this on a blocking
thread pool and cost tens of MiB per process; these few requests don't need it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import kopf

from disync_operator import types as t
from disync_operator.controller.identity import Identity, Login
from disync_operator.transport import AiohttpTransport

MAX_CONNECTIONS = 16
LEASES = "/apis/coordination.k8s.io/v1"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
# Our bodies come from our own models: the API server's unknown/duplicate-field detection would find nothing, and
# costs it CPU on every write (bench/).
TRUSTED = {"fieldValidation": "Ignore"}


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")


class Conflict(KubeError):
    pass


@dataclass(frozen=True)
class _Connection:
    """Where requests go with one login: httpx requests handed straight to the transport. httpx's AsyncClient adds
    redirects, cookies, auth flows and URL merging, none of which these requests use, and cost 12% of the operator's
    CPU in a burst (py-spy, bench/)."""

    transport: httpx.AsyncBaseTransport
    server: str
    headers: dict[str, str]
    timeout: dict[str, float | None]

    async def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        request = httpx.Request(
            method, self.server + path, headers=headers, extensions={"timeout": self.timeout}, **kwargs
        )
        response = await self.transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response


def _connection(
    info: kopf.ConnectionInfo, timeout: float, connections: int, transport: httpx.AsyncBaseTransport | None = None
) -> _Connection:
    # kopf's own TLS set-up, so both clients trust and present the same: inline client keys are written to private
    # temporary files only while the context loads them (Python's ssl reads keys from files only), then removed.
    headers = {"Accept": "application/json", "User-Agent": "disync-operator", **info.as_http_headers()}
    return _Connection(
        # Every connection kept alive between requests: a burst of writes reuses them instead of paying a TLS
        # handshake per write. aiohttp underneath: see transport.py for why.
        transport=transport
        or AiohttpTransport(connections=connections, ssl_context=info.as_ssl_context(), keepalive=30.0),
        server=info.server.rstrip("/"),
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=5.0).as_dict(),
    )


class KubeApi(Protocol):
    """The calls the operator makes itself (kopf's watch aside): what an in-memory fake stands in for in tests."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]: ...

    async def patch_status(self, namespace: str, name: str, update: t.StatusUpdate) -> dict[str, Any]: ...

    async def patch_metadata(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str | None,
        finalizers: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def list_instances(self, namespace: str | None, *, page_size: int = 500) -> AsyncIterator[dict[str, Any]]: ...

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None: ...

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]: ...

    async def update_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class KubeClient:
    """The operator's own requests, each with the process's current credentials (controller/identity.py): a 401
    logs in again (once for all the requests that saw the same stale login) and the request is retried once."""

    def __init__(
        self,
        identity: Identity,
        *,
        timeout: float = 30.0,
        max_in_flight: int = MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: where requests go instead of the network
        on_request: Callable[[str, str, float], None] = lambda method, code, seconds: None,
    ) -> None:
        """`on_request(method, code, seconds)`: each request's outcome (the HTTP status, or `<error>`), for metrics."""
        self._identity = identity
        self._on_request = on_request
        self._transport = transport
        self._connections = max_in_flight
        self._timeout = timeout
        self._http: _Connection | None = None
        self._http_login: Login | None = None
        # Clients of earlier logins: closed at exit, not at once (requests may still be in flight on them).
        self._retired: list[_Connection] = []
        # Requests beyond the connections wait here, in order, and hold no connection while they wait for a login.
        self._slots = asyncio.Semaphore(max_in_flight)
        self.relogins = 0  # 401s answered by a fresh login (tests and logs)

    def _client(self, login: Login) -> _Connection:
        if self._http is None or self._http_login is not login:
            if self._http is not None:
                self._retired = [*self._retired[-3:], self._http]
            self._http = _connection(login.info, self._timeout, self._connections, self._transport)
            self._http_login = login
        return self._http

    async def aclose(self) -> None:
        for client in [*self._retired, *([self._http] if self._http else [])]:
            if client.transport is not self._transport:  # a test's transport is the test's to close
                await client.transport.aclose()
        self._retired, self._http, self._http_login = [], None, None

    async def _send(self, login: Login, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        try:
            response = await self._client(login).send(method, path, **kwargs)
        except httpx.HTTPError:
            self._on_request(method, "<error>", time.monotonic() - started)
            raise
        self._on_request(method, str(response.status_code), time.monotonic() - started)
        return response

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with self._slots:
            login = await self._identity.get()
            response = await self._send(login, method, path, **kwargs)
            if response.status_code == 401:
                self.relogins += 1
                login = await self._identity.refresh(login)
                response = await self._send(login, method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
                reason, message = body.get("reason", ""), body.get("message", response.text)
            except ValueError:
                reason, message = "", response.text[:300]
            error = Conflict if response.status_code == 409 else KubeError
            raise error(response.status_code, reason, message)
        data: dict[str, Any] = response.json()
        return data

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    async def patch_status(self, namespace: str, name: str, update: t.StatusUpdate) -> dict[str, Any]:
        """Merge-patch .status with exactly the fields `update` sets, unconditionally: the start intent
        (patch_metadata) is the write with a precondition. The one place a status update becomes JSON."""
        path = f"/apis/{t.GROUP}/{t.VERSION}/namespaces/{namespace}/{t.PLURAL}/{name}/status"
        body = {"status": update.to_patch()}
        return await self._request("PATCH", path, json=body, params=TRUSTED, headers=MERGE_PATCH)

    async def list_instances(self, namespace: str | None, *, page_size: int = 500) -> AsyncIterator[dict[str, Any]]:
        """Every DISyncInstance (in one namespace, or all), page by page so memory stays flat."""
        where = f"/namespaces/{namespace}" if namespace else ""
        path = f"/apis/{t.GROUP}/{t.VERSION}{where}/{t.PLURAL}"
        token: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": page_size}
            if token:
                params["continue"] = token
            page = await self._request("GET", path, params=params)
            for item in page.get("items", []):
                yield item
            token = page.get("metadata", {}).get("continue")
            if not token:
                return

    async def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        await self._request("POST", f"/api/v1/namespaces/{namespace}/events", json=event, params=TRUSTED)

    async def patch_metadata(
        self,
        namespace: str,
        name: str,
        *,
        resource_version: str | None,
        finalizers: list[str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Replace metadata.finalizers and/or set annotations, in one write; with the resourceVersion precondition,
        so another's finalizer is never lost and two processes can't both write a start intent."""
        path = f"/apis/{t.GROUP}/{t.VERSION}/namespaces/{namespace}/{t.PLURAL}/{name}"
        metadata: dict[str, Any] = {"resourceVersion": resource_version}
        if finalizers is not None:
            metadata["finalizers"] = finalizers
        if annotations is not None:
            metadata["annotations"] = annotations
        return await self._request("PATCH", path, json={"metadata": metadata}, params=TRUSTED, headers=MERGE_PATCH)

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", f"{LEASES}/namespaces/{namespace}/leases/{name}")
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", f"{LEASES}/namespaces/{namespace}/leases", json=lease)

    async def update_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        """PUT with the resourceVersion the lease carries: of two candidates, one wins and the other gets 409."""
        name = lease["metadata"]["name"]
        return await self._request("PUT", f"{LEASES}/namespaces/{namespace}/leases/{name}", json=lease)
