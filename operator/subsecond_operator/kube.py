"""The few Kubernetes calls the operator makes besides kopf's own: read the target, patch its /scale, and
(in the pre-delete hook) list, delete and release LatencySLOs.

Credentials come from kopf's login (service account in a pod, kubeconfig elsewhere), so the
operator and kopf talk to the same API server as the same identity.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

from subsecond_operator.spec import TargetRef


class KubernetesError(RuntimeError):
    """A Kubernetes API call failed; the reconciliation is retried."""


@dataclass(frozen=True)
class TargetState:
    replicas: int  # spec.replicas, what /scale sets
    ready_replicas: int


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=info.ca_path)
    if info.ca_data:
        context.load_verify_locations(cadata=base64.b64decode(info.ca_data).decode())
    if info.certificate_path or info.certificate_data:
        with tempfile.TemporaryDirectory() as folder:
            cert, key = info.certificate_path, info.private_key_path
            if info.certificate_data:
                cert = f"{folder}/cert.pem"
                with open(cert, "wb") as file:
                    file.write(base64.b64decode(info.certificate_data))
            if info.private_key_data:
                key = f"{folder}/key.pem"
                with open(key, "wb") as file:
                    file.write(base64.b64decode(info.private_key_data))
            context.load_cert_chain(cert, key)  # type: ignore[arg-type]
    return context


class KubernetesClient:
    def __init__(self, info: kopf.ConnectionInfo, timeout_seconds: float = 10.0) -> None:
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        self._server = info.server.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers=headers,
            auth=auth,
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info)),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        )

    async def close(self) -> None:
        await self._session.close()

    def _path(self, namespace: str, target: TargetRef) -> str:
        return f"{self._server}/apis/{target.api_version}/namespaces/{namespace}/{target.plural}/{target.name}"

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with self._session.request(method, url, **kwargs) as response:
                if response.status >= 400:
                    raise KubernetesError(f"{method} {url}: HTTP {response.status}: {(await response.text())[:300]}")
                body: dict[str, Any] = await response.json(content_type=None)
                return body
        except (aiohttp.ClientError, TimeoutError) as error:
            raise KubernetesError(f"{method} {url}: {error!r}") from error

    async def read_target(self, namespace: str, target: TargetRef) -> TargetState:
        body = await self._call("GET", self._path(namespace, target))
        return TargetState(
            replicas=int(body.get("spec", {}).get("replicas", 1)),
            ready_replicas=int(body.get("status", {}).get("readyReplicas", 0)),
        )

    def _slos(self, namespace: str) -> str:
        return f"{self._server}/apis/subsecond.dev/v1alpha1/namespaces/{namespace}/latencyslos"

    async def list_slos(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The LatencySLOs in a namespace whose labels match the selector (all of them if it is empty)."""
        params = {"labelSelector": label_selector} if label_selector else {}
        body = await self._call("GET", self._slos(namespace), params=params)
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    async def delete_slo(self, namespace: str, name: str) -> None:
        """Asks for deletion; an object with finalizers stays (``deletionTimestamp`` set) until they are removed."""
        try:
            await self._call("DELETE", f"{self._slos(namespace)}/{name}")
        except KubernetesError as error:
            if "HTTP 404" not in str(error):  # already gone
                raise

    async def set_finalizers(self, namespace: str, name: str, finalizers: list[str]) -> None:
        """Replaces the object's finalizers (a merge patch replaces the whole list)."""
        await self._call(
            "PATCH",
            f"{self._slos(namespace)}/{name}",
            json={"metadata": {"finalizers": finalizers}},
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def scale(self, namespace: str, target: TargetRef, replicas: int) -> None:
        """Sets an absolute replica count through the target's /scale subresource."""
        await self._call(
            "PATCH",
            self._path(namespace, target) + "/scale",
            json={"spec": {"replicas": replicas}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
