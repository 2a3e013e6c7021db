"""The few Kubernetes calls the operator makes itself, async on httpx, with kopf's own login.

kopf watches the CRs and delivers their events; every write is ours: metadata (the start intent annotation *before*
DataWorks is called, with our finalizer, in one write), status (the outcome) and Events; and one read, a Secret in
the CR's namespace. The `kubernetes` package would do this on a blocking thread pool and cost tens of MiB per
process; these few requests don't need it.
"""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import kopf

from disync_operator import types as t

MAX_CONNECTIONS = 4
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

    async def aclose(self) -> None: ...


class KubeClient:
    def __init__(self, client: httpx.AsyncClient, *, max_in_flight: int = 32) -> None:
        self._http = client
        # Queue here rather than in httpcore's pool: the pool re-scans every queued request against every connection
        # (probing each socket) whenever one is queued or released, which is quadratic when a burst of CRs queues
        # hundreds of status writes; profiled in bench/ as a third of the operator's CPU. An asyncio queue is O(1).
        self._slots = asyncio.Semaphore(max_in_flight)

    @classmethod
    def from_connection(cls, info: kopf.ConnectionInfo, *, timeout: float = 30.0) -> KubeClient:
        context = ssl.create_default_context()
        if info.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif info.ca_path:
            context.load_verify_locations(cafile=str(info.ca_path))
        elif info.ca_data:
            ca = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
            context.load_verify_locations(cadata=ca)
        cert_path, key_path = info.certificate_path, info.private_key_path
        if info.certificate_data and info.private_key_data:
            # ssl only loads client certificates from files; keep them private to this process.
            folder = Path(tempfile.mkdtemp(prefix="disync-kube-"))
            cert_path, key_path = folder / "client.crt", folder / "client.key"
            for path, data in ((cert_path, info.certificate_data), (key_path, info.private_key_data)):
                path.touch(mode=0o600)
                path.write_bytes(data if isinstance(data, bytes) else data.encode())
        if cert_path and key_path:
            context.load_cert_chain(str(cert_path), str(key_path))
        headers = {"Accept": "application/json", "User-Agent": "disync-operator"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        client = httpx.AsyncClient(
            base_url=info.server,
            verify=context,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            # Keep every connection the pool may open: with fewer kept alive, a burst of status writes closes the
            # surplus after each request and opens it again, paying a TLS handshake per write (profiled in bench/).
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS),
        )
        return cls(client, max_in_flight=MAX_CONNECTIONS)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        async with self._slots:
            response = await self._http.request(method, path, **kwargs)
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
